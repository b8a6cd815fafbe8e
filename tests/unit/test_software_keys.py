"""The software key backend's envelope encryption (format v2) and the file/env KEK sources."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ca.errors import CAError
from ca.kek import EnvKek, FileKek
from ca.keys import KEY_ALGORITHMS, SCHEME_PSS, signature_hash
from ca.software_keys import SoftwareKeyBackend, default_kek

PASSPHRASE = b"unit-test-legacy-passphrase-0123456789"
KEY_TEXT = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
OTHER_KEY_TEXT = base64.urlsafe_b64encode(b"o" * 32).rstrip(b"=").decode()


@pytest.fixture
def kek(tmp_path: Path) -> FileKek:
    return FileKek(tmp_path / "ca" / "kek", create_if_missing=True)


def _verify(public_key: object, algorithm: str, signature: bytes, data: bytes) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(signature_hash(algorithm)))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, data, padding.PKCS1v15(), signature_hash(algorithm))


def _fields(blob: bytes) -> dict[str, object]:
    fields = json.loads(blob)
    assert isinstance(fields, dict)
    return fields


def _with(blob: bytes, **changes: object) -> bytes:
    return json.dumps(_fields(blob) | changes).encode()


def _flip(text: object) -> str:
    assert isinstance(text, str)
    raw = bytearray(base64.b64decode(text))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


async def _blob(kek: FileKek, label: str = "int-1") -> tuple[str, bytes]:
    generated = await SoftwareKeyBackend(kek).generate(label, "ec-p256")
    assert generated.key_blob is not None
    return generated.key_ref, generated.key_blob


async def _load_error(backend: SoftwareKeyBackend, key_ref: str, blob: bytes) -> CAError:
    with pytest.raises(CAError) as info:
        await backend.load(key_ref, blob)
    return info.value


# --- round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
async def test_blob_reloads_in_a_new_backend_and_signs(kek: FileKek, algorithm: str) -> None:
    generated = await SoftwareKeyBackend(kek).generate("root-1", algorithm)
    assert generated.key_ref == "software:root-1" and generated.key_blob is not None
    fields = _fields(generated.key_blob)
    assert fields["v"] == 2 and fields["kek"] == kek.kek_id
    assert set(fields) == {"v", "kek", "wrapped_dek", "nonce", "ciphertext"}

    restarted = SoftwareKeyBackend(FileKek(kek.path))  # a new process reading the same file
    await restarted.load(generated.key_ref, generated.key_blob)
    data = b"to be signed " + algorithm.encode()
    signature = await restarted.sign(generated.key_ref, data)
    _verify(generated.public_key, algorithm, signature, data)
    if algorithm.startswith("rsa"):
        public_key = generated.public_key
        assert isinstance(public_key, rsa.RSAPublicKey)
        pss = await restarted.sign(generated.key_ref, data, scheme=SCHEME_PSS)
        public_key.verify(
            pss, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
        )


async def test_each_key_gets_its_own_data_key_and_nonce(kek: FileKek) -> None:
    first = _fields((await _blob(kek, "a"))[1])
    second = _fields((await _blob(kek, "b"))[1])
    for name in ("wrapped_dek", "nonce", "ciphertext"):
        assert first[name] != second[name]


async def test_blob_is_not_pkcs8_in_any_form(kek: FileKek) -> None:
    _, blob = await _blob(kek)
    assert b"-----BEGIN" not in blob and b"PRIVATE KEY" not in blob
    candidates = [blob] + [
        base64.b64decode(str(value))
        for name, value in _fields(blob).items()
        if name in ("wrapped_dek", "nonce", "ciphertext")
    ]
    for candidate in candidates:
        with pytest.raises((ValueError, TypeError)):
            serialization.load_der_private_key(candidate, password=None)
        with pytest.raises((ValueError, TypeError)):
            serialization.load_pem_private_key(candidate, password=None)


# --- refusals -------------------------------------------------------------------------------------


async def test_another_kek_is_refused_by_id(kek: FileKek, tmp_path: Path) -> None:
    key_ref, blob = await _blob(kek)
    other = FileKek(tmp_path / "other" / "kek", create_if_missing=True)
    error = await _load_error(SoftwareKeyBackend(other), key_ref, blob)
    assert error.kind == "malformed"
    assert f"wrapped by KEK {kek.kek_id}, this process has {other.kek_id}" in error.detail


async def test_wrong_kek_with_the_same_id_fails_cleanly(kek: FileKek, tmp_path: Path) -> None:
    key_ref, blob = await _blob(kek)
    impostor = FileKek(tmp_path / "other" / "kek", create_if_missing=True)
    impostor.kek_id = kek.kek_id  # claims the id, holds another key: RFC 5649 §3 check fails
    error = await _load_error(SoftwareKeyBackend(impostor), key_ref, blob)
    assert error.kind == "internal" and "wrong KEK or damaged blob" in error.detail


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped_dek"])
async def test_tampered_blob_is_refused(kek: FileKek, field: str) -> None:
    key_ref, blob = await _blob(kek)
    tampered = _with(blob, **{field: _flip(_fields(blob)[field])})
    error = await _load_error(SoftwareKeyBackend(kek), key_ref, tampered)
    assert error.kind == "internal"


async def test_blob_moved_to_another_key_ref_is_refused(kek: FileKek) -> None:
    _, blob = await _blob(kek, "int-1")
    error = await _load_error(SoftwareKeyBackend(kek), "software:int-2", blob)
    assert error.kind == "internal" and "belongs to another key" in error.detail


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not json",
        b"[]",
        b'{"v": 2}',
        b'{"v": 3, "kek": "x", "wrapped_dek": "", "nonce": "", "ciphertext": ""}',
        b'{"v": true, "kek": "x", "wrapped_dek": "AA==", "nonce": "AA==", "ciphertext": "AA=="}',
        b'{"v": 2, "v": 2, "kek": "x", "wrapped_dek": "", "nonce": "", "ciphertext": ""}',
        b'{"v": 2, "kek": "x", "wrapped_dek": "!!", "nonce": "AA==", "ciphertext": "AA=="}',
        b'{"v": 2, "kek": "x", "wrapped_dek": "AA==", "nonce": "AA==", "ciphertext": "AA=="}',
        b"{" * 100_000,
    ],
)
async def test_malformed_blobs_are_refused(kek: FileKek, blob: bytes) -> None:
    error = await _load_error(SoftwareKeyBackend(kek), "software:int-1", blob)
    assert error.kind == "malformed"


async def test_a_kek_failing_with_a_raw_exception_becomes_a_ca_error(kek: FileKek) -> None:
    class Broken:
        kek_id = kek.kek_id

        async def wrap(self, data_key: bytes) -> bytes:
            raise OSError("disk on fire")

        async def unwrap(self, wrapped: bytes) -> bytes:
            raise OSError("disk on fire")

    with pytest.raises(CAError) as info:
        await SoftwareKeyBackend(Broken()).generate("root-1", "ec-p256")
    assert info.value.kind == "internal"
    key_ref, blob = await _blob(kek)
    assert (await _load_error(SoftwareKeyBackend(Broken()), key_ref, blob)).kind == "internal"


# --- format v1 (passphrase-encrypted PKCS#8) ---------------------------------------------------


async def test_v1_blob_loads_with_the_legacy_passphrase(kek: FileKek) -> None:
    generated = await SoftwareKeyBackend.from_passphrase(PASSPHRASE).generate("root-1", "ec-p384")
    assert generated.key_blob is not None
    assert generated.key_blob.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    backend = SoftwareKeyBackend(kek, legacy_passphrase=PASSPHRASE)
    await backend.load(generated.key_ref, generated.key_blob)
    signature = await backend.sign(generated.key_ref, b"data")
    _verify(generated.public_key, "ec-p384", signature, b"data")
    # New keys of that backend are v2 all the same.
    new = await backend.generate("int-1", "ec-p256")
    assert new.key_blob is not None and _fields(new.key_blob)["v"] == 2

    error = await _load_error(SoftwareKeyBackend(kek), generated.key_ref, generated.key_blob)
    assert error.kind == "malformed" and "no legacy passphrase" in error.detail
    wrong = SoftwareKeyBackend(kek, legacy_passphrase=b"not the passphrase at all")
    assert (await _load_error(wrong, generated.key_ref, generated.key_blob)).kind == "internal"


async def test_passphrase_only_backend_refuses_v2_blobs(kek: FileKek) -> None:
    key_ref, blob = await _blob(kek)
    error = await _load_error(SoftwareKeyBackend.from_passphrase(PASSPHRASE), key_ref, blob)
    assert error.kind == "malformed" and "this process has no KEK" in error.detail


def test_constructor_takes_the_passphrase_once(kek: FileKek) -> None:
    with pytest.raises(CAError):
        SoftwareKeyBackend(PASSPHRASE, legacy_passphrase=PASSPHRASE)
    with pytest.raises(CAError):
        SoftwareKeyBackend(kek, legacy_passphrase=b"short")


async def test_health_names_the_kek(kek: FileKek) -> None:
    health = await SoftwareKeyBackend(kek).health()
    assert health.ok and kek.kek_id in health.detail


# --- FileKek ------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_kek_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ca" / "kek"
    kek = FileKek(path, create_if_missing=True)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert len(base64.urlsafe_b64decode(path.read_bytes().strip() + b"=")) == 32
    assert kek.kek_id.startswith("file:") and len(kek.kek_id) == len("file:") + 16
    assert FileKek(path).kek_id == kek.kek_id
    assert str(path.read_bytes().strip()) not in repr(kek)


def test_racing_file_kek_creators_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "kek"
    start = threading.Barrier(8)
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        kek_id = FileKek(path, create_if_missing=True).kek_id
        with lock:
            ids.append(kek_id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert os.listdir(path.parent) == ["kek"]  # no temporary files left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_kek_refuses_a_file_others_can_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek"
    path.write_text(KEY_TEXT + "\n")
    path.chmod(mode)
    with pytest.raises(CAError) as info:
        FileKek(path)
    assert info.value.kind == "malformed"
    assert str(path) in info.value.detail and f"{mode:04o}" in info.value.detail


def test_file_kek_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(CAError) as info:
        FileKek(tmp_path / "absent")
    assert info.value.kind == "malformed" and "absent" in info.value.detail
    path = tmp_path / "kek"
    secret_looking = "s3cr3t-value-that-is-too-short"
    path.write_text(secret_looking)
    path.chmod(0o600)
    with pytest.raises(CAError) as info:
        FileKek(path)
    assert info.value.kind == "malformed" and secret_looking not in info.value.detail


# --- EnvKek and default_kek --------------------------------------------------------------------


def test_env_kek(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTYARD_KEK", KEY_TEXT)
    kek = EnvKek()
    assert kek.kek_id.startswith("env:") and KEY_TEXT not in repr(kek)
    monkeypatch.setenv("CERTYARD_KEK", OTHER_KEY_TEXT)
    assert EnvKek().kek_id != kek.kek_id


@pytest.mark.parametrize(
    "value", [None, "", "c2hvcnQ", "not*base64url*at*all*but*43*characters*lon"]
)
def test_env_kek_missing_or_bad(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CERTYARD_KEK", raising=False)
    else:
        monkeypatch.setenv("CERTYARD_KEK", value)
    with pytest.raises(CAError) as info:
        EnvKek()
    assert info.value.kind == "malformed" and "CERTYARD_KEK" in info.value.detail
    assert not value or value not in info.value.detail


async def test_env_kek_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTYARD_KEK", KEY_TEXT)
    data_key = secrets.token_bytes(32)
    wrapped = await EnvKek().wrap(data_key)
    assert wrapped != data_key and await EnvKek().unwrap(wrapped) == data_key
    monkeypatch.setenv("CERTYARD_KEK", OTHER_KEY_TEXT)
    with pytest.raises(CAError) as info:
        await EnvKek().unwrap(wrapped)
    assert info.value.kind == "internal"


def test_default_kek(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTYARD_KEK", raising=False)
    from_file = default_kek(tmp_path)
    assert isinstance(from_file, FileKek) and from_file.path == tmp_path / "ca" / "kek"
    assert _mode(tmp_path / "ca" / "kek") == 0o600
    monkeypatch.setenv("CERTYARD_KEK", KEY_TEXT)
    assert isinstance(default_kek(tmp_path), EnvKek)
    monkeypatch.setenv("CERTYARD_KEK", "")
    with pytest.raises(CAError):  # set but empty: an error, not a silent fallback to the file
        default_kek(tmp_path)
