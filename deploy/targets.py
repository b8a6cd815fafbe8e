"""A deployment target as the deployer sees it, and the checks a new one must pass.

Paths are absolute POSIX paths on the target. The key, certificate, chain and full-chain paths
must all differ: each is replaced atomically on its own (temp file + rename in its directory).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any

from ca.errors import CAError
from ca.profiles import normalize_dns_names
from deploy.errors import DeployError
from storage.models_deploy import DeployTarget

# 56 characters: "deploy:<name>" is the lease name (64 characters at most).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,55}\Z")
# POSIX portable user/group names (plus the "$" of machine accounts), or numeric ids.
ACCOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?\Z")
MAX_NAMES = 100
MAX_COMMAND = 4096


@dataclass(frozen=True)
class Endpoint:
    """Where the deployed certificate must be served: ``sni`` None sends no SNI."""

    host: str
    port: int
    sni: str | None


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    username: str
    key_file: str | None  # None: use the SSH agent
    host_key: str  # "<algorithm> <base64>"
    host_key_fingerprint: str
    names: tuple[str, ...]
    profile: str
    key_path: str
    cert_path: str
    verify: Endpoint
    reload_command: str
    chain_path: str | None = None
    fullchain_path: str | None = None
    key_mode: int = 0o600
    cert_mode: int = 0o644
    owner: str | None = None
    group: str | None = None
    # What the last successful deployment put in place (filled from the database).
    certificate_sha256: str | None = None
    last_status: str | None = None

    @property
    def dns_names(self) -> list[str]:
        return [n for n in self.names if not _is_ip(n)]

    @property
    def ip_addresses(self) -> list[str]:
        return [n for n in self.names if _is_ip(n)]

    def paths(self) -> list[str]:
        return [
            p
            for p in (self.key_path, self.cert_path, self.chain_path, self.fullchain_path)
            if p is not None
        ]

    def summary(self) -> dict[str, Any]:
        """The JSON form (``certyard deploy target list --json``)."""
        data = asdict(self)
        data["names"] = list(self.names)
        data["key_mode"] = f"{self.key_mode:04o}"
        data["cert_mode"] = f"{self.cert_mode:04o}"
        data["verify"] = format_endpoint(self.verify)
        data["credentials"] = self.key_file or "ssh-agent"
        return data


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def format_endpoint(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    # "host:port," (empty SNI) reads back as "no SNI", as --verify takes it.
    return f"{host}:{endpoint.port},{endpoint.sni or ''}"


def parse_endpoint(text: str, names: tuple[str, ...]) -> Endpoint:
    """``host:port[,sni]``; without ``,sni`` the first DNS name of the target is sent as SNI
    (RFC 6066 §3: SNI carries a host name, never an address); ``host:port,`` sends none."""
    address, comma, sni = text.partition(",")
    host, sep, port_text = address.rpartition(":")
    if address.startswith("[") and "]:" in address:
        host, port_text = address[1:].split("]:", 1)
    elif not sep or ":" in host:
        raise DeployError("malformed", f"--verify {text!r} is not host:port[,sni]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DeployError("malformed", f"--verify {text!r}: a host and a port 1-65535 are needed")
    if comma:
        server_name: str | None = sni.strip() or None
    else:
        server_name = next((n for n in names if not _is_ip(n) and not n.startswith("*")), None)
    if server_name is not None:
        try:
            normalize_dns_names([server_name])
        except CAError:
            raise DeployError("malformed", f"--verify SNI {server_name!r} is no DNS name") from None
    return Endpoint(host, int(port_text), server_name)


def parse_mode(text: str, what: str) -> int:
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise DeployError("malformed", f"{what} {text!r} is not an octal mode such as 0640")
    return int(text, 8)


def check_names(names: list[str]) -> tuple[str, ...]:
    if not names:
        raise DeployError("malformed", "--names: at least one DNS name or IP address is needed")
    if len(names) > MAX_NAMES:
        raise DeployError("malformed", f"--names: at most {MAX_NAMES} names")
    ips = [n for n in names if _is_ip(n)]
    try:
        dns = normalize_dns_names([n for n in names if not _is_ip(n)])
    except CAError as exc:
        raise DeployError("malformed", f"--names: {exc}") from None
    return tuple(dns + [str(ipaddress.ip_address(n)) for n in ips])


def check_path(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    # The path is used in shell commands (quoted) and SFTP requests: refuse what no sane
    # certificate path contains rather than reason about every quoting corner.
    if not path.startswith("/") or path.endswith("/") or "\x00" in path or "\n" in path:
        raise DeployError("malformed", f"{what} {path!r} must be an absolute file path")
    if any(part in ("..", ".") for part in path.split("/")):
        raise DeployError("malformed", f"{what} {path!r} must not contain . or .. parts")
    return path


def check_target(target: Target) -> Target:
    """Raise DeployError("malformed") for a target that cannot work; return it unchanged."""
    if not NAME.match(target.name):
        raise DeployError(
            "malformed", f"target name {target.name!r}: 1-56 of A-Z a-z 0-9 . _ -, not first . _ -"
        )
    if not target.host or len(target.host) > 255 or any(c.isspace() for c in target.host):
        raise DeployError("malformed", f"--host {target.host!r} is not a host name or address")
    if not 0 < target.port < 65536:
        raise DeployError("malformed", f"--port {target.port} is not 1-65535")
    if not ACCOUNT.match(target.username):
        raise DeployError("malformed", f"--user {target.username!r} is not a user name")
    for value, what in ((target.owner, "--owner"), (target.group, "--group")):
        if value is not None and not ACCOUNT.match(value):
            raise DeployError("malformed", f"{what} {value!r} is not a user or group name")
    paths = [
        check_path(target.key_path, "--key-path"),
        check_path(target.cert_path, "--cert-path"),
        check_path(target.chain_path, "--chain-path"),
        check_path(target.fullchain_path, "--fullchain-path"),
    ]
    present = [p for p in paths if p is not None]
    if len(set(present)) != len(present):
        raise DeployError(
            "malformed", "the key, certificate, chain and full-chain paths must differ"
        )
    command = target.reload_command.strip()
    if not command or len(command) > MAX_COMMAND or "\x00" in command:
        raise DeployError("malformed", "--reload-command must be a non-empty command")
    return target


def from_row(row: DeployTarget) -> Target:
    return Target(
        name=row.name,
        host=row.host,
        port=row.port,
        username=row.username,
        key_file=row.key_file,
        host_key=row.host_key,
        host_key_fingerprint=row.host_key_fingerprint,
        names=tuple(str(n) for n in row.names),
        profile=row.profile,
        key_path=row.key_path,
        cert_path=row.cert_path,
        chain_path=row.chain_path,
        fullchain_path=row.fullchain_path,
        key_mode=row.key_mode,
        cert_mode=row.cert_mode,
        owner=row.owner,
        group=row.group,
        reload_command=row.reload_command,
        verify=Endpoint(row.verify_host, row.verify_port, row.verify_sni),
        certificate_sha256=row.certificate_sha256,
        last_status=row.last_status,
    )
