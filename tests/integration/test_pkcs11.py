"""The PKCS#11 key backend against a real SoftHSM2 token created in tmp_path.

Certificates and CRLs signed on the token are checked by the real ``openssl``. Token loss is
real too: the token's object store directory is renamed away while the backend runs (SoftHSM2
then fails the cached key handle with CKR_OBJECT_HANDLE_INVALID, C_GetTokenInfo with
CKR_GENERAL_ERROR and C_Initialize with CKR_GENERAL_ERROR) and renamed back; see docs/hsm.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from ca.config import CAConfig
from ca.der import sign_certificate, sign_crl
from ca.errors import CAError
from ca.hierarchy import load_or_create_hierarchy
from ca.issuance import IssuanceService
from ca.keys import KEY_ALGORITHMS, SCHEME_PSS, spki_der
from ca.pkcs11_keys import SPKI_REF, Pkcs11KeyBackend
from ca.profiles import IntermediateCAProfile, RootCAProfile
from ca.serials import new_serial
from ca.softhsm import SoftHsmToken, ensure_softhsm_token
from storage.engine import create_engine, migrate, session_factory
from tests.support.softhsm import (
    backend_config,
    make_token,
    open_backend,
    raw_session,
    require_softhsm,
    token_dir,
)
from tests.support.tools import require_tool

RECOVERY_DEADLINE = 30.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def token(tmp_path: Path) -> SoftHsmToken:
    return make_token(tmp_path / "hsm")


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("openssl"), *args], capture_output=True, text=True, check=False, timeout=60
    )


# --- every algorithm: certificates and CRLs signed on the token ------------------------------


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
async def test_token_signs_certificates_and_crls_openssl_verifies(
    token: SoftHsmToken, tmp_path: Path, algorithm: str
) -> None:
    config = CAConfig(key_algorithm=algorithm)
    now = utc_now()
    async with open_backend(token) as backend:
        root_key = await backend.generate(f"root-{algorithm}", algorithm)
        assert root_key.key_ref.startswith("pkcs11:id=") and root_key.key_blob is None
        root = await sign_certificate(
            RootCAProfile(config).build(
                public_key=root_key.public_key, serial=new_serial(), now=now
            ),
            backend=backend, key_ref=root_key.key_ref, algorithm=algorithm, issuer=None,
        )  # fmt: skip
        # A certificate for a software key, signed by the token key.
        subject_key = ec.generate_private_key(ec.SECP256R1())
        intermediate = await sign_certificate(
            IntermediateCAProfile(config).build(
                public_key=subject_key.public_key(), serial=new_serial(), issuer=root, now=now
            ),
            backend=backend, key_ref=root_key.key_ref, algorithm=algorithm, issuer=root,
        )  # fmt: skip
        crl = await sign_crl(
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=7))
            .add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(intermediate.serial_number)
                .revocation_date(now)
                .build()
            )
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            ),
            backend=backend, key_ref=root_key.key_ref, algorithm=algorithm, issuer=root,
        )  # fmt: skip
        if algorithm.startswith("rsa"):
            signature = await backend.sign(root_key.key_ref, b"tbs bytes", scheme=SCHEME_PSS)
            public = root_key.public_key
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(
                signature,
                b"tbs bytes",
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        else:
            with pytest.raises(CAError) as info:
                await backend.sign(root_key.key_ref, b"tbs bytes", scheme=SCHEME_PSS)
            assert info.value.kind == "malformed"

    files = {"root.pem": _pem(root), "int.pem": _pem(intermediate)}
    files["crl.pem"] = crl.public_bytes(serialization.Encoding.PEM).decode()
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    root_file, int_file = str(tmp_path / "root.pem"), str(tmp_path / "int.pem")
    # -check_ss_sig: also check the root's self-signature, made on the token.
    for target in (root_file, int_file):
        result = _openssl("verify", "-x509_strict", "-check_ss_sig", "-CAfile", root_file, target)
        assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result
    result = _openssl("crl", "-in", str(tmp_path / "crl.pem"), "-CAfile", root_file, "-noout")
    assert result.returncode == 0 and "verify OK" in result.stdout + result.stderr, result


# --- the private key stays on the token --------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-2048"])
async def test_private_key_cannot_be_exported(token: SoftHsmToken, algorithm: str) -> None:
    async with open_backend(token) as backend:
        key = await backend.generate("no-export", algorithm)
    ckaid = bytes.fromhex(key.key_ref.removeprefix("pkcs11:id="))
    secret = Attribute.VALUE if algorithm.startswith("ec") else Attribute.PRIVATE_EXPONENT
    with raw_session(token) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, id=ckaid)
        public = session.get_key(ObjectClass.PUBLIC_KEY, id=ckaid)
        with pytest.raises(p11.AttributeSensitive):  # C_GetAttributeValue refuses it
            private[secret]
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.TOKEN] is True and private[Attribute.PRIVATE] is True
        assert private[Attribute.SIGN] is True and private[Attribute.DECRYPT] is False
        assert private[Attribute.LABEL] == public[Attribute.LABEL] == "no-export"
        assert public[Attribute.TOKEN] is True and public[Attribute.VERIFY] is True
        assert len(ckaid) == 16


# --- the first CA on the token -----------------------------------------------------------------


def _csr(name: str) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def _verify_chain(tmp_path: Path, root_pem: str, chain_pem: str) -> None:
    leaf, intermediate = x509.load_pem_x509_certificates(chain_pem.encode())
    for name, cert in (("leaf.pem", leaf), ("chain-int.pem", intermediate)):
        (tmp_path / name).write_text(_pem(cert))
    (tmp_path / "ca-root.pem").write_text(root_pem)
    result = _openssl(
        "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(tmp_path / "ca-root.pem"),
        "-untrusted", str(tmp_path / "chain-int.pem"), str(tmp_path / "leaf.pem"),
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-2048"])
async def test_first_ca_runs_on_the_token(
    token: SoftHsmToken, tmp_path: Path, algorithm: str
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/certyard.db")
    config = CAConfig(key_algorithm=algorithm)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        async with open_backend(token) as backend:
            hierarchy = await load_or_create_hierarchy(sessions, backend, config, utc_now)
            service = IssuanceService(sessions, hierarchy, backend, config, utc_now)
            issued = await service.issue_tls_server(_csr("a.example"), dns_names=["a.example"])
            _verify_chain(tmp_path, hierarchy.root_pem(), issued.chain_pem)

        # A restart: a new backend object finds the same keys by the stored key_ref.
        async with open_backend(token) as backend:
            again = await load_or_create_hierarchy(sessions, backend, config, utc_now)
            assert again.root_pem() == hierarchy.root_pem()
            assert again.intermediate.key_ref == hierarchy.intermediate.key_ref
            service = IssuanceService(sessions, again, backend, config, utc_now)
            issued = await service.issue_tls_server(_csr("b.example"), dns_names=["b.example"])
            _verify_chain(tmp_path, again.root_pem(), issued.chain_pem)

        # ... and by the issuer certificate's public key.
        async with open_backend(token) as backend:
            issuer_key = hierarchy.intermediate.certificate.public_key()
            found = await backend.find_by_public_key(issuer_key)
            assert found == hierarchy.intermediate.key_ref
            spki_ref = SPKI_REF + hashlib.sha256(spki_der(issuer_key)).hexdigest()
            await backend.load(spki_ref, None)
            assert spki_der(backend.public_key(spki_ref)) == spki_der(issuer_key)
            with pytest.raises(CAError) as info:
                await backend.load(SPKI_REF + "00" * 32, None)
            assert info.value.kind == "not_found"
    finally:
        await engine.dispose()


# --- concurrency -------------------------------------------------------------------------------


async def test_concurrent_signs_use_separate_sessions(token: SoftHsmToken) -> None:
    async with open_backend(token, sessions=4) as backend:
        key = await backend.generate("busy", "ec-p256")
        public = key.public_key
        assert isinstance(public, ec.EllipticCurvePublicKey)
        messages = [f"message {i}".encode() for i in range(20)]
        signatures = await asyncio.gather(*(backend.sign(key.key_ref, m) for m in messages))
        for message, signature in zip(messages, signatures, strict=True):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        health = await backend.health()
        assert health.ok, health.detail
        opened = int(health.detail.split("key(s) usable, ")[1].split()[0])
        assert 1 < opened <= 4  # one session per worker thread, never more than the pool

        # Blocking token work runs off the event loop: it keeps ticking during a slow RSA
        # generation.
        done, ticks = False, 0

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.005)

        ticking = asyncio.create_task(ticker())
        await backend.generate("slow", "rsa-3072")
        done = True
        await ticking
        assert ticks > 1


# --- losing the token and getting it back ------------------------------------------------------


async def test_token_loss_is_unavailable_and_recovers_by_itself(token: SoftHsmToken) -> None:
    async with open_backend(token) as backend:
        key = await backend.generate("survivor", "ec-p384")
        public = key.public_key
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(
            await backend.sign(key.key_ref, b"before"), b"before", ec.ECDSA(hashes.SHA384())
        )
        assert (await backend.health()).ok

        store = token_dir(token)
        gone = store.with_name("tokens.gone")
        store.rename(gone)  # the token's storage disappears under the running backend
        try:
            with pytest.raises(CAError) as info:
                await asyncio.wait_for(backend.sign(key.key_ref, b"during"), 20)
            assert info.value.kind == "unavailable"
            assert token.pin not in str(info.value)
            health = await asyncio.wait_for(backend.health(), 20)
            assert not health.ok and "unavailable" in health.detail
            with pytest.raises(CAError) as info:  # still gone: every call says so
                await asyncio.wait_for(backend.sign(key.key_ref, b"during"), 20)
            assert info.value.kind == "unavailable"
        finally:
            gone.rename(store)

        # Back: the same backend object signs again within the polling deadline.
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while True:
            try:
                signature = await backend.sign(key.key_ref, b"after")
                break
            except CAError as exc:
                assert exc.kind == "unavailable"
                assert time.monotonic() < deadline, "the backend did not recover"
                await asyncio.sleep(0.2)
        public.verify(signature, b"after", ec.ECDSA(hashes.SHA384()))
        assert (await backend.health()).ok


async def test_another_instance_logging_out_is_recovered(token: SoftHsmToken) -> None:
    """Closing a backend logs the process out of the token (C_Logout is per application,
    PKCS#11 v2.40 §5.6); another backend on the same token logs in again by itself."""
    async with open_backend(token) as first:
        key = await first.generate("shared", "ec-p256")
        async with open_backend(token) as second:
            await second.load(key.key_ref, None)
            await second.sign(key.key_ref, b"x")
        # `second` closed its sessions; `first` holds the login, so nothing happened to it.
        await first.sign(key.key_ref, b"y")
        third = Pkcs11KeyBackend(backend_config(token))
        await third.load(key.key_ref, None)
    # `first` closed with the login: `third` gets CKR_USER_NOT_LOGGED_IN, logs in, retries.
    try:
        await third.sign(key.key_ref, b"z")
        assert (await third.health()).ok
    finally:
        await third.close()


async def test_wrong_pin_is_not_retried(token: SoftHsmToken) -> None:
    async with open_backend(token, pin="not-the-pin") as backend:
        for _ in range(2):
            with pytest.raises(CAError) as info:
                await backend.load("pkcs11:id=00", None)
            assert info.value.kind == "internal" and "not retrying" in info.value.detail
            assert "not-the-pin" not in str(info.value)
        assert not (await backend.health()).ok


async def test_closed_backend_refuses_calls(token: SoftHsmToken) -> None:
    backend = Pkcs11KeyBackend(backend_config(token))
    key = await backend.generate("closing", "ec-p256")
    await backend.close()
    with pytest.raises(CAError) as info:
        await backend.sign(key.key_ref, b"x")
    assert info.value.kind == "unavailable"


async def test_destroy_removes_both_halves(token: SoftHsmToken) -> None:
    async with open_backend(token) as backend:
        key = await backend.generate("short-lived", "ec-p256")
        await backend.destroy(key.key_ref)
        with pytest.raises(CAError) as info:
            await backend.sign(key.key_ref, b"x")
        assert info.value.kind == "not_found"
        with pytest.raises(CAError) as info:
            await backend.load(key.key_ref, None)
        assert info.value.kind == "not_found"


# --- provisioning ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_softhsm_token_is_created_once_with_private_pins(tmp_path: Path) -> None:
    require_softhsm()
    directory = tmp_path / "data" / "hsm"
    first = ensure_softhsm_token(directory)
    second = ensure_softhsm_token(directory)
    assert first == second and first.pin == second.pin and first.token_label == "certyard"
    assert first.pin not in repr(first)
    for name in ("user-pin", "so-pin"):
        assert _mode(directory / name) == 0o600
    assert _mode(directory) == 0o700 and _mode(directory / "tokens") == 0o700
    assert (directory / "user-pin").read_text().strip() == first.pin
    conf = first.conf_path.read_text()
    assert f"directories.tokendir = {directory.resolve() / 'tokens'}" in conf
    config = first.backend_config()
    assert config.env == {"SOFTHSM2_CONF": str(directory.resolve() / "softhsm2.conf")}
    assert first.pin not in repr(config)
    # Exactly one token directory: the second call reused the token.
    assert len([p for p in (directory / "tokens").iterdir() if p.is_dir()]) == 1


def test_racing_provisioners_share_one_token(tmp_path: Path) -> None:
    require_softhsm()
    directory = tmp_path / "race"
    results: list[SoftHsmToken] = []

    def provision() -> None:
        results.append(ensure_softhsm_token(directory, label="raced"))

    threads = [threading.Thread(target=provision) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len({token.pin for token in results}) == 1
    assert len([p for p in (directory / "tokens").iterdir() if p.is_dir()]) == 1


async def test_provisioned_token_serves_the_backend(tmp_path: Path) -> None:
    require_softhsm()
    token = ensure_softhsm_token(tmp_path / "embedded")
    async with open_backend(token) as backend:
        key = await backend.generate("embedded-root", "ec-p256")
        assert len(await backend.sign(key.key_ref, b"x")) > 64
