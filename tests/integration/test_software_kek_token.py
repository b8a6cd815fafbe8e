"""TokenKek: the software backend's key-encryption key generated on a real SoftHSM2 token.

The token lives in tmp_path (tests/support/softhsm.py); under CI=true a missing SoftHSM2 fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11

from ca.errors import CAError
from ca.kek import TokenKek
from ca.keys import signature_hash
from ca.softhsm import SoftHsmToken
from ca.software_keys import SoftwareKeyBackend
from tests.support.softhsm import backend_config, make_token, open_backend, raw_session


@pytest.fixture
def token(tmp_path: Path) -> SoftHsmToken:
    return make_token(tmp_path / "hsm")


def _kek_objects(token: SoftHsmToken, label: str = "certyard-kek") -> list[object]:
    with raw_session(token) as session:
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        found = []
        for key in session.get_objects(template):
            attributes = {
                name: key[name]
                for name in (
                    Attribute.KEY_TYPE, Attribute.VALUE_LEN, Attribute.TOKEN, Attribute.PRIVATE,
                    Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.NEVER_EXTRACTABLE,
                    Attribute.WRAP, Attribute.UNWRAP, Attribute.ENCRYPT, Attribute.DECRYPT,
                )
            }  # fmt: skip
            with pytest.raises(p11.AttributeSensitive):  # base §4.9: CKR_ATTRIBUTE_SENSITIVE
                key[Attribute.VALUE]
            found.append(attributes)
        return found


async def test_a_restarted_token_kek_unwraps_what_the_first_wrapped(token: SoftHsmToken) -> None:
    config = backend_config(token)
    data_key = secrets.token_bytes(32)
    first = TokenKek(config)
    assert first.kek_id == "pkcs11:certyard-kek"
    wrapped = await first.wrap(data_key)
    assert len(wrapped) == 40 and data_key not in wrapped  # RFC 3394: one block longer
    assert await first.wrap(data_key) == wrapped  # RFC 3394 is deterministic: the same key
    restarted = TokenKek(config)
    assert await restarted.unwrap(wrapped) == data_key

    damaged = bytearray(wrapped)
    damaged[3] ^= 0x01
    with pytest.raises(CAError) as info:
        await restarted.unwrap(bytes(damaged))
    assert info.value.kind == "internal" and "wrong KEK or damaged blob" in info.value.detail

    # One key on the token, and it can never leave it.
    (key,) = _kek_objects(token)
    assert key == {
        Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE_LEN: 32, Attribute.TOKEN: True,
        Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True, Attribute.WRAP: True, Attribute.UNWRAP: True,
        Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
    }  # fmt: skip


async def test_software_backend_with_a_token_kek_survives_a_restart(token: SoftHsmToken) -> None:
    config = backend_config(token)
    generated = await SoftwareKeyBackend(TokenKek(config)).generate("root-1", "ec-p384")
    assert generated.key_blob is not None and b'"kek":"pkcs11:certyard-kek"' in generated.key_blob
    restarted = SoftwareKeyBackend(TokenKek(config))
    await restarted.load(generated.key_ref, generated.key_blob)
    signature = await restarted.sign(generated.key_ref, b"tbs")
    public_key = generated.public_key
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"tbs", ec.ECDSA(signature_hash("ec-p384")))

    # A KEK of another label is another KEK: refused by id before the token is asked.
    with pytest.raises(CAError) as info:
        await SoftwareKeyBackend(TokenKek(config, "other-kek")).load(
            generated.key_ref, generated.key_blob
        )
    assert info.value.kind == "malformed" and "pkcs11:other-kek" in info.value.detail


async def test_token_kek_shares_the_module_with_a_pkcs11_backend(token: SoftHsmToken) -> None:
    """The KEK serializes through the backend's gate and never logs the backend out."""
    kek = TokenKek(backend_config(token))
    async with open_backend(token) as backend:
        ca_key = await backend.generate("root-1", "ec-p256")
        data_keys = [secrets.token_bytes(32) for _ in range(8)]

        async def sign() -> bytes:
            return await backend.sign(ca_key.key_ref, b"tbs")

        results = await asyncio.gather(
            *(kek.wrap(data_key) for data_key in data_keys), *(sign() for _ in range(8))
        )
        wrapped = results[: len(data_keys)]
        assert [await kek.unwrap(item) for item in wrapped] == data_keys
        # The backend is still logged in, and still signs.
        assert (await backend.health()).ok
        public_key = ca_key.public_key
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(await sign(), b"tbs", ec.ECDSA(signature_hash("ec-p256")))
    assert await TokenKek(backend_config(token)).unwrap(wrapped[0]) == data_keys[0]


async def test_token_kek_errors_are_ca_errors(token: SoftHsmToken) -> None:
    config = backend_config(token)
    with pytest.raises(CAError) as info:  # nothing wrapped yet: no key to unwrap with
        await TokenKek(config).unwrap(b"\x00" * 40)
    assert info.value.kind == "internal" and "no AES key labelled" in info.value.detail

    wrong_pin = TokenKek(dataclasses.replace(config, pin="not-the-pin"))
    for _ in range(2):  # the second attempt does not even try: no token lock-out
        with pytest.raises(CAError) as info:
            await wrong_pin.wrap(secrets.token_bytes(32))
        assert info.value.kind == "internal" and "PinIncorrect" in info.value.detail

    absent = TokenKek(dataclasses.replace(config, token_label="no-such-token"))
    with pytest.raises(CAError) as info:
        await absent.wrap(secrets.token_bytes(32))
    assert info.value.kind == "unavailable"
