"""Watch list parsing and matching: exact, subtree, wildcard, IDNA, case, fail-safe."""

from __future__ import annotations

import pytest

from ct_monitor.watchlist import (
    WatchListError,
    match_names,
    name_matches,
    normalize_cert_name,
    parse_watch_item,
    parse_watch_list,
)


def matches(cert_name: object, entry: str) -> bool:
    return name_matches(normalize_cert_name(cert_name), parse_watch_item(entry))


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  .example.com  ", ".example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        (".faß.de", ".xn--fa-hia.de"),  # UTS #46 non-transitional: ß stays ß (IDNA 2008)
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_watch_entries_are_normalised(entry: str, pattern: str) -> None:
    assert parse_watch_item(entry).pattern == pattern


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("", "empty name"),
        (".", "empty name"),
        ("a..example.com", "empty label"),
        ("*.example.com", "wildcards are not watch entries"),
        ("exa mple.com", "characters outside"),
        ("a/b.com", "characters outside"),
        ("a" * 64 + ".com", "longer than 63"),
        ("\u0080bad.com", "not a valid IDN"),
    ],
)
def test_bad_watch_entries_say_why(entry: str, reason: str) -> None:
    with pytest.raises(WatchListError, match=reason):
        parse_watch_item(entry)


def test_watch_list_file_skips_comments_and_names_the_bad_line() -> None:
    items = parse_watch_list(["# ours", "", "example.com  # apex only", ".example.org"])
    assert [i.pattern for i in items] == ["example.com", ".example.org"]
    with pytest.raises(WatchListError, match="line 2"):
        parse_watch_list(["ok.com", "*.bad.com"])


@pytest.mark.parametrize(
    ("cert_name", "entry", "expected"),
    [
        # exact entries
        ("example.com", "example.com", True),
        ("EXAMPLE.com.", "example.com", True),
        ("www.example.com", "example.com", False),
        ("example.com.evil.net", "example.com", False),
        ("notexample.com", "example.com", False),
        # subtree entries: the domain itself and everything below it
        ("example.com", ".example.com", True),
        ("a.b.example.com", ".example.com", True),
        ("example.org", ".example.com", False),
        ("badexample.com", ".example.com", False),
        # certificate wildcards against watched names
        ("*.example.com", "www.example.com", True),
        ("*.example.com", ".example.com", True),
        ("*.example.com", "example.com", False),  # a wildcard covers one label, not the apex
        ("*.example.com", "a.b.example.com", False),
        ("w*.example.com", "www.example.com", True),  # partial wildcard, RFC 6125 §6.4.3
        ("w*.example.com", "mail.example.com", False),
        ("*.com", "example.com", True),  # fail-safe: such a cert would cover our name
        ("*.sub.example.com", ".example.com", True),
        # IDNA in certificates: A-labels are compared with the watched entry's A-labels
        ("xn--bcher-kva.example", "bücher.example", True),
        ("XN--BCHER-KVA.example", "bücher.example", True),
        ("www.xn--bcher-kva.example", ".bücher.example", True),
        ("bücher.example", "bücher.example", True),  # Unicode in a dNSName: mapped, matched
        ("xn--bcher-kva.example", "bucher.example", False),
    ],
)
def test_matching(cert_name: str, entry: str, expected: bool) -> None:
    assert matches(cert_name, entry) is expected


def test_unparsable_label_matches_like_a_wildcard_with_a_note() -> None:
    name = normalize_cert_name("ex ample.com")
    assert name.labels == (None, "com")
    assert "unparsable label" in name.note
    assert name_matches(name, parse_watch_item("example.com"))
    assert not name_matches(name, parse_watch_item("example.org"))
    # the other labels still count: an unparsable label is not a match for everything
    assert not name_matches(normalize_cert_name("www.ex ample.com"), parse_watch_item("a.com"))


def test_unparsable_names_match_every_entry() -> None:
    for value in (None, b"bytes", "", "   "):
        assert matches(value, "example.com")
        assert matches(value, ".example.org")
    # Unicode that UTS #46 rejects in a certificate is an unparsable label
    assert normalize_cert_name("\u0080x.example.com").labels[0] is None
    # redaction placeholder
    assert matches("?.example.com", "secret.example.com")


def test_match_names_collects_names_patterns_and_notes() -> None:
    items = [parse_watch_item(".example.com"), parse_watch_item("shop.example.org")]
    result = match_names(["www.example.com", "other.net", "*.example.org"], items)
    assert result is not None
    assert result.names == ["www.example.com", "*.example.org"]
    assert result.patterns == [".example.com", "shop.example.org"]
    assert result.notes == []
    assert match_names(["other.net", "example.org"], items) is None
    assert match_names([], items) is None


def test_fail_safe_match_carries_a_note() -> None:
    items = [parse_watch_item("example.com")]
    result = match_names([None], items)
    assert result is not None
    assert "fail-safe" in result.notes[0]
    result = match_names(["exa$mple.com"], items)
    assert result is not None and "unparsable label" in result.notes[0]
