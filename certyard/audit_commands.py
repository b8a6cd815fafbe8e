"""``certyard audit …``: verify the hash-chained audit trail, export it, force a checkpoint.

* ``verify [--public-key PEM]``: exit 0 and "ok: N entries, M checkpoints", or exit 1 naming
  the first broken entry on stderr. Without ``--public-key`` the audit keys stored in the
  database are trusted only after the CA key backend (the HSM) confirms it holds each of them.
* ``export [--since SEQ] [--out FILE]``: entries with seq > SEQ as JSON lines (docs/audit.md).
* ``checkpoint``: sign the current head with the audit key now.
* ``public-key``: the current audit public key as PEM (to pin with ``verify --public-key``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.errors import AuditError
from audit.keys import CURRENT, AuditSigner, key_id
from audit.trail import AuditTrail, iter_entries
from audit.verify import backend_confirmer, trusted_keys, verify_trail
from ca.errors import CAError
from certyard.settings import Settings
from storage.engine import create_engine, migrate, session_factory
from storage.models_audit import AuditKeyRow


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="audit trail (certyard audit verify|export|checkpoint)")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the whole chain and its checkpoints")
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="trust only this audit public key (repeatable); no key backend needed",
    )
    export = audit_sub.add_parser("export", help="entries as JSON lines (for a SIEM)")
    export.add_argument("--since", default="0", metavar="SEQ", help="entries after this seq")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    audit_sub.add_parser("checkpoint", help="sign the current head with the audit key now")
    audit_sub.add_parser("public-key", help="print the current audit public key (PEM)")
    for parser in audit_sub.choices.values():
        parser.add_argument("--config", type=Path)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        if args.audit_command == "verify":
            return await _verify(settings, sessions, args.public_key)
        if args.audit_command == "export":
            return await _export(sessions, args.since, args.out)
        if args.audit_command == "checkpoint":
            return await _checkpoint(settings, sessions)
        return await _public_key(sessions)
    except AuditError as exc:
        print(f"certyard: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


def _pinned(paths: list[Path]) -> dict[str, PublicKeyTypes]:
    keys: dict[str, PublicKeyTypes] = {}
    for path in paths:
        try:
            public_key = load_pem_public_key(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"--public-key {path}: {exc.strerror}") from None
        except ValueError:
            raise UsageError(f"--public-key {path}: not a PEM public key") from None
        keys[key_id(public_key)] = public_key
    return keys


async def _verify(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], pinned: list[Path]
) -> int:
    if pinned:
        keys = _pinned(pinned)
    else:
        keys = await _confirmed_keys(settings, sessions)
    result = await verify_trail(sessions, keys)
    if result.broken is not None:
        print(f"certyard: audit trail broken at {result.broken}", file=sys.stderr)
        return 1
    print(f"ok: {result.entries} entries, {result.checkpoints} checkpoints")
    return 0


async def _confirmed_keys(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> dict[str, PublicKeyTypes]:
    async with sessions() as session:
        if await session.scalar(select(func.count()).select_from(AuditKeyRow)) == 0:
            return {}  # no checkpoint yet: no need to open the key backend
    from certyard.wiring import key_backend  # opens the token: only when there are keys

    try:
        backend = key_backend(settings)
    except CAError as exc:
        raise AuditError(f"the key backend cannot be opened: {exc.detail}") from exc
    try:
        return await trusted_keys(sessions, backend_confirmer(backend))
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            await close()


async def _export(sessions: async_sessionmaker[AsyncSession], since: str, out: Path | None) -> int:
    if not since.isdigit():
        raise UsageError("--since takes a sequence number (0 for everything)")
    if out is None:
        await _write_lines(sessions, int(since), sys.stdout)
        return 0
    # Written next to the target and renamed into place: a reader never sees half a file.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as stream:
            await _write_lines(sessions, int(since), stream)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--out {out}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return 0


async def _write_lines(
    sessions: async_sessionmaker[AsyncSession], since: int, stream: TextIO
) -> None:
    async for entry in iter_entries(sessions, since):
        stream.write(json.dumps(entry.to_json(), ensure_ascii=False, sort_keys=True) + "\n")


async def _checkpoint(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> int:
    from certyard.wiring import key_backend, utc_now

    try:
        backend = key_backend(settings)
    except CAError as exc:
        raise AuditError(f"the key backend cannot be opened: {exc.detail}") from exc
    try:
        signer = AuditSigner(sessions, backend, settings.audit.key_label, utc_now)
        trail = AuditTrail(sessions, settings.audit, signer=signer)
        made = await trail.checkpoint()
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            await close()
    if made is None:
        print("nothing to checkpoint: the trail is empty or its head is already signed")
    else:
        print(f"checkpoint at entry {made.seq} signed by audit key {made.key_id}")
    return 0


async def _public_key(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        row = (
            await session.execute(select(AuditKeyRow).where(AuditKeyRow.role == CURRENT))
        ).scalar_one_or_none()
    if row is None:
        raise AuditError("no audit key yet: it is made with the first checkpoint")
    pem = load_der_public_key(row.public_key_der).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    sys.stdout.write(pem.decode("ascii"))
    return 0
