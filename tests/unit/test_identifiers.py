"""newOrder identifier checks (RFC 8555 §7.1.3, §7.1.4)."""

import pytest

from acme_server.errors import AcmeError
from acme_server.identifiers import parse_identifiers
from acme_server.messages import IdentifierPayload


def ids(*values: str, kind: str = "dns") -> list[IdentifierPayload]:
    return [IdentifierPayload(type=kind, value=v) for v in values]


def test_normalises_and_dedups() -> None:
    parsed = parse_identifiers(ids("WWW.Example.COM.", "www.example.com", "*.example.com"), 10)
    assert [i.value for i in parsed] == ["*.example.com", "www.example.com"]
    wildcard = parsed[0]
    assert wildcard.wildcard and wildcard.base_value == "example.com"


@pytest.mark.parametrize(
    "value",
    [
        "localhost",
        "-a.example.com",
        "a-.example.com",
        "a..example.com",
        "a.*.example.com",
        "*example.com",
        "**.example.com",
        "1.2.3.4",
        "example.123",
        "a_b.example.com",
        "x" * 64 + ".example.com",
        ("a." * 127) + "com",
        "exa mple.com",
    ],
)
def test_rejects(value: str) -> None:
    with pytest.raises(AcmeError) as info:
        parse_identifiers(ids(value), 10)
    assert info.value.type == "rejectedIdentifier"
    assert info.value.subproblems[0].identifier == {"type": "dns", "value": value[:255]}


def test_unsupported_type_and_compound() -> None:
    with pytest.raises(AcmeError) as info:
        parse_identifiers(ids("1.2.3.4", kind="uri"), 10)
    assert info.value.type == "unsupportedIdentifier"
    with pytest.raises(AcmeError) as info:
        parse_identifiers([*ids("bad_name.example"), *ids("x", kind="email")], 10)
    assert info.value.type == "compound"
    assert len(info.value.subproblems) == 2


def test_limit() -> None:
    with pytest.raises(AcmeError) as info:
        parse_identifiers(ids(*[f"n{i}.example.com" for i in range(11)]), 10)
    assert info.value.type == "rejectedIdentifier"


def test_ip_identifiers_are_canonical() -> None:
    parsed = parse_identifiers(
        [*ids("127.0.0.1", "2001:DB8:0:0::1", kind="ip"), *ids("www.example.com")], 10
    )
    assert [(i.type, i.value) for i in parsed] == [
        ("dns", "www.example.com"),
        ("ip", "127.0.0.1"),
        ("ip", "2001:db8::1"),
    ]
    assert not any(i.wildcard for i in parsed)
    with pytest.raises(AcmeError) as info:
        parse_identifiers(ids("300.1.1.1", kind="ip"), 10)
    assert info.value.type == "malformed"
