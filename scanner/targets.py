"""Scan targets: parse what the operator typed, resolve names, expand ports, order the sweep.

Accepted forms, each optionally prefixed by a protocol (``tls://``, or a STARTTLS one:
``smtp://``, ``imap://``, ``pop3://``, ``ftp://``, ``ldap://``, ``postgres://``) and optionally
followed by ``:port`` (IPv6 with a port: ``[2001:db8::1]:443``):

- ``host.example`` every A and AAAA record of the name is scanned, with the name as SNI;
- ``192.0.2.7``, ``2001:db8::7`` one address;
- ``192.0.2.0/28`` a CIDR block (network and broadcast addresses of IPv4 blocks larger than
  /31 are skipped, RFC 919 / RFC 3021);
- ``192.0.2.1-192.0.2.50`` or ``192.0.2.1-50`` an inclusive range;
- ``name@192.0.2.7`` that address with that SNI name, without DNS (internal names).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

STARTTLS_PROTOCOLS = ("smtp", "imap", "pop3", "ftp", "ldap", "postgres", "xmpp")
# The well-known STARTTLS ports (RFC 3207 SMTP on 25 and RFC 6409 submission on 587,
# RFC 3501 §6.2.1 IMAP on 143, RFC 2595 POP3 on 110, RFC 4217 FTP on 21, RFC 4511 LDAP on 389,
# PostgreSQL on 5432, RFC 6120 XMPP client-to-server on 5222 and server-to-server on 5269); any
# other port is direct TLS unless a scheme forces it.
STARTTLS_BY_PORT = {
    21: "ftp",
    25: "smtp",
    110: "pop3",
    143: "imap",
    389: "ldap",
    587: "smtp",
    22: "ssh",  # not TLS: host keys and OpenSSH host certificates (scanner/ssh_probe.py)
    5222: "xmpp",
    5269: "xmpp",
    5432: "postgres",
}
MAX_EXPANSION = 1 << 20  # refuse a typo like 10.0.0.0/8 x 1000 ports before it allocates


class TargetError(ValueError):
    """A target, port list or exclude that cannot be parsed (one line, shown to the operator)."""


@dataclass(frozen=True)
class TargetSpec:
    """One parsed target before DNS: ``addresses`` is None for a name still to resolve."""

    text: str
    name: str | None
    addresses: tuple[IPAddress, ...] | None
    port: int | None
    protocol: str | None


@dataclass
class Endpoint:
    """One ip:port to probe, with every name known for it (each gets its own SNI handshake)."""

    ip: IPAddress
    port: int
    protocol: str  # "tls" or a STARTTLS protocol
    names: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (str(self.ip), self.port)


def parse_ports(text: str) -> list[int]:
    """``443,8443,1000-1010`` → sorted unique ports."""
    ports: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise TargetError(f"bad port {part!r}") from None
        if not (1 <= first <= last <= 65535):
            raise TargetError(f"bad port range {part!r}")
        ports.update(range(first, last + 1))
    if not ports:
        raise TargetError("no ports given")
    return sorted(ports)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise TargetError(f"bad target {text!r}")
        return host, _port(rest[1:], text) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port, text)
    return text, None  # a bare IPv6 address, or no port


def _port(text: str, target: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise TargetError(f"bad port in {target!r}")
    return int(text)


def _addresses(text: str) -> tuple[IPAddress, ...] | None:
    """The addresses ``text`` denotes, or None when it is a host name."""
    try:
        return (ipaddress.ip_address(text),)
    except ValueError:
        pass
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise TargetError(f"bad CIDR block {text!r}: {exc}") from None
        if net.num_addresses > MAX_EXPANSION:
            raise TargetError(f"{text} is too large (more than {MAX_EXPANSION} addresses)")
        hosts = net.hosts() if net.version == 4 and net.prefixlen < 31 else iter(net)
        return tuple(cast(IPAddress, h) for h in hosts)
    if "-" in text:
        low_text, _, high_text = text.partition("-")
        try:
            low = ipaddress.ip_address(low_text)
        except ValueError:
            return None  # a host name with a hyphen
        try:
            high = ipaddress.ip_address(high_text)
        except ValueError:
            # "192.0.2.1-50": the last octet (or IPv6 group) only.
            sep = "." if low.version == 4 else ":"
            head = low_text.rsplit(sep, 1)[0]
            try:
                high = ipaddress.ip_address(f"{head}{sep}{high_text}")
            except ValueError:
                raise TargetError(f"bad range {text!r}") from None
        if high.version != low.version or int(high) < int(low):
            raise TargetError(f"bad range {text!r}")
        if int(high) - int(low) >= MAX_EXPANSION:
            raise TargetError(f"range {text} is too large")
        cls = type(low)
        return tuple(cls(i) for i in range(int(low), int(high) + 1))
    return None


def parse_target(text: str) -> TargetSpec:
    raw = text.strip()
    protocol: str | None = None
    rest = raw
    if "://" in raw:
        protocol, _, rest = raw.partition("://")
        if protocol not in (*STARTTLS_PROTOCOLS, "tls", "ssh"):
            raise TargetError(f"unknown protocol {protocol!r} in {raw!r}")
    name: str | None = None
    if "@" in rest:
        name, _, rest = rest.partition("@")
        if not name:
            raise TargetError(f"empty name in {raw!r}")
    host, port = _split_port(rest)
    if not host:
        raise TargetError(f"empty target {raw!r}")
    addresses = _addresses(host)
    if addresses is None:
        if name is not None:
            raise TargetError(f"{raw!r}: after '@' comes an address, not a name")
        name = host.rstrip(".").lower()
    return TargetSpec(raw, name.lower() if name else None, addresses, port, protocol)


def read_targets_file(lines: Iterable[str]) -> list[str]:
    """One target a line; blank lines and ``#`` comments are skipped."""
    out = []
    for line in lines:
        item = line.split("#", 1)[0].strip()
        if item:
            out.append(item)
    return out


async def resolve(name: str) -> tuple[IPAddress, ...]:
    """Every A and AAAA record of ``name`` through the system resolver (getaddrinfo)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {name}: {exc.strerror}") from None
    seen: dict[str, IPAddress] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        seen.setdefault(str(addr), addr)
    return tuple(seen.values())


def parse_excludes(items: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise TargetError(f"bad exclude {item!r} (an address or CIDR block)") from None
    return out


async def expand(
    specs: Iterable[TargetSpec],
    ports: list[int],
    excludes: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    seed: int | None = None,
) -> tuple[list[Endpoint], list[str]]:
    """Endpoints in a seeded random order, and one message per name that did not resolve.

    Names given for the same ip:port are merged, so each ip:port is probed once without SNI
    and once per name.
    """
    endpoints: dict[tuple[str, int], Endpoint] = {}
    errors: list[str] = []
    for spec in specs:
        addresses = spec.addresses
        if addresses is None:
            assert spec.name is not None
            try:
                addresses = await resolve(spec.name)
            except TargetError as exc:
                errors.append(str(exc))
                continue
        for ip in addresses:
            if any(ip in net for net in excludes if net.version == ip.version):
                continue
            for port in [spec.port] if spec.port is not None else ports:
                protocol = spec.protocol or STARTTLS_BY_PORT.get(port, "tls")
                endpoint = endpoints.setdefault((str(ip), port), Endpoint(ip, port, protocol))
                if spec.name and spec.name not in endpoint.names:
                    endpoint.names.append(spec.name)
                if len(endpoints) > MAX_EXPANSION:
                    raise TargetError(f"more than {MAX_EXPANSION} endpoints")
    return permute(list(endpoints.values()), seed), errors


def permute(items: list[Endpoint], seed: int | None) -> list[Endpoint]:
    """A seeded random permutation, so a large range does not hammer one subnet in turn.

    ``random.Random`` is fine here: the order only needs to be spread and reproducible, not
    unpredictable.
    """
    ordered = sorted(items, key=lambda e: (e.ip.version, int(e.ip), e.port))
    random.Random(seed).shuffle(ordered)  # noqa: S311 - not for security
    return ordered


def iter_specs(texts: Iterable[str]) -> Iterator[TargetSpec]:
    for text in texts:
        yield parse_target(text)
