"""A tiny ACME JWS signer for tests (RFC 8555 §6.2), able to build broken messages on purpose.

``sign_jws`` produces what a well-behaved client sends by default; its keyword arguments break
one rule at a time: another ``alg`` in the header, ``none`` or an HMAC (``HS256`` with
``mac_key``), both or neither of ``jwk`` / ``kid``, no ``nonce`` / ``url``, extra header
parameters, an unprotected header, and the general or compact serialization.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from josepy.b64 import b64encode
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWKEC, JWKRSA

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
Serialization = Literal["flattened", "general", "compact"]

_JOSEPY_ALGS: dict[str, JWASignature] = {
    "ES256": ES256,
    "ES384": ES384,
    "ES512": ES512,
    "RS256": RS256,
}
_HMACS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return b64encode(data).decode("ascii")


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of ``key``; Ed25519 as an RFC 8037 OKP key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return dict(JWKEC(key=key.public_key()).to_json())
    if isinstance(key, rsa.RSAPrivateKey):
        return dict(JWKRSA(key=key.public_key()).to_json())
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


def default_alg(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return "EdDSA"


def _sign(key: PrivateKey, alg: str, message: bytes, mac_key: bytes | None) -> bytes:
    if alg == "none":
        return b""
    if alg in _HMACS:
        return hmac.new(mac_key or b"k" * 32, message, _HMACS[alg]).digest()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    # An unknown alg, or one of the wrong family for the key, is still signed with the key's
    # natural algorithm, so a server must reject it for the alg, not for the signature.
    algorithm = _JOSEPY_ALGS.get(alg)
    if algorithm is None or algorithm.name[:2] != default_alg(key)[:2]:
        algorithm = _JOSEPY_ALGS[default_alg(key)]
    signature: bytes = algorithm.sign(key, message)
    return signature


def sign_jws(
    key: PrivateKey,
    payload: Mapping[str, Any] | None,
    *,
    url: str | None,
    nonce: str | None,
    kid: str | None = None,
    jwk: bool | Mapping[str, Any] | None = None,
    alg: str | None = None,
    mac_key: bytes | None = None,
    extra_header: Mapping[str, Any] | None = None,
    drop_header: Iterable[str] = (),
    raw_payload: bytes | None = None,
    unprotected: Mapping[str, Any] | None = None,
    serialization: Serialization = "flattened",
) -> bytes:
    """Sign an ACME request body.

    ``payload=None`` is POST-as-GET (empty payload); ``raw_payload`` sends exact bytes instead.
    ``url=None`` / ``nonce=None`` omit the member. ``jwk=None`` (the default) embeds the public
    JWK exactly when no ``kid`` is given; ``jwk=True`` embeds it always (with ``kid``: both),
    ``jwk=False`` never (without ``kid``: neither); a dict embeds that JWK (e.g. a private one).
    """
    header: dict[str, Any] = {"alg": alg or default_alg(key)}
    if isinstance(jwk, Mapping):
        header["jwk"] = dict(jwk)
    elif jwk or (jwk is None and kid is None):
        header["jwk"] = public_jwk(key)
    if kid is not None:
        header["kid"] = kid
    if nonce is not None:
        header["nonce"] = nonce
    if url is not None:
        header["url"] = url
    header.update(extra_header or {})
    for name in drop_header:
        header.pop(name, None)

    protected_b64 = b64(json.dumps(header).encode())
    if raw_payload is not None:
        payload_b64 = b64(raw_payload)
    elif payload is None:
        payload_b64 = ""
    else:
        payload_b64 = b64(json.dumps(dict(payload)).encode())
    signing_input = f"{protected_b64}.{payload_b64}".encode("ascii")
    signature_b64 = b64(_sign(key, str(header.get("alg")), signing_input, mac_key))

    if serialization == "compact":
        return f"{protected_b64}.{payload_b64}.{signature_b64}".encode("ascii")
    signature: dict[str, Any] = {"protected": protected_b64, "signature": signature_b64}
    if unprotected is not None:
        signature["header"] = dict(unprotected)
    if serialization == "general":
        return json.dumps({"payload": payload_b64, "signatures": [signature]}).encode()
    return json.dumps({"payload": payload_b64, **signature}).encode()


def sign_key_change(
    old_key: PrivateKey,
    new_key: PrivateKey,
    *,
    account_url: str,
    url: str,
    nonce: str,
    inner_url: str | None = None,
    old_jwk: Mapping[str, Any] | None = None,
) -> bytes:
    """RFC 8555 §7.3.5 keyChange: inner JWS signed by the new key inside the outer one."""
    inner = sign_jws(
        new_key,
        {"account": account_url, "oldKey": dict(old_jwk or public_jwk(old_key))},
        url=inner_url if inner_url is not None else url,
        nonce=None,
    )
    return sign_jws(old_key, json.loads(inner), url=url, nonce=nonce, kid=account_url)
