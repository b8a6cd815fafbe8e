"""Unit tests of the VA policy: deny list, resolver addresses, digests, names, records."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from acme_server.va import (
    DEFAULT_DENY,
    ValidationConfig,
    ValidationFailure,
    ValidationRecord,
)
from acme_server.va.policy import (
    dns01_txt_value,
    is_denied,
    key_authorization_digest,
    normalize_domain,
    parse_resolver,
)

DENIED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.0.170",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",
    "64:ff9b:1::1",
    "100::1",
    "2001::1",
    "2001:2::1",
    "2001:db8::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    # Addresses embedding a denied IPv4 address are judged by that address.
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::10.1.2.3",
    "64:ff9b::7f00:1",
    "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "192.0.1.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:0808:0808::1",
]


@pytest.mark.parametrize("text", DENIED)
def test_default_deny_list_denies_special_purpose_addresses(text: str) -> None:
    assert is_denied(ipaddress.ip_address(text), DEFAULT_DENY) is not None


@pytest.mark.parametrize("text", ALLOWED)
def test_default_deny_list_allows_public_addresses(text: str) -> None:
    assert is_denied(ipaddress.ip_address(text), DEFAULT_DENY) is None


def test_every_default_network_denies_its_first_and_last_address() -> None:
    for network in DEFAULT_DENY:
        for address in (network.network_address, network.broadcast_address):
            assert is_denied(address, DEFAULT_DENY) is not None, (network, address)


def test_mapped_address_reports_the_ipv4_network() -> None:
    network = is_denied(ipaddress.ip_address("::ffff:10.1.2.3"), DEFAULT_DENY)
    assert network == ipaddress.ip_network("10.0.0.0/8")


def test_empty_deny_list_allows_everything() -> None:
    assert is_denied(ipaddress.ip_address("127.0.0.1"), ()) is None
    assert is_denied(ipaddress.ip_address("::ffff:127.0.0.1"), ()) is None


def test_custom_deny_list() -> None:
    networks = (ipaddress.ip_network("127.0.0.2/32"),)
    assert is_denied(ipaddress.ip_address("127.0.0.2"), networks) is not None
    assert is_denied(ipaddress.ip_address("127.0.0.1"), networks) is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("8.8.8.8", ("8.8.8.8", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("2001:4860:4860::8888", ("2001:4860:4860::8888", 53)),
        (" 10.0.0.53:53 ", ("10.0.0.53", 53)),
    ],
)
def test_parse_resolver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "ns.example:53",
        "resolver",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:abc",
        "[::1",
        "[::1]53",
        "[::1]:",
        "1.2.3.4:",
        "",
        "[ns.example]:53",
    ],
)
def test_parse_resolver_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_resolver(spec)


def test_config_validates_resolvers_and_settings() -> None:
    ValidationConfig(dns_resolvers=("127.0.0.1:53", "[::1]:5353"))
    with pytest.raises(ValueError):
        ValidationConfig(dns_resolvers=("dns.example:53",))
    with pytest.raises(ValueError):
        ValidationConfig(timeout=0)
    with pytest.raises(ValueError):
        ValidationConfig(http01_port=0)
    with pytest.raises(ValueError):
        ValidationConfig(http01_max_body=0)


def test_key_authorization_digest() -> None:
    assert key_authorization_digest("abc") == hashlib.sha256(b"abc").digest()
    # SHA-256("abc") = ba7816bf...15ad (FIPS 180-2 example), in base64url without padding.
    assert dns01_txt_value("abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    value = dns01_txt_value("token.thumbprint")
    assert len(value) == 43 and "=" not in value


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Example.COM", "example.com"),
        ("www.example.com.", "www.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("a-b.x1.test", "a-b.x1.test"),
    ],
)
def test_normalize_domain(name: str, expected: str) -> None:
    assert normalize_domain(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a..b",
        "-a.example",
        "a-.example",
        "a b.example",
        "*.example.com",
        "a/b.example",
        "x" * 64 + ".example",
        ("a" * 60 + ".") * 5 + "com",
    ],
)
def test_normalize_domain_rejects(name: str) -> None:
    with pytest.raises(ValidationFailure) as info:
        normalize_domain(name)
    assert info.value.problem.type == "rejectedIdentifier"


def test_validation_record_json() -> None:
    record = ValidationRecord("a.test", 80, ("::1", "127.0.0.1"), "::1", "http://a.test/x")
    assert record.to_json() == {
        "hostname": "a.test",
        "port": 80,
        "addressesResolved": ["::1", "127.0.0.1"],
        "addressUsed": "::1",
        "url": "http://a.test/x",
    }
    assert "url" not in ValidationRecord("a.test", 443, (), "127.0.0.1").to_json()
