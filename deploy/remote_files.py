"""Files on the target, replaced atomically with the previous generation kept for rollback.

Each new file is written to a temporary name in the destination's own directory (same file
system, so the final rename is atomic: POSIX rename(2), here the SFTP extension
``posix-rename@openssh.com``; plain SFTP v3 RENAME refuses to replace, draft-ietf-secsh-filexfer
-02 §6.5). Its mode (and owner) are set before the rename, so the service never sees a file
with the wrong permissions. Before the rename the current file gets a second name,
``<path>.certyard-prev`` (a hard link, ``hardlink@openssh.com``: no copy of the old private key
passes through certyard); older generations shift to ``.certyard-prev.2`` … up to
``backups_to_keep``. Rollback renames ``.certyard-prev`` back over the path.
"""

from __future__ import annotations

import posixpath
import secrets
from dataclasses import dataclass

import asyncssh

from deploy.errors import DeployError
from deploy.ssh import quote, run

PREV = ".certyard-prev"


def backup_name(path: str, generation: int = 1) -> str:
    return f"{path}{PREV}" if generation == 1 else f"{path}{PREV}.{generation}"


def temp_name(path: str, what: str = "new") -> str:
    directory, base = posixpath.split(path)
    return posixpath.join(directory, f".{base}.certyard-{what}-{secrets.token_hex(6)}")


@dataclass(frozen=True)
class Staged:
    path: str
    tmp: str


@dataclass(frozen=True)
class Installed:
    path: str
    had_previous: bool


@dataclass(frozen=True)
class PathCheck:
    path: str
    ok: bool
    detail: str


class RemoteFiles:
    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        sftp: asyncssh.SFTPClient,
        *,
        timeout: float,
        backups: int,
    ) -> None:
        self._conn, self._sftp = conn, sftp
        self._timeout, self._backups = timeout, backups

    # -- checks (certyard deploy target test) -------------------------------------------------

    async def check_writable(self, path: str) -> PathCheck:
        """Can a file be created next to ``path`` (and renamed over it)? Creates and removes
        one empty probe file; touches nothing else."""
        directory = posixpath.dirname(path)
        try:
            attrs = await self._sftp.stat(directory)
        except asyncssh.SFTPError as exc:
            return PathCheck(path, False, f"directory {directory}: {exc.reason}")
        if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
            return PathCheck(path, False, f"{directory} is not a directory")
        try:
            current = await self._sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            current = None
        except asyncssh.SFTPError as exc:
            return PathCheck(path, False, f"{path}: {exc.reason}")
        if current is not None and current.type != asyncssh.FILEXFER_TYPE_REGULAR:
            return PathCheck(path, False, f"{path} exists and is not a regular file")
        probe = temp_name(path, "probe")
        try:
            async with self._sftp.open(probe, "wb", asyncssh.SFTPAttrs(permissions=0o600)):
                pass
            await self._sftp.remove(probe)
        except asyncssh.SFTPError as exc:
            return PathCheck(path, False, f"cannot create files in {directory}: {exc.reason}")
        state = "exists" if current is not None else "will be created"
        return PathCheck(path, True, f"writable ({state})")

    # -- staging ------------------------------------------------------------------------------

    async def write_temp(self, path: str, data: bytes, mode: int) -> str:
        """Write ``data`` to a new temporary file next to ``path``, created with ``mode``
        (a key is never readable by others, not even for a moment)."""
        tmp = temp_name(path)
        try:
            async with self._sftp.open(
                tmp, "xb", asyncssh.SFTPAttrs(permissions=mode & 0o600)
            ) as handle:
                await handle.write(data)
        except asyncssh.SFTPError as exc:
            await self.discard([tmp])
            raise DeployError("remote", f"cannot write {tmp}: {exc.reason}") from None
        return tmp

    async def set_attributes(
        self, files: list[tuple[str, int]], owner: str | None, group: str | None
    ) -> None:
        """Give each (temporary file, mode) its owner, then its exact mode (the SFTP server's
        umask applied to the mode given at creation). Owner first: chown may clear set-id
        bits. One chown command for all the files (each remote command is a process)."""
        if owner is not None or group is not None:
            spec = (owner or "") + (f":{group}" if group is not None else "")
            paths = " ".join(quote(tmp) for tmp, _ in files)
            result = await run(self._conn, f"chown -- {quote(spec)} {paths}", seconds=self._timeout)
            if result.exit_status != 0:
                raise DeployError("remote", f"chown {spec}: {result.brief()}")
        for tmp, mode in files:
            try:
                await self._sftp.chmod(tmp, mode)
            except asyncssh.SFTPError as exc:
                raise DeployError("remote", f"chmod {mode:04o} {tmp}: {exc.reason}") from None

    async def discard(self, tmps: list[str]) -> None:
        for tmp in tmps:
            try:
                await self._sftp.remove(tmp)
            except asyncssh.SFTPError:
                pass  # never created, or already gone

    # -- install and rollback ----------------------------------------------------------------

    async def install(self, staged: list[Staged]) -> list[Installed]:
        """Put each staged file in place, keeping what was there as ``<path>.certyard-prev``.
        On an error the files already installed are rolled back before it is raised."""
        installed: list[Installed] = []
        try:
            for item in staged:
                had_previous = await self._exists(item.path)
                if had_previous:
                    await self._keep_previous(item.path)
                await self._sftp.posix_rename(item.tmp, item.path)
                installed.append(Installed(item.path, had_previous))
        except (asyncssh.SFTPError, DeployError) as exc:
            await self.rollback(installed)
            await self.discard([s.tmp for s in staged])
            reason = exc.reason if isinstance(exc, asyncssh.SFTPError) else str(exc)
            raise DeployError("remote", f"installing the files failed: {reason}") from None
        return installed

    async def rollback(self, installed: list[Installed]) -> list[str]:
        """Restore the previous files (or remove files that did not exist before); returns the
        problems met (each file is tried, whatever happened to the others)."""
        problems: list[str] = []
        for item in reversed(installed):
            try:
                if item.had_previous:
                    await self._sftp.posix_rename(backup_name(item.path), item.path)
                    await self._shift_back(item.path)
                else:
                    await self._sftp.remove(item.path)
            except asyncssh.SFTPError as exc:
                problems.append(f"{item.path}: {exc.reason}")
        return problems

    async def _keep_previous(self, path: str) -> None:
        for generation in range(self._backups, 1, -1):
            older = backup_name(path, generation - 1)
            if await self._exists(older):
                await self._sftp.posix_rename(older, backup_name(path, generation))
        prev = backup_name(path)
        if await self._exists(prev):
            await self._sftp.remove(prev)
        try:
            await self._sftp.link(path, prev)
        except asyncssh.SFTPOpUnsupported:
            # A server without hardlink@openssh.com: copy on the target itself (cp -p keeps
            # mode and owner; the old key still never travels).
            result = await run(
                self._conn, f"cp -p -- {quote(path)} {quote(prev)}", seconds=self._timeout
            )
            if result.exit_status != 0:
                raise DeployError("remote", f"keeping {path} as {prev}: {result.brief()}") from None

    async def _shift_back(self, path: str) -> None:
        for generation in range(2, self._backups + 1):
            newer = backup_name(path, generation)
            if not await self._exists(newer):
                break
            await self._sftp.posix_rename(newer, backup_name(path, generation - 1))

    async def _exists(self, path: str) -> bool:
        try:
            await self._sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    async def read(self, path: str, limit: int = 1024 * 1024) -> bytes:
        """A public file (certificate) from the target."""
        try:
            async with self._sftp.open(path, "rb") as handle:
                data = await handle.read(limit)
        except asyncssh.SFTPError as exc:
            raise DeployError("remote", f"cannot read {path}: {exc.reason}") from None
        return data if isinstance(data, bytes) else data.encode()
