"""From a log entry to a match: certificate fields, the allow list, the alert's shape."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from ct_monitor.certinfo import entry_info, parse_entry
from ct_monitor.feed import AllowList, AllowListError, misbehaviour_alert, unknown_issuance_alert
from ct_monitor.merkle import leaf_hash
from ct_monitor.types import LogEntry
from storage.models_ct import CTMatch
from tests.support.ctlog_certs import NOT_AFTER, make_cert, make_cert_pair, make_issuer

ISSUER = make_issuer(b"feed-test", "Feed Test CA")


def x509_entry(der: bytes, index: int = 7) -> LogEntry:
    return LogEntry(index, leaf_hash(der), "x509", der, b"", [ISSUER.der], 0)


def test_precert_and_final_entries_share_the_issuance_identity() -> None:
    pair = make_cert_pair(["www.example.com", "example.com"], ISSUER, serial=0x1234)
    pre = LogEntry(
        3, leaf_hash(b"p"), "precert", pair.precert_der, pair.tbs_der, [], 0, ISSUER.key_hash
    )
    final = x509_entry(pair.final_der)
    pre_info, final_info = entry_info(pre), entry_info(final)
    assert pre_info.tbs_sha256 == final_info.tbs_sha256
    assert pre_info.names == final_info.names == ["www.example.com", "example.com"]
    assert pre_info.issuer == final_info.issuer == "CN=Feed Test CA"
    assert pre_info.not_after == NOT_AFTER and pre_info.serial_hex == "1234"
    assert pre_info.cert_sha256 is None and pre_info.der == pair.precert_der
    assert final_info.cert_sha256 == hashlib.sha256(pair.final_der).hexdigest()
    assert pre_info.issuer_spki_sha256 == final_info.issuer_spki_sha256 == ISSUER.key_hash.hex()


def test_unparsable_entries_have_an_unparsable_name() -> None:
    for der in (b"\x30\x03\x02\x01\x01", b"junk"):
        parsed = parse_entry(x509_entry(der))
        assert parsed.names == [None] and parsed.notes
        assert entry_info(x509_entry(der)).tbs_sha256 == hashlib.sha256(der).hexdigest()


def test_allow_list_by_name_and_by_key() -> None:
    info = entry_info(x509_entry(make_cert(["a.example.com"], ISSUER)))
    assert AllowList.parse(["cn = feed test ca"]).allows(info)
    assert AllowList.parse([f"sha256:{ISSUER.key_hash.hex().upper()}"]).allows(info)
    assert not AllowList.parse(["CN=Other CA", "sha256:" + "0" * 64]).allows(info)
    assert not AllowList.parse([]).allows(info)
    with pytest.raises(AllowListError, match="neither an RFC 4514 DN"):
        AllowList.parse(["not a dn"])


def test_alerts_name_what_a_person_needs() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    row = CTMatch(
        id=1, log_url="http://log/", entry_index=5, entry_type="precert",
        names=[f"n{i}.example.com" for i in range(7)], issuer="CN=X", not_before=now,
        not_after=now, tbs_sha256="ab" * 32, cert_sha256=None, der=None,
        finding="ct_unknown_issuance", created_at=now, serial="01", notes=None,
    )  # fmt: skip
    alert = unknown_issuance_alert(row)
    assert alert.idempotency_key == "ct:" + "ab" * 32
    assert alert.severity == "high" and "(+2)" in alert.subject and "CN=X" in alert.subject
    assert alert.details["index"] == 5 and alert.details["notes"] == []
    bad = misbehaviour_alert("http://log/", "wrong root", (10, 20), {"signed_root": "ff"})
    assert bad.kind == "ct_log_misbehaviour" and bad.severity == "high"
    assert "http://log/" in bad.subject and "10 -> 20" in bad.subject
