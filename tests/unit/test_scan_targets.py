"""scanner.targets: target syntax, ports, excludes, name merging and the seeded sweep order."""

from __future__ import annotations

import ipaddress

import pytest

from scanner.targets import (
    TargetError,
    expand,
    parse_excludes,
    parse_ports,
    parse_target,
    read_targets_file,
    resolve,
)


def test_ports() -> None:
    assert parse_ports("443,8443,1000-1003, 443") == [443, 1000, 1001, 1002, 1003, 8443]
    for bad in ("", "0", "70000", "10-5", "https", "1-2-3"):
        with pytest.raises(TargetError):
            parse_ports(bad)


@pytest.mark.parametrize(
    ("text", "name", "addresses", "port", "protocol"),
    [
        ("192.0.2.7", None, ["192.0.2.7"], None, None),
        ("192.0.2.7:8443", None, ["192.0.2.7"], 8443, None),
        ("2001:db8::7", None, ["2001:db8::7"], None, None),
        ("[2001:db8::7]:443", None, ["2001:db8::7"], 443, None),
        ("192.0.2.0/30", None, ["192.0.2.1", "192.0.2.2"], None, None),
        ("192.0.2.8/31", None, ["192.0.2.8", "192.0.2.9"], None, None),
        ("192.0.2.1-192.0.2.3", None, ["192.0.2.1", "192.0.2.2", "192.0.2.3"], None, None),
        ("192.0.2.9-10:25", None, ["192.0.2.9", "192.0.2.10"], 25, None),
        ("Intranet.Example@10.1.2.3:8443", "intranet.example", ["10.1.2.3"], 8443, None),
        ("smtp://mx.example@192.0.2.25:2525", "mx.example", ["192.0.2.25"], 2525, "smtp"),
        ("www.Example.NET.", "www.example.net", None, None, None),
        ("web-1.example:443", "web-1.example", None, 443, None),
    ],
)
def test_target_forms(
    text: str, name: str | None, addresses: list[str] | None, port: int | None, protocol: str | None
) -> None:
    spec = parse_target(text)
    assert spec.name == name
    got = None if spec.addresses is None else [str(a) for a in spec.addresses]
    assert got == addresses
    assert (spec.port, spec.protocol) == (port, protocol)


@pytest.mark.parametrize(
    "bad",
    [
        "a@b.example",  # after @ comes an address
        "gopher://192.0.2.1",
        "192.0.2.1:0",
        "192.0.2.1:x",
        "192.0.2.9-192.0.2.1",
        "192.0.2.1-2001:db8::1",
        "10.0.0.0/7",
        "@192.0.2.1",
    ],
)
def test_bad_targets(bad: str) -> None:
    with pytest.raises(TargetError):
        parse_target(bad)


def test_targets_file_and_excludes() -> None:
    lines = ["# fleet", "", "192.0.2.1  # web", " 192.0.2.0/29 "]
    assert read_targets_file(lines) == ["192.0.2.1", "192.0.2.0/29"]
    assert parse_excludes(["192.0.2.4/30", "2001:db8::1"])[1].prefixlen == 128
    with pytest.raises(TargetError):
        parse_excludes(["nonsense"])


async def test_expand_merges_names_applies_ports_protocols_and_excludes() -> None:
    specs = [
        parse_target("192.0.2.0/29"),
        parse_target("a.example@192.0.2.1"),
        parse_target("b.example@192.0.2.1"),
        parse_target("a.example@192.0.2.1"),
        parse_target("imap://192.0.2.6:9143"),
    ]
    endpoints, errors = await expand(
        specs, [443, 25, 143], parse_excludes(["192.0.2.4/31"]), seed=1
    )
    assert errors == []
    keys = {e.key: e for e in endpoints}
    # /29 → .1-.6, minus .4 and .5, on three ports; plus the forced IMAP endpoint.
    assert len(endpoints) == 4 * 3 + 1
    assert keys[("192.0.2.1", 443)].names == ["a.example", "b.example"]
    assert keys[("192.0.2.2", 443)].names == []
    assert keys[("192.0.2.1", 25)].protocol == "smtp"
    assert keys[("192.0.2.1", 143)].protocol == "imap"
    assert keys[("192.0.2.6", 9143)].protocol == "imap"
    assert keys[("192.0.2.6", 443)].protocol == "tls"
    more, _ = await expand([parse_target("192.0.2.1")], [21, 110, 389, 587, 5432, 8443])
    assert [e.protocol for e in sorted(more, key=lambda e: e.port)] == [
        "ftp",
        "pop3",
        "ldap",
        "smtp",
        "postgres",
        "tls",
    ]
    forced, _ = await expand([parse_target("tls://192.0.2.1:25")], [443])
    assert forced[0].protocol == "tls"
    assert ("192.0.2.4", 443) not in keys


async def test_sweep_order_is_a_seeded_permutation() -> None:
    specs = [parse_target("10.9.0.0/26")]
    one, _ = await expand(specs, [443], seed=7)
    again, _ = await expand(specs, [443], seed=7)
    other, _ = await expand(specs, [443], seed=8)
    order = [e.key for e in one]
    assert order == [e.key for e in again]
    assert order != [e.key for e in other]
    assert sorted(order) == sorted(e.key for e in other)
    assert order != sorted(order, key=lambda k: int(ipaddress.ip_address(k[0])))


async def test_names_resolve_through_the_system_resolver() -> None:
    # /etc/hosts: no network needed.
    assert ipaddress.ip_address("127.0.0.1") in await resolve("localhost")
    endpoints, errors = await expand(
        [parse_target("localhost:8443"), parse_target("no-such-host.invalid")], [443]
    )
    assert any(e.names == ["localhost"] and e.port == 8443 for e in endpoints)
    assert len(errors) == 1 and "no-such-host.invalid" in errors[0]
