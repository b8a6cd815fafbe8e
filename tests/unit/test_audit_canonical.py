"""The canonical encoding audit hashes are computed over (RFC 8785, JSON Canonicalization)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math

import pytest

from audit.canonical import canonical_json, normalize
from audit.chain import GENESIS_HASH, AuditEntry
from audit.errors import AuditError


@pytest.mark.parametrize(
    ("number", "text"),
    [
        # RFC 8785 Appendix B (ECMAScript number serialization samples).
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (333333333.3333333, "333333333.3333333"),
        (1.0, "1"),
        (-12.5, "-12.5"),
    ],
)
def test_numbers_are_serialized_as_ecmascript_does(number: float, text: str) -> None:
    assert canonical_json(number) == text.encode()


def test_members_sorted_by_utf16_code_units_and_no_whitespace() -> None:
    # RFC 8785 §3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FFFF; "\r" before "1".
    value = {"\uffff": 1, "\U0001f600": 2, "1": 3, "\r": 4, "b": [True, None, "x"]}
    assert canonical_json(value) == (
        '{"\\r":4,"1":3,"b":[true,null,"x"],"\U0001f600":2,"\uffff":1}'.encode()
    )


def test_strings_use_only_the_mandatory_escapes() -> None:
    assert canonical_json('é"\\\n\x1f/') == '"é\\"\\\\\\n\\u001f/"'.encode()


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, 2**53, {1: "x"}, b"bytes", {"s": {1, 2}}, "\ud800"]
)
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(AuditError):
        canonical_json(bad)


def test_normalize_gives_what_reads_back() -> None:
    assert normalize({"t": (1, 2), "n": None}) == {"t": [1, 2], "n": None}


def test_entry_hash_is_sha256_of_the_documented_object() -> None:
    """An independent computation of docs/audit.md's formula (ASCII, integers only: there
    json.dumps with sorted keys and compact separators is RFC 8785 too)."""
    when = dt.datetime(2026, 11, 25, 5, 39, 30, 123456, tzinfo=dt.UTC)
    entry = AuditEntry(
        seq=1,
        time=when,
        actor="cli:root",
        action="est.user.add",
        target="est-user:router1",
        outcome="success",
        details={"label": None, "n": 3},
        request_id=None,
        prev_hash=GENESIS_HASH,
    )
    document = {
        "v": 1,
        "seq": 1,
        "time": "2026-11-25T05:39:30.123456Z",
        "actor": "cli:root",
        "action": "est.user.add",
        "target": "est-user:router1",
        "outcome": "success",
        "details": {"label": None, "n": 3},
        "request_id": None,
        "prev_hash": "0" * 64,
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert entry.compute_hash() == hashlib.sha256(encoded).hexdigest()
    # Any field changes the hash.
    assert AuditEntry(**{**entry.__dict__, "outcome": "failure"}).compute_hash() != (
        entry.compute_hash()
    )
