"""Validation policy: settings, records, failures, name resolution and the address deny list.

Every challenge type resolves the identifier through :func:`lookup_addresses` and keeps only the
addresses :func:`check_addresses` allows; the VA then connects to those exact addresses and never
asks another resolver (RFC 8555 §10.2: the VA must not be usable to reach internal services, and
§11.2: DNS answers decide where the VA connects, so they must come from the configured resolvers).

Address order: IPv6 addresses first, then IPv4, each in the order DNS returned them. The
connection-based validators try the first IPv6 address and fall back to the first IPv4 address
only when the connection itself fails (as Boulder does).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import ipaddress
import logging
import re
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from acme_server.errors import AcmeError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The deny list comes from the IANA special-purpose address registries
# (https://www.iana.org/assignments/iana-ipv4-special-registry and
# https://www.iana.org/assignments/iana-ipv6-special-registry, RFC 6890): every block whose
# "Globally Reachable" is False or N/A is denied, plus multicast and the deprecated or reserved
# blocks of the IPv4/IPv6 address-space registries. Blocks that are unreachable except for a few
# anycast carve-outs (192.0.0.0/24, 2001::/23) are denied whole: no ACME server lives there.
# IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96, "globally reachable" in the registry) and
# 6to4 (2002::/16) addresses are not listed: is_denied() checks the IPv4 address they embed.
_DENY_ENTRIES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' (RFC 791)"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space / CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved and limited broadcast (RFC 1112, RFC 919)"),
    ("::/128", "unspecified address (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1)"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments, incl. Teredo and benchmarking (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "deprecated site-local (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)
_DENY_NAMES: dict[IPNetwork, str] = {
    ipaddress.ip_network(cidr): name for cidr, name in _DENY_ENTRIES
}
DEFAULT_DENY: tuple[IPNetwork, ...] = tuple(_DENY_NAMES)

_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1 well-known prefix
MAX_CNAME_HOPS = 8  # further queries made for CNAME targets a server did not resolve


def parse_resolver(spec: str) -> tuple[str, int]:
    """Parse ``"host:port"``, ``"host"`` (port 53), ``"[v6]:port"``, ``"[v6]"`` or a bare IPv6.

    The host must be an IP address: the resolvers are how names are found, so they cannot be
    names themselves.
    """
    text = spec.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid resolver address {spec!r}")
        port_text = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # "1.2.3.4" or an unbracketed IPv6 address without a port
        host, port_text = text, "53"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"resolver {spec!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in resolver address {spec!r}")
    return str(address), int(port_text)


@dataclass(frozen=True)
class ValidationConfig:
    """Settings of the validation authority (see docs/validation.md)."""

    http01_port: int = 80  # RFC 8555 §8.3: port 80 in production
    tlsalpn01_port: int = 443  # RFC 8737 §3: port 443 in production
    dns_resolvers: tuple[str, ...] = ()  # "host:port", "host", "[v6]:port"; () = resolv.conf
    deny_networks: tuple[IPNetwork, ...] = DEFAULT_DENY
    timeout: float = 10.0  # seconds, per network operation
    http01_max_body: int = 8192

    def __post_init__(self) -> None:
        for port in (self.http01_port, self.tlsalpn01_port):
            if not 0 < port < 65536:
                raise ValueError(f"invalid port {port}")
        for spec in self.dns_resolvers:
            parse_resolver(spec)
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")
        if self.http01_max_body < 1:
            raise ValueError("http01_max_body must be positive")


@dataclass(frozen=True)
class ValidationRecord:
    """What the VA saw for one connection (RFC 8555 §8.3 ``validationRecord``)."""

    hostname: str
    port: int
    addresses_resolved: tuple[str, ...]
    address_used: str
    url: str | None = None  # http-01 only: the URL fetched

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "hostname": self.hostname,
            "port": self.port,
            "addressesResolved": list(self.addresses_resolved),
            "addressUsed": self.address_used,
        }
        if self.url is not None:
            doc["url"] = self.url
        return doc


class ValidationFailure(Exception):
    """A failed validation: the problem for the challenge's ``error`` (RFC 8555 §8) and records."""

    def __init__(self, problem: AcmeError, records: list[ValidationRecord] | None = None) -> None:
        super().__init__(f"{problem.type}: {problem.detail}")
        self.problem = problem
        self.records: list[ValidationRecord] = list(records or [])


def fail(kind: str, detail: str) -> ValidationFailure:
    return ValidationFailure(AcmeError(kind, detail))


def key_authorization_digest(key_authorization: str) -> bytes:
    """SHA-256 of the key authorization (RFC 8555 §8.4, RFC 8737 §3)."""
    return hashlib.sha256(key_authorization.encode("utf-8")).digest()


def dns01_txt_value(key_authorization: str) -> str:
    """RFC 8555 §8.4: base64url(SHA-256(key authorization)), no padding."""
    digest = key_authorization_digest(key_authorization)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def normalize_identifier(value: str) -> str:
    """An IP literal in its canonical text form (RFC 8738 §3), else a normalized domain."""
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return normalize_domain(value)


def normalize_domain(domain: str) -> str:
    """Lower-case, IDNA-encode (A-labels) and check a DNS name; ``rejectedIdentifier`` if bad."""
    name = domain.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise fail("rejectedIdentifier", f"{domain!r} is not a valid domain name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise fail("rejectedIdentifier", f"{domain!r} is not a valid domain name")
    return ascii_name


def is_denied(address: IPAddress, networks: tuple[IPNetwork, ...]) -> IPNetwork | None:
    """The deny-list network containing ``address`` (or the IPv4 address it embeds), if any."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # RFC 4291 §2.5.5.2
            candidates.append(address.ipv4_mapped)
        if address in _NAT64_WKP:  # RFC 6052 §2.2: the last 32 bits
            candidates.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:  # RFC 3056 §2
            candidates.append(address.sixtofour)
    for candidate in candidates:
        for network in networks:
            if candidate.version == network.version and candidate in network:
                return network
    return None


def describe_network(network: IPNetwork) -> str:
    name = _DENY_NAMES.get(network)
    return f"{network} ({name})" if name else str(network)


def make_resolver(config: ValidationConfig) -> dns.asyncresolver.Resolver:
    """A dnspython resolver using ``config.dns_resolvers``, or /etc/resolv.conf when empty."""
    if config.dns_resolvers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_resolver(spec)) for spec in config.dns_resolvers
        ]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.exception.DNSException:
            raise fail("dns", "DNS problem: no resolver is configured") from None
    resolver.timeout = config.timeout
    resolver.lifetime = config.timeout
    resolver.cache = None
    return resolver


def dns_error_detail(exc: BaseException, rdtype: str, name: str) -> str:
    """A short description of a dnspython failure that names no internal server."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        reason = "NXDOMAIN"
    elif isinstance(exc, dns.resolver.NoNameservers):
        reason = "SERVFAIL"
    elif isinstance(exc, dns.exception.Timeout | TimeoutError):
        reason = "query timed out"
    elif isinstance(exc, dns.resolver.NoAnswer):
        reason = "no records"
    elif isinstance(exc, CnameLoop):
        reason = "CNAME loop or too many CNAMEs"
    else:
        reason = "networking error"
    return f"DNS problem: {reason} looking up {rdtype} for {name}"


class CnameLoop(Exception):
    """A CNAME chain that loops or is longer than :data:`MAX_CNAME_HOPS`."""


async def query_following_cnames(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str, lifetime: float
) -> dns.resolver.Answer:
    """The answer for ``(name, rdtype)``; ``answer.rrset`` is None when there is no record.

    dnspython follows a CNAME chain inside one answer; when a server answers with a CNAME but
    not the target's records (RFC 1034 §3.6.2: an out-of-zone target), the target is queried
    in turn, at most :data:`MAX_CNAME_HOPS` times. Raises dnspython exceptions (NXDOMAIN ...)
    or :class:`CnameLoop`.
    """
    qname = dns.name.from_text(name)
    seen = {qname}
    for _ in range(MAX_CNAME_HOPS + 1):
        async with asyncio.timeout(lifetime):
            answer = await resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, lifetime=lifetime
            )
        target = answer.canonical_name
        if answer.rrset is not None or target == qname:
            return answer
        if target in seen:
            raise CnameLoop(f"CNAME loop at {target}")
        seen.add(target)
        qname = target
    raise CnameLoop(f"more than {MAX_CNAME_HOPS} CNAMEs")


async def _query(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str, lifetime: float
) -> list[IPAddress] | BaseException:
    try:
        answer = await query_following_cnames(resolver, name, rdtype, lifetime)
    except (dns.exception.DNSException, CnameLoop, OSError, ValueError) as exc:
        return exc
    if answer.rrset is None:
        return []
    wanted = dns.rdatatype.from_text(rdtype)
    return [ipaddress.ip_address(r.address) for r in answer.rrset if r.rdtype == wanted]


async def lookup_addresses(host: str, config: ValidationConfig) -> list[IPAddress]:
    """Every A and AAAA address of ``host`` (IPv6 first), unfiltered; ``dns`` problem if none.

    An IP literal (possible in an http-01 redirect) is returned as is, without a query.
    """
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    name = normalize_domain(host)
    resolver = make_resolver(config)
    v6, v4 = await asyncio.gather(
        _query(resolver, name, "AAAA", config.timeout),
        _query(resolver, name, "A", config.timeout),
    )
    addresses = [*(v6 if isinstance(v6, list) else []), *(v4 if isinstance(v4, list) else [])]
    if addresses:
        return addresses
    if isinstance(v4, BaseException):
        raise fail("dns", dns_error_detail(v4, "A", name))
    if isinstance(v6, BaseException):
        raise fail("dns", dns_error_detail(v6, "AAAA", name))
    raise fail("dns", f"DNS problem: no valid A or AAAA records found for {name}")


def check_addresses(
    host: str, addresses: list[IPAddress], config: ValidationConfig
) -> list[IPAddress]:
    """The addresses outside ``config.deny_networks``; ``rejectedIdentifier`` if none is left."""
    allowed: list[IPAddress] = []
    denied: list[str] = []
    for address in addresses:
        network = is_denied(address, config.deny_networks)
        if network is None:
            allowed.append(address)
        else:
            denied.append(f"{address} is in {describe_network(network)}")
    if not allowed:
        raise fail(
            "rejectedIdentifier",
            f"{host} resolves only to addresses the validation policy forbids: "
            + "; ".join(denied),
        )
    return allowed


async def resolve_addresses(host: str, config: ValidationConfig) -> list[IPAddress]:
    """The A/AAAA addresses of ``host`` the VA may connect to (IPv6 first).

    ``dns`` problem if nothing resolves, ``rejectedIdentifier`` if the deny list takes them all.
    """
    try:
        return check_addresses(host, await lookup_addresses(host, config), config)
    except ValidationFailure:
        raise
    except Exception:  # a bug here must not turn into a 500 or leak a traceback
        log.exception("resolving %s failed unexpectedly", host)
        raise fail("serverInternal", f"resolving {host} could not be completed") from None


def connection_order(addresses: list[IPAddress]) -> list[IPAddress]:
    """The first IPv6 then the first IPv4 address: the fallback order of the validators."""
    first_v6 = next((a for a in addresses if a.version == 6), None)
    first_v4 = next((a for a in addresses if a.version == 4), None)
    return [a for a in (first_v6, first_v4) if a is not None]


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.ETIMEDOUT: "timeout during connect",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EPIPE: "connection closed by peer",
}


def os_error_reason(exc: OSError) -> str:
    """A short, internals-free description of a socket error."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    return _ERRNO_REASONS.get(exc.errno or 0, "connection failed")
