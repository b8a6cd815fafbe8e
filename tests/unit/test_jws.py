"""acme_server.jws: ACME JWS parsing and verification (RFC 8555 §6.2, RFC 7515, RFC 7638)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from josepy.b64 import b64decode
from josepy.jwk import JWKEC, JWKRSA

from acme_server.errors import AcmeError
from acme_server.jws import (
    SUPPORTED_ALGORITHMS,
    ParsedJWS,
    jwk_from_json,
    jwk_public_key_der,
    jwk_thumbprint,
    jwk_to_json,
    key_authorization,
    parse_jws,
    verify_jws,
    verify_key_change,
)
from tests.support.jws_client import (
    b64,
    public_jwk,
    sign_jws,
    sign_key_change,
)

URL = "https://ca.test/acme/new-order"
NONCE = "bm9uY2UtMQ"
ACCOUNT = "https://ca.test/acme/acct/1"
KEY_CHANGE_URL = "https://ca.test/acme/key-change"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-256b": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
        "RSA": rsa.generate_private_key(65537, 2048),
        "RSA-1024": rsa.generate_private_key(65537, 1024),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


def jwk_of(key: Any) -> Any:
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key.public_key())
    return JWKEC(key=key.public_key())


def raises(kind: str, body: bytes) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        parse_jws(body)
    assert info.value.type == kind, info.value.detail
    return info.value


def verify_raises(kind: str, parsed: ParsedJWS, key: Any) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        verify_jws(parsed, key)
    assert info.value.type == kind, info.value.detail
    return info.value


def reencode(body: bytes, **members: Any) -> bytes:
    obj = json.loads(body)
    obj.update(members)
    return json.dumps(obj).encode()


# --- happy paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_name", "alg"),
    [("P-256", "ES256"), ("P-384", "ES384"), ("P-521", "ES512"), ("RSA", "RS256")],
)
def test_each_supported_alg_verifies_with_embedded_jwk(
    keys: dict[str, Any], key_name: str, alg: str
) -> None:
    body = sign_jws(keys[key_name], {"hello": "world"}, url=URL, nonce=NONCE)
    parsed = parse_jws(body)
    assert parsed.alg == alg
    assert (parsed.nonce, parsed.url, parsed.kid) == (NONCE, URL, None)
    assert parsed.jwk is not None
    assert parsed.jwk == jwk_of(keys[key_name])
    assert parsed.payload_json() == {"hello": "world"}
    assert not parsed.is_post_as_get
    verify_jws(parsed, parsed.jwk)


def test_kid_request_verifies_with_stored_key(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {"a": 1}, url=URL, nonce=NONCE, kid=ACCOUNT)
    parsed = parse_jws(body)
    assert (parsed.kid, parsed.jwk) == (ACCOUNT, None)
    assert "jwk" not in parsed.protected
    verify_jws(parsed, jwk_from_json(jwk_to_json(jwk_of(keys["P-256"]))))


def test_post_as_get(keys: dict[str, Any]) -> None:
    parsed = parse_jws(sign_jws(keys["P-256"], None, url=URL, nonce=NONCE, kid=ACCOUNT))
    assert parsed.is_post_as_get
    assert parsed.payload == b""
    verify_jws(parsed, jwk_of(keys["P-256"]))
    with pytest.raises(AcmeError) as info:
        parsed.payload_json()
    assert info.value.type == "malformed"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"not json", b'{"a": 1, "a": 2}'])
def test_payload_json_must_be_an_object(keys: dict[str, Any], raw: bytes) -> None:
    parsed = parse_jws(
        sign_jws(keys["P-256"], None, raw_payload=raw, url=URL, nonce=NONCE, kid=ACCOUNT)
    )
    with pytest.raises(AcmeError) as info:
        parsed.payload_json()
    assert info.value.type == "malformed"


# --- algorithms --------------------------------------------------------------------------


def test_eddsa_is_not_offered(keys: dict[str, Any]) -> None:
    # josepy 2.2 has no OKP keys or EdDSA: the alg and the key type are both refused.
    assert "EdDSA" not in SUPPORTED_ALGORITHMS
    error = raises("badSignatureAlgorithm", sign_jws(keys["Ed25519"], {}, url=URL, nonce=NONCE))
    assert error.extra == {"algorithms": list(SUPPORTED_ALGORITHMS)}
    okp = public_jwk(keys["Ed25519"])
    raises("badPublicKey", sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, jwk=okp))


@pytest.mark.parametrize(
    ("key_name", "alg"),
    [
        ("P-384", "ES256"),
        ("P-256", "ES384"),
        ("P-256", "ES512"),
        ("P-256", "RS256"),
        ("RSA", "ES256"),
    ],
)
def test_alg_must_match_key(keys: dict[str, Any], key_name: str, alg: str) -> None:
    parsed = parse_jws(sign_jws(keys[key_name], {}, url=URL, nonce=NONCE, alg=alg))
    error = verify_raises("badSignatureAlgorithm", parsed, parsed.jwk)
    assert error.extra == {"algorithms": list(SUPPORTED_ALGORITHMS)}


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "PS256", "XX999", "EdDSA"])
def test_refused_algorithms(keys: dict[str, Any], alg: str) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, alg=alg, mac_key=b"s" * 32)
    error = raises("badSignatureAlgorithm", body)
    assert error.extra == {"algorithms": list(SUPPORTED_ALGORITHMS)}
    assert error.to_json()["algorithms"] == ["ES256", "ES384", "ES512", "RS256"]


@pytest.mark.parametrize("alg", [None, 256, ""])
def test_alg_required_string(keys: dict[str, Any], alg: Any) -> None:
    header = {"alg": alg} if alg is not None else {}
    drop = ["alg"] if alg is None else []
    raises(
        "malformed",
        sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, extra_header=header, drop_header=drop),
    )


# --- header rules ------------------------------------------------------------------------


def test_both_jwk_and_kid(keys: dict[str, Any]) -> None:
    raises("malformed", sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, kid=ACCOUNT, jwk=True))


def test_neither_jwk_nor_kid(keys: dict[str, Any]) -> None:
    raises("malformed", sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, jwk=False))


@pytest.mark.parametrize("kid", ["", 7, None])
def test_kid_must_be_non_empty_string(keys: dict[str, Any], kid: Any) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, jwk=False, extra_header={"kid": kid})
    raises("malformed", body)


def test_missing_nonce(keys: dict[str, Any]) -> None:
    raises("badNonce", sign_jws(keys["P-256"], {}, url=URL, nonce=None))


@pytest.mark.parametrize("nonce", [42, "", "not base64!", ["x"]])
def test_unusable_nonce(keys: dict[str, Any], nonce: Any) -> None:
    raises(
        "badNonce", sign_jws(keys["P-256"], {}, url=URL, nonce=None, extra_header={"nonce": nonce})
    )


def test_missing_url(keys: dict[str, Any]) -> None:
    raises("malformed", sign_jws(keys["P-256"], {}, url=None, nonce=NONCE))


@pytest.mark.parametrize("url", [17, "", None])
def test_url_must_be_string(keys: dict[str, Any], url: Any) -> None:
    raises(
        "malformed", sign_jws(keys["P-256"], {}, url=None, nonce=NONCE, extra_header={"url": url})
    )


def test_crit(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, extra_header={"crit": ["b64"]})
    raises("malformed", body)


def test_private_jwk_is_refused(keys: dict[str, Any]) -> None:
    for key in (keys["P-256"], keys["RSA"]):
        private = (JWKEC if isinstance(key, ec.EllipticCurvePrivateKey) else JWKRSA)(key=key)
        assert "d" in private.to_json()
        raises("malformed", sign_jws(key, {}, url=URL, nonce=NONCE, jwk=private.to_json()))


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "oct"},
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)},
        {"kty": "EC", "crv": "P-256", "x": 5, "y": 6},
        {"kty": "RSA", "n": "AQAB"},
        {"kty": "RSA", "n": "", "e": "AQAB"},
        {"kty": "XYZ"},
        {},
    ],
)
def test_bad_public_keys(keys: dict[str, Any], jwk: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, jwk=jwk)
    # A symmetric key ("k") is private material, so malformed like any private JWK.
    raises("malformed" if "k" in jwk else "badPublicKey", body)


def test_jwk_must_be_object(keys: dict[str, Any]) -> None:
    raises(
        "malformed",
        sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, jwk=False, extra_header={"jwk": "key"}),
    )


# --- serialization -----------------------------------------------------------------------


def test_general_serialization(keys: dict[str, Any]) -> None:
    raises("malformed", sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, serialization="general"))


def test_compact_serialization(keys: dict[str, Any]) -> None:
    error = raises(
        "malformed", sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, serialization="compact")
    )
    assert "compact" in error.detail


def test_unprotected_header(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, unprotected={"kid": ACCOUNT})
    raises("malformed", body)


def test_extra_or_missing_member(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE)
    raises("malformed", reencode(body, extra="x"))
    obj = json.loads(body)
    del obj["signature"]
    raises("malformed", json.dumps(obj).encode())


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
@pytest.mark.parametrize("bad", ["e30=", "e3!0", "a", 5, None])
def test_bad_base64(keys: dict[str, Any], member: str, bad: Any) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE)
    raises("malformed", reencode(body, **{member: bad}))


@pytest.mark.parametrize(
    "body", [b"[]", b'"jws"', b"null", b"", b"\xff\xfe{}", b"{" * 5000, b'{"a": NaN}']
)
def test_non_object_or_invalid_json(body: bytes) -> None:
    raises("malformed", body)


@pytest.mark.parametrize("protected", [b"[1]", b"alg", b'{"alg": "ES256", "alg": "ES256"}', b""])
def test_protected_header_must_be_json_object(keys: dict[str, Any], protected: bytes) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE)
    raises("malformed", reencode(body, protected=b64(protected)))


def test_random_mutations_only_raise_acme_errors(keys: dict[str, Any]) -> None:
    body = sign_jws(
        keys["P-256"], {"identifiers": [{"type": "dns", "value": "a"}]}, url=URL, nonce=NONCE
    )
    rng = random.Random(8555)
    for _ in range(500):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            parsed = parse_jws(bytes(mutated))
            if parsed.jwk is not None:
                verify_jws(parsed, parsed.jwk)
        except AcmeError:
            pass


# --- signatures --------------------------------------------------------------------------


def test_tampered_payload(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {"contact": ["mailto:a@example.org"]}, url=URL, nonce=NONCE)
    tampered = reencode(body, payload=b64(b'{"contact": ["mailto:b@example.org"]}'))
    parsed = parse_jws(tampered)
    error = verify_raises("malformed", parsed, parsed.jwk)
    assert error.detail == "JWS signature invalid"


def test_tampered_protected_header(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["RSA"], {}, url=URL, nonce=NONCE, kid=ACCOUNT)
    other = sign_jws(keys["RSA"], {}, url=URL + "x", nonce=NONCE, kid=ACCOUNT)
    parsed = parse_jws(reencode(body, protected=json.loads(other)["protected"]))
    verify_raises("malformed", parsed, jwk_of(keys["RSA"]))


@pytest.mark.parametrize("cut", [1, 32, 63])
def test_truncated_es256_signature(keys: dict[str, Any], cut: int) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE)
    signature = json.loads(body)["signature"]
    raw = b64decode(signature)
    parsed = parse_jws(reencode(body, signature=b64(raw[:-cut])))
    verify_raises("malformed", parsed, parsed.jwk)
    # Too long, and DER instead of R||S (RFC 7518 §3.4), fail the same way.
    parsed = parse_jws(reencode(body, signature=b64(raw + b"\x00")))
    verify_raises("malformed", parsed, parsed.jwk)


def test_truncated_rsa_signature(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["RSA"], {}, url=URL, nonce=NONCE)
    parsed = parse_jws(reencode(body, signature=json.loads(body)["signature"][:-8]))
    verify_raises("malformed", parsed, parsed.jwk)


def test_empty_signature(keys: dict[str, Any]) -> None:
    body = sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE)
    raises("malformed", reencode(body, signature=""))


def test_wrong_key(keys: dict[str, Any]) -> None:
    parsed = parse_jws(sign_jws(keys["P-256"], {}, url=URL, nonce=NONCE, kid=ACCOUNT))
    verify_raises("malformed", parsed, jwk_of(keys["P-256b"]))


def test_small_rsa_key(keys: dict[str, Any]) -> None:
    parsed = parse_jws(sign_jws(keys["RSA-1024"], {}, url=URL, nonce=NONCE))
    assert parsed.jwk is not None
    verify_raises("badPublicKey", parsed, parsed.jwk)


# --- keys --------------------------------------------------------------------------------


def test_thumbprint_rfc7638_example() -> None:
    # RFC 7638 §3.1.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
        "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW"
        "2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
        "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    key = jwk_from_json({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"})
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert key_authorization("tok", key) == "tok.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_ignores_private_part(keys: dict[str, Any]) -> None:
    key = keys["P-384"]
    assert jwk_thumbprint(JWKEC(key=key)) == jwk_thumbprint(JWKEC(key=key.public_key()))
    assert "=" not in jwk_thumbprint(JWKEC(key=key))


def test_jwk_json_round_trip(keys: dict[str, Any]) -> None:
    for name in ("P-256", "P-384", "P-521", "RSA"):
        private = (JWKRSA if name == "RSA" else JWKEC)(key=keys[name])
        stored = jwk_to_json(private)
        assert "d" not in stored
        json.dumps(stored)
        assert jwk_from_json(stored) == jwk_of(keys[name])
        assert jwk_thumbprint(jwk_from_json(stored)) == jwk_thumbprint(private)


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "x",
        {"kty": "EC", "crv": "P-256"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
        {"kty": "oct", "k": "AA"},
        {"kty": "RSA", "n": 1, "e": 2},
    ],
)
def test_jwk_from_json_rejects(obj: Any) -> None:
    with pytest.raises(AcmeError) as info:
        jwk_from_json(obj)
    assert info.value.type == "badPublicKey"


def test_jwk_from_json_rejects_private(keys: dict[str, Any]) -> None:
    with pytest.raises(AcmeError) as info:
        jwk_from_json(JWKEC(key=keys["P-256"]).to_json())
    assert info.value.type == "badPublicKey"


def test_public_key_der(keys: dict[str, Any]) -> None:
    key = keys["P-256"]
    expected = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert jwk_public_key_der(JWKEC(key=key)) == expected
    assert jwk_public_key_der(jwk_of(key)) == expected


# --- key change (RFC 8555 §7.3.5) ----------------------------------------------------------


def key_change(outer_body: bytes, old_key: Any) -> Any:
    outer = parse_jws(outer_body)
    verify_jws(outer, jwk_of(old_key))
    return verify_key_change(outer, jwk_of(old_key), ACCOUNT)


def key_change_raises(kind: str, outer_body: bytes, old_key: Any) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        key_change(outer_body, old_key)
    assert info.value.type == kind, info.value.detail
    return info.value


def inner_jws(new_key: Any, old_key: Any, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"url": KEY_CHANGE_URL, "nonce": None}
    options.update(kwargs)
    payload = options.pop("payload", {"account": ACCOUNT, "oldKey": public_jwk(old_key)})
    return dict(json.loads(sign_jws(new_key, payload, **options)))


def outer_jws(old_key: Any, payload: dict[str, Any] | None) -> bytes:
    return sign_jws(old_key, payload, url=KEY_CHANGE_URL, nonce=NONCE, kid=ACCOUNT)


@pytest.mark.parametrize(("old", "new"), [("P-256", "RSA"), ("RSA", "P-384"), ("P-256", "P-256b")])
def test_key_change_happy_path(keys: dict[str, Any], old: str, new: str) -> None:
    body = sign_key_change(
        keys[old], keys[new], account_url=ACCOUNT, url=KEY_CHANGE_URL, nonce=NONCE
    )
    assert key_change(body, keys[old]) == jwk_of(keys[new])


def test_key_change_inner_uses_kid(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"], kid=ACCOUNT)
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_inner_has_nonce(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"], nonce=NONCE)
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_url_mismatch(keys: dict[str, Any]) -> None:
    body = sign_key_change(
        keys["P-256"],
        keys["P-256b"],
        account_url=ACCOUNT,
        url=KEY_CHANGE_URL,
        nonce=NONCE,
        inner_url=URL,
    )
    key_change_raises("malformed", body, keys["P-256"])


def test_key_change_inner_without_url(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"], url=None)
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_account_mismatch(keys: dict[str, Any]) -> None:
    payload = {"account": ACCOUNT + "0", "oldKey": public_jwk(keys["P-256"])}
    inner = inner_jws(keys["P-256b"], keys["P-256"], payload=payload)
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


@pytest.mark.parametrize("old_key", ["other", "garbage", "missing", "private"])
def test_key_change_old_key_mismatch(keys: dict[str, Any], old_key: str) -> None:
    payload: dict[str, Any] = {"account": ACCOUNT}
    if old_key == "other":
        payload["oldKey"] = public_jwk(keys["P-384"])
    elif old_key == "garbage":
        payload["oldKey"] = {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}
    elif old_key == "private":
        payload["oldKey"] = JWKEC(key=keys["P-256"]).to_json()
    inner = inner_jws(keys["P-256b"], keys["P-256"], payload=payload)
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_inner_signature_invalid(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"])
    inner["payload"] = b64(
        json.dumps({"account": ACCOUNT, "oldKey": public_jwk(keys["P-256"]), "x": 1}).encode()
    )
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_inner_signed_by_other_key(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"], jwk=public_jwk(keys["P-384"]))
    key_change_raises("badSignatureAlgorithm", outer_jws(keys["P-256"], inner), keys["P-256"])
    inner = inner_jws(keys["P-256b"], keys["P-256"], jwk=public_jwk(keys["P-256"]))
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_inner_alg_none(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"], alg="none")
    key_change_raises("badSignatureAlgorithm", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_weak_new_key(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["RSA-1024"], keys["P-256"])
    key_change_raises("badPublicKey", outer_jws(keys["P-256"], inner), keys["P-256"])


def test_key_change_new_key_is_old_key(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256"], keys["P-256"])
    key_change_raises("malformed", outer_jws(keys["P-256"], inner), keys["P-256"])


@pytest.mark.parametrize("payload", [None, {"account": ACCOUNT}, {"payload": "", "x": 1}])
def test_key_change_outer_payload_not_a_jws(keys: dict[str, Any], payload: Any) -> None:
    key_change_raises("malformed", outer_jws(keys["P-256"], payload), keys["P-256"])


def test_key_change_outer_must_use_kid(keys: dict[str, Any]) -> None:
    inner = inner_jws(keys["P-256b"], keys["P-256"])
    body = sign_jws(keys["P-256"], inner, url=KEY_CHANGE_URL, nonce=NONCE)
    key_change_raises("malformed", body, keys["P-256"])
