"""ACME request JWS: parse the flattened JSON serialization, check the header, verify.

RFC 8555 §6.2 restricts RFC 7515 for ACME: flattened JSON serialization only, everything in the
protected header, an asymmetric ``alg`` (never ``none`` nor a MAC), exactly one of ``jwk`` /
``kid``, and ``nonce`` (§6.5) plus ``url`` (§6.4) always present. Key parsing, thumbprints
(RFC 7638) and the signature algorithms themselves come from josepy; this module adds the ACME
rules around them and turns every failure into an :class:`AcmeError`.

EdDSA is not offered: josepy 2.2 has neither an ``OKP`` JWK type nor an EdDSA algorithm, so an
Ed25519 account key could only be verified with hand-written JWK code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from josepy.b64 import b64decode, b64encode
from josepy.errors import Error as JoseError
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from acme_server.errors import AcmeError, malformed

SUPPORTED_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "ES512", "RS256")

_ALGORITHMS: dict[str, JWASignature] = {
    "ES256": ES256,
    "ES384": ES384,
    "ES512": ES512,
    "RS256": RS256,
}
# RFC 7518 §3.4: each ECDSA algorithm is bound to one curve.
_ALG_KEY_KIND = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "RS256": "RSA"}
_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
# RFC 7518 §6.2.2 / §6.3.2 / §6.4: members that only a private (or symmetric) JWK carries.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
RSA_MIN_BITS = 2048
# Not an RFC rule: bounds the cost of verifying a signature with an attacker-chosen modulus.
RSA_MAX_BITS = 8192

# Written by hand because josepy.b64decode (base64.urlsafe_b64decode underneath) silently skips
# characters outside the alphabet and accepts "=" padding; RFC 7515 §2 base64url has neither.
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def decode_b64url(value: object, what: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2); anything else is ``malformed``."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise malformed(f"{what} is not unpadded base64url")
    decoded: bytes = b64decode(value)
    return decoded


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 §4: header parameter names MUST be unique; we reject duplicates everywhere.
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"duplicate member {name!r}")
        obj[name] = value
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 has no NaN / Infinity


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise malformed(f"{what} is not valid UTF-8 JSON") from exc


def _bad_alg(detail: str) -> AcmeError:
    # RFC 8555 §6.2: badSignatureAlgorithm carries the list of algorithms the server accepts.
    return AcmeError(
        "badSignatureAlgorithm", detail, extra={"algorithms": list(SUPPORTED_ALGORITHMS)}
    )


@dataclass(frozen=True)
class ParsedJWS:
    """A flattened JWS whose header passed the RFC 8555 §6.2 checks (signature not yet)."""

    protected: dict[str, Any]
    protected_b64: str
    payload: bytes
    payload_b64: str
    signature: bytes
    alg: str
    nonce: str | None
    url: str | None
    kid: str | None
    jwk: JWK | None

    @property
    def is_post_as_get(self) -> bool:
        # RFC 8555 §6.3: POST-as-GET has a zero-length payload.
        return self.payload_b64 == ""

    def payload_json(self) -> dict[str, Any]:
        if self.is_post_as_get:
            raise malformed("request payload must be a JSON object, not POST-as-GET")
        obj = _load_json(self.payload, "JWS payload")
        if not isinstance(obj, dict):
            raise malformed("JWS payload must be a JSON object")
        return obj


def parse_jws(body: bytes) -> ParsedJWS:
    """Parse an ACME request body; every failure is an :class:`AcmeError`."""
    return _parse(body, inner=False)


def _flattened_members(body: bytes, what: str) -> tuple[str, str, str]:
    """RFC 8555 §6.2: the protected, payload and signature members of a flattened JWS."""
    if not isinstance(body, bytes):
        raise malformed(f"{what} must be bytes")
    try:
        obj = _load_json(body, what)
    except AcmeError:
        if body.count(b".") == 2 and b"{" not in body:
            raise malformed(
                f"{what} uses compact serialization; RFC 8555 §6.2 requires flattened JSON"
            ) from None
        raise
    if not isinstance(obj, dict):
        raise malformed(f"{what} must be a JSON object (flattened JSON serialization)")
    # RFC 8555 §6.2: flattened serialization only, and no unprotected header.
    if "signatures" in obj:
        raise malformed(f"{what} uses general serialization; RFC 8555 §6.2 requires flattened")
    if "header" in obj:
        raise malformed(f"{what} has an unprotected header; RFC 8555 §6.2 forbids it")
    if set(obj) != {"protected", "payload", "signature"}:
        raise malformed(f"{what} must have exactly protected, payload and signature members")
    for name, value in obj.items():
        if not isinstance(value, str):
            raise malformed(f"{what} member {name!r} must be a string")
    return obj["protected"], obj["payload"], obj["signature"]


def _parse(body: bytes, *, inner: bool) -> ParsedJWS:
    what = "inner JWS" if inner else "JWS"
    protected_b64, payload_b64, signature_b64 = _flattened_members(body, what)
    if not protected_b64:
        raise malformed(f"{what} has an empty protected header")
    header = _load_json(decode_b64url(protected_b64, "protected header"), "protected header")
    if not isinstance(header, dict):
        raise malformed("protected header must be a JSON object")
    # RFC 7515 §4.1.11: an unknown "crit" must be rejected, and ACME defines no extension.
    if "crit" in header:
        raise malformed('"crit" header parameter is not supported')
    alg = _check_alg(header.get("alg"))
    kid, jwk = _check_key_reference(header, inner=inner)
    nonce = _check_nonce(header, inner=inner)
    url = header.get("url")
    # RFC 8555 §6.4: "url" MUST be present and a string.
    if not isinstance(url, str) or not url:
        raise malformed('protected header needs a "url" string (RFC 8555 §6.4)')
    payload = decode_b64url(payload_b64, "payload")
    signature = decode_b64url(signature_b64, "signature")
    if not signature:
        raise malformed(f"{what} has an empty signature")
    return ParsedJWS(
        protected=header,
        protected_b64=protected_b64,
        payload=payload,
        payload_b64=payload_b64,
        signature=signature,
        alg=alg,
        nonce=nonce,
        url=url,
        kid=kid,
        jwk=jwk,
    )


def _check_alg(alg: object) -> str:
    if not isinstance(alg, str) or not alg:
        raise malformed('protected header needs an "alg" string')
    # RFC 8555 §6.2: "none" and MAC algorithms MUST NOT be accepted.
    if alg == "none":
        raise _bad_alg('unsigned JWS ("alg": "none") is not accepted')
    if alg.startswith("HS"):
        raise _bad_alg(f"MAC algorithm {alg} is not accepted (RFC 8555 §6.2)")
    if alg not in SUPPORTED_ALGORITHMS:
        raise _bad_alg(f"unsupported JWS algorithm {alg[:32]!r}")
    return alg


def _check_key_reference(header: dict[str, Any], *, inner: bool) -> tuple[str | None, JWK | None]:
    # RFC 8555 §6.2: "jwk" and "kid" are mutually exclusive, and one is required.
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk and has_kid:
        raise malformed('protected header must not have both "jwk" and "kid"')
    if not has_jwk and not has_kid:
        raise malformed('protected header needs one of "jwk" or "kid"')
    if has_kid:
        if inner:
            # RFC 8555 §7.3.5: the inner JWS of a key change MUST use "jwk".
            raise malformed('inner JWS of a key change must use "jwk", not "kid"')
        kid = header["kid"]
        if not isinstance(kid, str) or not kid:
            raise malformed('"kid" must be a non-empty string (the account URL)')
        return kid, None
    raw = header["jwk"]
    if not isinstance(raw, dict):
        raise malformed('"jwk" must be a JSON object')
    if _PRIVATE_MEMBERS & raw.keys():
        raise malformed('"jwk" must be a public key; it contains private key members')
    return None, jwk_from_json(raw)


def _check_nonce(header: dict[str, Any], *, inner: bool) -> str | None:
    if inner:
        # RFC 8555 §7.3.5: the inner JWS MUST omit "nonce".
        if "nonce" in header:
            raise malformed('inner JWS of a key change must not have a "nonce"')
        return None
    # RFC 8555 §6.5.2: a missing or unusable nonce is badNonce; §6.5.1: nonces are base64url.
    nonce = header.get("nonce")
    if nonce is None:
        raise AcmeError("badNonce", 'protected header has no "nonce"')
    if not isinstance(nonce, str) or not nonce or not _B64URL.fullmatch(nonce):
        raise AcmeError("badNonce", '"nonce" must be a base64url string')
    return nonce


def _key_kind(key: JWK) -> str:
    if isinstance(key, JWKRSA):
        return "RSA"
    if isinstance(key, JWKEC):
        curve = key.key.curve
        if isinstance(curve, ec.EllipticCurve) and curve.name in _EC_CURVES:
            return _EC_CURVES[curve.name]
    raise AcmeError("badPublicKey", f"unsupported key type {type(key).__name__}")


def verify_jws(parsed: ParsedJWS, key: JWK) -> None:
    """Check ``alg`` against ``key`` and the signature over the original base64url text."""
    algorithm = _ALGORITHMS.get(parsed.alg)
    if algorithm is None:
        raise _bad_alg(f"unsupported JWS algorithm {parsed.alg[:32]!r}")
    kind = _key_kind(key)
    # RFC 8555 §6.2 / RFC 7518 §3.1: the algorithm must fit the key (and, for ECDSA, its curve).
    if _ALG_KEY_KIND[parsed.alg] != kind:
        raise _bad_alg(f"JWS algorithm {parsed.alg} does not match the {kind} key")
    if kind == "RSA":
        bits: int = key.key.key_size
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise AcmeError(
                "badPublicKey",
                f"RSA key of {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} bits are accepted",
            )
    # RFC 7515 §5.2: the signing input is the text as received. josepy's Signature.verify would
    # re-encode the decoded header instead, so its JWA algorithm is called directly.
    signing_input = f"{parsed.protected_b64}.{parsed.payload_b64}".encode("ascii")
    try:
        # josepy returns False for a wrong-length ECDSA signature (RFC 7518 §3.4) and for an
        # RSA signature that fails; ValueError covers any other malformed input.
        valid = bool(algorithm.verify(key.public_key().key, signing_input, parsed.signature))
    except ValueError:
        valid = False
    if not valid:
        # RFC 8555 has no badSignature type; Boulder and Pebble answer malformed too.
        raise malformed("JWS signature invalid")


def jwk_thumbprint(key: JWK) -> str:
    """RFC 7638 §3: base64url (unpadded) SHA-256 of the canonical public JWK."""
    digest: bytes = key.public_key().thumbprint(hashes.SHA256)
    return b64encode(digest).decode("ascii")


def key_authorization(token: str, key: JWK) -> str:
    # RFC 8555 §8.1: keyAuthorization = token || '.' || base64url(Thumbprint(accountKey))
    return f"{token}.{jwk_thumbprint(key)}"


def jwk_to_json(key: JWK) -> dict[str, Any]:
    """The public JWK as a plain dict (private members never leave)."""
    return dict(key.public_key().to_json())


def jwk_from_json(obj: dict[str, Any]) -> JWK:
    """Parse a public JWK (RFC 7517 §4, RFC 7518 §6); anything else is ``badPublicKey``."""
    if not isinstance(obj, dict):
        raise AcmeError("badPublicKey", "JWK must be a JSON object")
    if _PRIVATE_MEMBERS & obj.keys():
        raise AcmeError("badPublicKey", "JWK must be a public key")
    kty = obj.get("kty")
    if kty == "EC":
        if obj.get("crv") not in _EC_CURVES.values():
            raise AcmeError("badPublicKey", "EC keys must use P-256, P-384 or P-521")
        required: tuple[str, ...] = ("x", "y")
    elif kty == "RSA":
        required = ("n", "e")
    elif kty == "OKP":
        raise AcmeError("badPublicKey", "OKP (Ed25519) keys are not supported")
    else:
        raise AcmeError("badPublicKey", "JWK key type must be EC or RSA")
    if not all(isinstance(obj.get(name), str) for name in required):
        raise AcmeError("badPublicKey", f"{kty} JWK needs string members {', '.join(required)}")
    try:
        # cryptography checks the point is on the curve and the RSA numbers are sane.
        key = JWK.from_json(obj)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise AcmeError("badPublicKey", "invalid JWK") from exc
    if not isinstance(key, JWKEC | JWKRSA):
        raise AcmeError("badPublicKey", "JWK key type must be EC or RSA")
    return key


def jwk_public_key_der(key: JWK) -> bytes:
    """SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7) of the key, for key comparisons."""
    der: bytes = key.public_key().key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return der


def verify_key_change(outer: ParsedJWS, account_key: JWK, account_url: str) -> JWK:
    """RFC 8555 §7.3.5: check a keyChange request (outer already verified); return the new key."""
    if outer.kid is None:
        raise malformed('key change request must be signed with "kid" (the account key)')
    if outer.is_post_as_get:
        raise malformed("key change payload must be a JWS signed by the new key")
    inner = _parse(outer.payload, inner=True)
    if inner.jwk is None:  # unreachable: _parse(inner=True) insists on "jwk"
        raise malformed('inner JWS of a key change must use "jwk"')
    verify_jws(inner, inner.jwk)
    if inner.url != outer.url:
        raise malformed('inner JWS "url" differs from the outer JWS')
    change = inner.payload_json()
    if change.get("account") != account_url:
        raise malformed('keyChange "account" is not the URL of the signing account')
    old_key = change.get("oldKey")
    if not isinstance(old_key, dict):
        raise malformed('keyChange "oldKey" must be a JWK object')
    try:
        old_der = jwk_public_key_der(jwk_from_json(old_key))
    except AcmeError as exc:
        raise malformed(f'keyChange "oldKey" is not a valid JWK: {exc.detail}') from exc
    if old_der != jwk_public_key_der(account_key):
        raise malformed('keyChange "oldKey" is not the current account key')
    if jwk_public_key_der(inner.jwk) == old_der:
        raise malformed("new account key is the same as the old one")
    return inner.jwk
