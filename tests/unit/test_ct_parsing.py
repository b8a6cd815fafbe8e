"""Parsing of CT structures, checkpoints, log signatures and v3 log lists."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ct_monitor.checkpoint import CheckpointError, format_checkpoint, parse_and_verify
from ct_monitor.config import CTLogOverride, CTSettings
from ct_monitor.httpclient import parse_retry_after, user_agent
from ct_monitor.loglist import LogListError, LogListSource, parse_log_list
from ct_monitor.merkle import leaf_hash
from ct_monitor.rfc6962 import parse_entry
from ct_monitor.signatures import (
    SignatureError,
    load_log_key,
    note_key_id,
    verify_tree_head,
)
from ct_monitor.static_ct import tile_path
from ct_monitor.types import TreeHead
from ct_monitor.wire import (
    HASH_SHA256,
    SIG_ECDSA,
    SIG_RSA,
    DigitallySigned,
    TileLeaf,
    TimestampedEntry,
    WireError,
    encode_extra_data,
    encode_leaf_index_extension,
    encode_merkle_tree_leaf,
    encode_tile_leaf,
    leaf_index_from_extensions,
    parse_extra_data,
    parse_merkle_tree_leaf,
    parse_tile_leaves,
    tree_head_signature_input,
)
from tests.support.ctlog_certs import derive_key, make_cert, make_cert_pair, make_issuer, spki_der

ISSUER = make_issuer(b"unit")
CERT = make_cert(["www.example.com"], ISSUER)
PAIR = make_cert_pair(["shop.example.com"], ISSUER)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_merkle_tree_leaf_round_trip_x509_and_precert() -> None:
    x = TimestampedEntry(1_700_000_000_000, "x509", CERT, b"", b"")
    p = TimestampedEntry(
        5, "precert", PAIR.tbs_der, ISSUER.key_hash, encode_leaf_index_extension(9)
    )
    assert parse_merkle_tree_leaf(encode_merkle_tree_leaf(x)) == x
    parsed = parse_merkle_tree_leaf(encode_merkle_tree_leaf(p))
    assert parsed == p and leaf_index_from_extensions(parsed.extensions) == 9


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-3], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b"\x01" + b[1:], "unsupported version"),
        (lambda b: b[:10] + b"\x00\x07" + b[12:], "unknown LogEntryType"),
    ],
)
def test_malformed_leaves_name_the_problem(mutate: Any, message: str) -> None:
    good = encode_merkle_tree_leaf(TimestampedEntry(1, "x509", CERT, b"", b""))
    with pytest.raises(WireError, match=message):
        parse_merkle_tree_leaf(mutate(good))


def test_extra_data_for_both_entry_types() -> None:
    chain = [ISSUER.der]
    assert parse_extra_data("x509", encode_extra_data("x509", b"", chain)) == (b"", chain)
    assert parse_extra_data("precert", encode_extra_data("precert", PAIR.precert_der, chain)) == (
        PAIR.precert_der,
        chain,
    )
    with pytest.raises(WireError):
        parse_extra_data("x509", b"\x00\x00\x09\x00")


def test_get_entries_item_parsed_and_unparsable_leaf_kept_with_its_hash() -> None:
    leaf = encode_merkle_tree_leaf(
        TimestampedEntry(7, "precert", PAIR.tbs_der, ISSUER.key_hash, b"")
    )
    extra = encode_extra_data("precert", PAIR.precert_der, [ISSUER.der])
    entry = parse_entry(4, {"leaf_input": _b64(leaf), "extra_data": _b64(extra)})
    assert (entry.index, entry.entry_type, entry.timestamp_ms) == (4, "precert", 7)
    assert entry.tbs_der == PAIR.tbs_der and entry.cert_der == PAIR.precert_der
    assert entry.leaf_hash == leaf_hash(leaf) and entry.chain_der == [ISSUER.der]
    # A leaf that does not parse keeps its hash (the tree still verifies) and says why.
    junk = b"\x00\x00garbage"
    bad = parse_entry(5, {"leaf_input": _b64(junk), "extra_data": ""})
    assert bad.parse_error and bad.leaf_hash == leaf_hash(junk)
    with pytest.raises(ValueError, match="base64"):
        parse_entry(6, {"leaf_input": "***"})


def test_tile_leaves_parse_and_keep_the_merkle_leaf() -> None:
    fp = hashlib.sha256(ISSUER.der).digest()
    leaves = [
        TileLeaf(TimestampedEntry(1, "x509", CERT, b"", encode_leaf_index_extension(0)), b"", [fp]),
        TileLeaf(
            TimestampedEntry(2, "precert", PAIR.tbs_der, ISSUER.key_hash,
                             encode_leaf_index_extension(1)),
            PAIR.precert_der, [fp, fp],
        ),
    ]  # fmt: skip
    data = b"".join(encode_tile_leaf(t) for t in leaves)
    parsed = parse_tile_leaves(data)
    assert [p.entry for p in parsed] == [t.entry for t in leaves]
    assert parsed[1].pre_certificate == PAIR.precert_der and parsed[1].chain_fingerprints == [
        fp,
        fp,
    ]
    assert parsed[0].merkle_leaf == encode_merkle_tree_leaf(leaves[0].entry)
    with pytest.raises(WireError):
        parse_tile_leaves(data[:-5])


def test_tile_paths_use_the_x_encoding() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(2, 5, 17) == "tile/2/005.p/17"
    assert tile_path("data", 1000) == "tile/data/x001/000"


def _ecdsa_head(key: ec.EllipticCurvePrivateKey, size: int, root: bytes, ts: int) -> bytes:
    sig = key.sign(tree_head_signature_input(ts, size, root), ec.ECDSA(hashes.SHA256()))
    return DigitallySigned(HASH_SHA256, SIG_ECDSA, sig).encode()


def test_tree_head_signatures_ecdsa_and_rsa() -> None:
    root = hashlib.sha256(b"root").digest()
    key = derive_key(b"log")
    pub = load_log_key(spki_der(key))
    verify_tree_head(pub, 10, 5, root, _ecdsa_head(key, 5, root, 10))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_tree_head(pub, 10, 6, root, _ecdsa_head(key, 5, root, 10))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    msg = tree_head_signature_input(10, 5, root)
    sig = rsa_key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    verify_tree_head(load_log_key(rsa_der), 10, 5, root, DigitallySigned(4, SIG_RSA, sig).encode())
    with pytest.raises(SignatureError, match="algorithm"):
        verify_tree_head(
            load_log_key(rsa_der), 10, 5, root, DigitallySigned(4, SIG_ECDSA, sig).encode()
        )
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SignatureError, match="P-256"):
        load_log_key(p384)


def test_checkpoint_round_trip_and_rejections() -> None:
    key = derive_key(b"log")
    key_der = spki_der(key)
    log_id = hashlib.sha256(key_der).digest()
    pub = load_log_key(key_der)
    root = hashlib.sha256(b"r").digest()
    head = TreeHead(42, root, 1234, _ecdsa_head(key, 42, root, 1234))
    origin = "ct.example.test/2026h1"
    note = format_checkpoint(origin, log_id, head)
    assert note.startswith(b"ct.example.test/2026h1\n42\n")
    assert parse_and_verify(note, origin, log_id, pub) == head
    # A witness cosignature (unknown key) is ignored, as signed-note requires.
    witnessed = note + f"\u2014 witness.example {_b64(b'abcd' + bytes(64))}\n".encode()
    assert parse_and_verify(witnessed, origin, log_id, pub).tree_size == 42
    with pytest.raises(CheckpointError, match="origin"):
        parse_and_verify(note, "other.example", log_id, pub)
    tampered = note.replace(b"\n42\n", b"\n43\n")
    with pytest.raises(SignatureError):
        parse_and_verify(tampered, origin, log_id, pub)
    with pytest.raises(CheckpointError, match="extension"):
        parse_and_verify(note.replace(b"=\n\n", b"=\nextra\n\n", 1), origin, log_id, pub)
    assert (
        note_key_id(origin, log_id)
        == hashlib.sha256(origin.encode() + b"\n\x05" + log_id).digest()[:4]
    )


def test_retry_after_and_user_agent() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert user_agent("ops@example.com") == "certyard-ct/0.1 (+ops@example.com)"
    assert user_agent("") == "certyard-ct/0.1"


def _log(key_der: bytes, state: str, **fields: Any) -> dict[str, Any]:
    return {
        "description": "a log",
        "key": _b64(key_der),
        "log_id": _b64(hashlib.sha256(key_der).digest()),
        "mmd": 86400,
        "state": {state: {"timestamp": "2026-01-01T00:00:00Z"}},
        **fields,
    }


def test_log_list_v3_both_kinds_states_and_overrides() -> None:
    k1, k2, k3, k4 = (spki_der(derive_key(bytes([i]))) for i in range(4))
    bad_id = _log(k4, "usable", url="https://bad.example/")
    bad_id["log_id"] = _b64(b"\x00" * 32)
    doc = {
        "version": "42.1",
        "log_list_timestamp": "2026-11-01T00:00:00Z",
        "operators": [
            {
                "name": "Op A",
                "logs": [
                    _log(k1, "usable", url="https://a.example/2026h1"),
                    _log(k2, "retired", url="https://old.example/"),
                    bad_id,
                ],
                "tiled_logs": [
                    _log(
                        k3, "readonly",
                        submission_url="https://t.example/2026h1/",
                        monitoring_url="https://t-mon.example/2026h1",
                        mmd=60,
                    ) | {"state": {"readonly": {"final_tree_head": {"tree_size": 99,
                                                                     "sha256_root_hash": "x"}}}},
                ],
            }
        ],
    }  # fmt: skip
    settings = CTSettings(
        default_batch_size=100,
        overrides={
            "https://a.example/2026h1": CTLogOverride(batch_size=1000, requests_per_second=2)
        },
    )
    result = parse_log_list(json.dumps(doc).encode(), settings)
    assert [d.url for d in result.logs] == [
        "https://a.example/2026h1/",
        "https://t-mon.example/2026h1/",
    ]
    rfc, tiled = result.logs
    assert (rfc.kind, rfc.batch_size, rfc.requests_per_second, rfc.operator) == (
        "rfc6962", 1000, 2.0, "Op A",
    )  # fmt: skip
    assert (tiled.kind, tiled.batch_size, tiled.mmd, tiled.state) == ("tiled", 100, 60, "readonly")
    assert tiled.origin == "t.example/2026h1" and tiled.extra["final_tree_size"] == "99"
    assert result.skipped == [("https://old.example/", "state retired")]
    assert len(result.problems) == 1 and "log_id" in result.problems[0]
    # Opting in to retired logs reads them too.
    with_retired = parse_log_list(
        json.dumps(doc).encode(), CTSettings(log_states=["usable", "readonly", "retired"])
    )
    assert len(with_retired.logs) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"{", "not JSON"), (b"[]", "operators"), (b'{"logs": []}', "operators")],
)
def test_log_list_that_is_not_one_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(LogListError, match=message):
        parse_log_list(data, CTSettings())


async def test_log_list_source_refreshes_and_keeps_the_last_good_list(tmp_path: Path) -> None:
    key = spki_der(derive_key(b"src"))
    path = tmp_path / "logs.json"

    def write(url: str) -> None:
        doc = {"operators": [{"name": "Op", "logs": [_log(key, "usable", url=url)]}]}
        path.write_text(json.dumps(doc))

    now = [0.0]
    write("https://one.example/")
    source = LogListSource(
        CTSettings(log_list=str(path), log_list_refresh_seconds=60), clock=lambda: now[0]
    )
    assert [d.url for d in (await source.get()).logs] == ["https://one.example/"]
    write("https://two.example/")
    now[0] = 59.0
    assert [d.url for d in (await source.get()).logs] == ["https://one.example/"]  # not due
    now[0] = 61.0
    assert [d.url for d in (await source.get()).logs] == ["https://two.example/"]
    path.write_text("{broken")
    now[0] = 200.0
    assert [d.url for d in (await source.get()).logs] == ["https://two.example/"]
    assert source.last_error and "not JSON" in source.last_error
    with pytest.raises(LogListError, match="No such file"):
        await LogListSource(CTSettings(log_list=str(tmp_path / "missing.json"))).get()
