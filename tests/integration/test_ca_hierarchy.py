"""The CA hierarchy with several chains: key ceremony, issuer selection by key type, name
constraints, rotation, alternate chains, and databases of the single-intermediate releases.

Real database (``db_url``: SQLite, and PostgreSQL when the test cluster runs), the software key
backend through certyard's own wiring, pkilint, the real ``openssl``, and the in-process ACME
harness for downloads.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from alembic.config import Config as AlembicConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text as sa_text
from sqlalchemy.engine import Connection

from ca.ceremony import AlternateChainSpec, load_ceremony
from ca.der import sign_certificate
from ca.errors import CAError
from ca.hierarchy import add_alternate_chain, rotate
from ca.issuance import IssuedCertificate
from ca.lint import INTERMEDIATE_CA, ROOT_CA, Linter
from ca.profiles import IntermediateCAProfile, RootCAProfile
from ca.serials import new_serial
from certyard.server import build_acme_context, build_http_app
from certyard.settings import Settings, load_settings
from certyard.wiring import Services, build_services, ca_config, key_backend, utc_now
from storage.engine import MIGRATIONS_DIR, create_engine
from storage.models import Certificate, Issuer
from tests.integration.test_acme_flow import obtain
from tests.support.acme_app import running_acme
from tests.support.dnsserver import TestDNSServer
from tests.support.http01 import Responder
from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
PEM = Encoding.PEM


def _settings(data_dir: Path, db_url: str, **ca: Any) -> Settings:
    # http_listen gives the certificates CRL DP and AIA URLs (nothing listens there).
    return load_settings(
        server={"data_dir": data_dir, "http_listen": "127.0.0.1:8080"},
        database={"url": db_url},
        ca={"backend": "software", **ca},
    )


@pytest.fixture
async def services(tmp_path: Path, db_url: str) -> AsyncIterator[Services]:
    built = await build_services(_settings(tmp_path / "data", db_url), hierarchy_mode="create")
    yield built
    await built.close()


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )


def _ec_csr() -> x509.CertificateSigningRequest:
    return _csr(ec.generate_private_key(ec.SECP256R1()))


def _rsa_csr() -> x509.CertificateSigningRequest:
    return _csr(rsa.generate_private_key(65537, 2048))


def _openssl_verify(tmp_path: Path, anchor_pem: str, chain_pem: str) -> None:
    """``openssl verify`` of the chain's leaf with the rest of the chain as untrusted."""
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    (tmp_path / "anchor.pem").write_text(anchor_pem)
    (tmp_path / "leaf.pem").write_bytes(certs[0].public_bytes(PEM))
    (tmp_path / "untrusted.pem").write_bytes(b"".join(c.public_bytes(PEM) for c in certs[1:]))
    result = subprocess.run(
        [
            require_tool("openssl"), "verify", "-x509_strict", "-purpose", "sslserver",
            "-CAfile", str(tmp_path / "anchor.pem"),
            "-untrusted", str(tmp_path / "untrusted.pem"), str(tmp_path / "leaf.pem"),
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result


def _leaf(issued: IssuedCertificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(issued.der)


async def _count(services: Services, model: type) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _ocsp_request(leaf: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
    return builder.build().public_bytes(Encoding.DER)


# --- default ceremony: an ECDSA and an RSA chain -----------------------------------------------


async def test_default_init_issues_by_key_type(services: Services, tmp_path: Path) -> None:
    hierarchy = services.hierarchy
    assert hierarchy.root.id == "root-1"
    assert [(h.id, h.chain, h.status) for h in hierarchy.intermediates] == [
        ("int-1", "ecdsa", "active"),
        ("int-2", "rsa", "active"),
    ]
    assert [h.algorithm for h in hierarchy.intermediates] == ["ec-p256", "rsa-3072"]
    assert hierarchy.intermediate.id == "int-1"  # the default (root's) chain
    assert await _count(services, Issuer) == 3 and await _count(services, Certificate) == 3

    ec_leaf = await services.issuance.issue_tls_server(_ec_csr(), dns_names=["ec.example"])
    rsa_leaf = await services.issuance.issue_tls_server(_rsa_csr(), dns_names=["rsa.example"])
    assert (ec_leaf.issuer_id, rsa_leaf.issuer_id) == ("int-1", "int-2")
    assert ec_leaf.chain_pem == ec_leaf.pem + hierarchy.intermediates[0].pem
    assert rsa_leaf.chain_pem == rsa_leaf.pem + hierarchy.intermediates[1].pem
    for issued in (ec_leaf, rsa_leaf):
        _openssl_verify(tmp_path, hierarchy.root_pem(), issued.chain_pem)

    # Every CA certificate is lint clean: no pkilint error, no warning either.
    linter = Linter(ca_config(services.settings))
    for handle in hierarchy.issuers:
        report = linter.lint(
            handle.certificate, ROOT_CA if handle.role == "root" else INTERMEDIATE_CA
        )
        assert report.errors == () and report.warnings == (), (handle.id, report)

    # Revocation services cover both intermediates, each with its own delegated responder.
    assert set(services.crls.issuer_ids) == {"root-1", "int-1", "int-2"}
    for issued, intermediate in zip((ec_leaf, rsa_leaf), hierarchy.intermediates, strict=True):
        response = ocsp.load_der_ocsp_response(
            await services.ocsp.respond(_ocsp_request(_leaf(issued), intermediate.certificate))
        )
        assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        responder = response.certificates[0]
        responder.verify_directly_issued_by(intermediate.certificate)
        assert responder.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.endswith(
            " OCSP"
        )

    # The listeners know every issuer: ACME Link rel="up" and the plain-HTTP /ca, /crl routes.
    context = build_acme_context(services, [])
    assert set(context.issuer_pems) == {"int-1", "int-2"} and context.default_issuer_id == "int-1"
    async with TestClient(TestServer(build_http_app(services))) as http:
        for path in ("/ca/root-1.crt", "/ca/int-2.crt", "/crl/int-2.crl", "/crl/root-1.crl"):
            assert (await http.get(path)).status == 200, path


# --- a database of the single-intermediate releases --------------------------------------------


def _alembic_upgrade(connection: Connection, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def _old_hierarchy(settings: Settings) -> None:
    """What the single-intermediate releases stored: root-1 + int-1 at schema 0002, made with
    the fixed root/intermediate profiles of that code path."""
    engine = create_engine(settings.database_url)
    backend = key_backend(settings)
    config = ca_config(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic_upgrade, "0002")
        now = utc_now()
        algorithm = config.key_algorithm
        root_key = await backend.generate("root-1-old", algorithm)
        int_key = await backend.generate("int-1-old", algorithm)
        root_builder = RootCAProfile(config).build(
            public_key=root_key.public_key, serial=new_serial(), now=now
        )
        root = await sign_certificate(
            root_builder, backend=backend, key_ref=root_key.key_ref, algorithm=algorithm,
            issuer=None,
        )  # fmt: skip
        intermediate = await sign_certificate(
            IntermediateCAProfile(config).build(
                public_key=int_key.public_key, serial=new_serial(), issuer=root, now=now
            ),
            backend=backend, key_ref=root_key.key_ref, algorithm=algorithm, issuer=root,
        )  # fmt: skip
        async with engine.begin() as conn:
            for issuer_id, parent, cert, key in (
                ("root-1", None, root, root_key),
                ("int-1", "root-1", intermediate, int_key),
            ):
                await conn.execute(
                    sa_text(
                        "INSERT INTO issuers (id, role, parent_id, cert_pem, key_backend, key_ref,"
                        " key_blob, created_at) VALUES (:id, :role, :parent, :pem, :backend,"
                        " :ref, :blob, :now)"
                    ),
                    {"id": issuer_id, "role": "root" if parent is None else "intermediate",
                     "parent": parent, "pem": cert.public_bytes(PEM).decode(),
                     "backend": backend.name, "ref": key.key_ref, "blob": key.key_blob,
                     "now": now.replace(tzinfo=None)},
                )  # fmt: skip
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            await close()
        await engine.dispose()


async def test_single_intermediate_database_keeps_issuing(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path / "data", db_url)
    await _old_hierarchy(settings)
    services = await build_services(settings)  # migrates 0002 -> head, loads; creates nothing
    try:
        hierarchy = services.hierarchy
        assert [(h.id, h.chain, h.status) for h in hierarchy.intermediates] == [
            ("int-1", "ecdsa", "active")
        ]
        assert hierarchy.active("rsa") is None and hierarchy.intermediate.id == "int-1"
        # No RSA chain yet: every key type is issued by int-1, as before.
        for csr in (_ec_csr(), _rsa_csr()):
            issued = await services.issuance.issue_tls_server(csr, dns_names=["old.example"])
            assert issued.issuer_id == "int-1"
            _openssl_verify(tmp_path, hierarchy.root_pem(), issued.chain_pem)
        # The operator adds the RSA chain with a rotation.
        created = await rotate(
            services.sessions, services.backend, ca_config(settings), utc_now, hierarchy, "rsa"
        )
        assert (created.created.id, created.created.chain, created.retired) == (
            "int-2",
            "rsa",
            None,
        )
    finally:
        await services.close()
    services = await build_services(settings)  # a restart picks it up
    try:
        issued = await services.issuance.issue_tls_server(_rsa_csr(), dns_names=["rsa.example"])
        assert issued.issuer_id == "int-2"
        _openssl_verify(tmp_path, services.hierarchy.root_pem(), issued.chain_pem)
    finally:
        await services.close()


def _alembic_downgrade(connection: Connection, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


async def test_migration_0003_backfills_and_downgrades(tmp_path: Path, db_url: str) -> None:
    await _old_hierarchy(_settings(tmp_path / "data", db_url))  # rows at revision 0002
    engine = create_engine(db_url)
    query = sa_text("SELECT id, status, chain FROM issuers ORDER BY id")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic_upgrade, "0003")
        async with engine.connect() as conn:
            rows = [tuple(row) for row in (await conn.execute(query)).all()]
        assert rows == [("int-1", "active", "ecdsa"), ("root-1", "active", None)]

        async with engine.begin() as conn:  # 0002 knows one intermediate: a second blocks it
            await conn.execute(
                sa_text(
                    "INSERT INTO issuers (id, role, parent_id, cert_pem, key_backend, key_ref,"
                    " created_at, status) VALUES ('int-2', 'intermediate', 'root-1', '-', 'x',"
                    " 'x', :now, 'active')"
                ),
                {"now": utc_now().replace(tzinfo=None)},
            )
        with pytest.raises(RuntimeError, match="besides int-1"):
            async with engine.begin() as conn:
                await conn.run_sync(_alembic_downgrade, "0002")
        async with engine.begin() as conn:
            await conn.execute(sa_text("DELETE FROM issuers WHERE id = 'int-2'"))
        async with engine.begin() as conn:
            await conn.run_sync(_alembic_downgrade, "0002")
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa_inspect(c).get_columns("issuers")}
            )
        assert not {"status", "chain", "alternate_of", "retired_at"} & columns
        async with engine.begin() as conn:
            await conn.run_sync(_alembic_upgrade, "head")
    finally:
        await engine.dispose()


# --- ceremony file: name constraints ------------------------------------------------------------

CEREMONY = """
[root]
key = { algorithm = "ec-p384" }
subject = { CN = "Test Root CA", O = "Test Org", C = "DE" }
validity_days = 3000

[[intermediates]]
id = "int-ec"
key = { algorithm = "ec-p384", label = "int-ec-key" }
subject = { CN = "Test Constrained CA 1", O = "Test Org", C = "DE" }
validity_days = 1000
[intermediates.name_constraints]
permitted_dns = ["example.com"]
excluded_dns = ["secret.example.com"]

[[intermediates]]
key = { algorithm = "rsa-2048" }
subject = { CN = "Test RSA CA 1" }
path_length = 0
"""


async def test_ceremony_name_constraints_refuse_outside_names(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path / "data", db_url)
    path = tmp_path / "ceremony.toml"
    path.write_text(CEREMONY)
    ceremony = load_ceremony(path, ca_config(settings))
    services = await build_services(settings, hierarchy_mode="create", ceremony=ceremony)
    try:
        hierarchy = services.hierarchy
        constrained = hierarchy.active("ecdsa")
        assert constrained is not None and constrained.id == "int-ec"
        assert [h.id for h in hierarchy.intermediates] == ["int-ec", "int-1"]
        cert = constrained.certificate
        assert cert.subject.rfc4514_string() == "CN=Test Constrained CA 1,O=Test Org,C=DE"
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(
            days=1000, seconds=-1
        )
        extension = cert.extensions.get_extension_for_class(x509.NameConstraints)
        assert extension.critical
        permitted = extension.value.permitted_subtrees or []
        assert x509.DNSName("example.com") in permitted
        assert x509.DNSName("secret.example.com") in (extension.value.excluded_subtrees or [])
        rsa_ca = hierarchy.active("rsa")
        assert rsa_ca is not None
        assert rsa_ca.certificate.subject.rfc4514_string() == "CN=Test RSA CA 1,O=certyard,C=XX"
        linter = Linter(ca_config(settings))
        for handle in hierarchy.issuers:
            target = ROOT_CA if handle.role == "root" else INTERMEDIATE_CA
            assert linter.lint(handle.certificate, target).errors == ()

        inside = await services.issuance.issue_tls_server(
            _ec_csr(), dns_names=["www.example.com", "example.com"]
        )
        assert inside.issuer_id == "int-ec"
        _openssl_verify(tmp_path, hierarchy.root_pem(), inside.chain_pem)
        before = await _count(services, Certificate)
        for names, addresses in (
            (["www.other.test"], []),
            (["secret.example.com"], []),
            (["*.example.com"], []),  # the wildcard would cover secret.example.com
            (["www.example.com"], ["192.0.2.1"]),  # every IP address is excluded
        ):
            with pytest.raises(CAError) as info:
                await services.issuance.issue_tls_server(
                    _ec_csr(), dns_names=names, ip_addresses=addresses
                )
            assert info.value.kind == "policy" and "name constraints" in info.value.detail
        assert await _count(services, Certificate) == before  # nothing recorded, nothing signed
        # The RSA chain is not constrained.
        other = await services.issuance.issue_tls_server(_rsa_csr(), dns_names=["www.other.test"])
        assert other.issuer_id == "int-1"
    finally:
        await services.close()


def test_example_ceremony_file_loads() -> None:
    config = ca_config(_settings(Path("/nonexistent"), "sqlite+aiosqlite:///:memory:"))
    ceremony = load_ceremony(REPO_ROOT / "conf" / "examples" / "ceremony.toml", config)
    assert ceremony.root is not None and ceremony.root.algorithm == "ec-p384"
    assert [spec.chain for spec in ceremony.intermediates] == ["ecdsa", "rsa"]
    assert ceremony.intermediates[0].name_constraints is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[root]\nkey = { algorithm = 'ec-p256' }\nsubject = { CN = 'x' }\ncolour = 1\n", "colour"),
        ("[root]\nkey = { algorithm = 'dsa' }\nsubject = { CN = 'x' }\n", "root.key.algorithm"),
        (
            "[root]\nkey = { algorithm = 'ec-p256' }\nsubject = { CN = 'x' }\n"
            "[root.name_constraints]\npermitted_dns = ['a.example']\n"
            "[[intermediates]]\nkey = { algorithm = 'ec-p256' }\nsubject = { CN = 'y' }\n",
            "intermediates, not the root",
        ),
        (
            "[[intermediates]]\nkey = { algorithm = 'ec-p256' }\nsubject = { CN = 'a' }\n"
            "[[intermediates]]\nkey = { algorithm = 'ec-p384' }\nsubject = { CN = 'b' }\n",
            "one intermediate per chain",
        ),
        (
            "[[intermediates]]\nid = 'ocsp-1'\nkey = { algorithm = 'ec-p256' }\n"
            "subject = { CN = 'a' }\n",
            "not ocsp-/alt-",
        ),
        ("[root\n", "ceremony file"),
    ],
)
def test_ceremony_file_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(CAError) as info:
        load_ceremony(path, ca_config(_settings(tmp_path, "sqlite+aiosqlite:///:memory:")))
    assert info.value.kind == "malformed" and message in info.value.detail, info.value.detail


# --- rotation -----------------------------------------------------------------------------------


async def test_rotation_retires_the_old_intermediate(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path / "data", db_url)
    services = await build_services(settings, hierarchy_mode="create")
    try:
        old_hierarchy = services.hierarchy
        old_leaf = await services.issuance.issue_tls_server(_ec_csr(), dns_names=["old.example"])
        assert old_leaf.issuer_id == "int-1"
        rotation = await rotate(
            services.sessions, services.backend, ca_config(settings), utc_now,
            old_hierarchy, "ecdsa",
        )  # fmt: skip
        assert rotation.created.id == "int-3" and rotation.retired is not None
        assert rotation.retired.id == "int-1" and rotation.retired.status == "retired"
        name = rotation.created.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert name[0].value == "certyard Issuing CA 2"
        # A second rotation from the same (now stale) view loses: nothing of it is kept.
        issuers = await _count(services, Issuer)
        with pytest.raises(CAError) as info:
            await rotate(
                services.sessions, services.backend, ca_config(settings), utc_now,
                old_hierarchy, "ecdsa",
            )  # fmt: skip
        assert info.value.kind == "conflict"
        assert await _count(services, Issuer) == issuers
    finally:
        await services.close()

    services = await build_services(settings)  # the next start
    try:
        hierarchy = services.hierarchy
        assert [(h.id, h.status) for h in hierarchy.intermediates] == [
            ("int-1", "retired"),
            ("int-2", "active"),
            ("int-3", "active"),
        ]
        async with services.sessions() as session:
            row = await session.get(Issuer, "int-1")
        assert row is not None and row.status == "retired" and row.retired_at is not None
        assert hierarchy.intermediate.id == "int-3"
        new_leaf = await services.issuance.issue_tls_server(_ec_csr(), dns_names=["new.example"])
        assert new_leaf.issuer_id == "int-3"
        _openssl_verify(tmp_path, hierarchy.root_pem(), new_leaf.chain_pem)

        # The retired intermediate's leaf can still be revoked, and shows up as such.
        stored = await services.authority.revoke_serial(old_leaf.serial_hex, 1)
        assert stored.issuer_id == "int-1" and stored.status == "revoked"
        int_1 = hierarchy.issuer("int-1")
        assert int_1 is not None
        crl = x509.load_der_x509_crl(await services.crls.current_crl("int-1"))
        assert crl.is_signature_valid(int_1.certificate.public_key())  # type: ignore[arg-type]
        entry = crl.get_revoked_certificate_by_serial_number(old_leaf.serial)
        assert entry is not None
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
            x509.ReasonFlags.key_compromise
        )
        assert len(x509.load_der_x509_crl(await services.crls.current_crl("int-3"))) == 0
        answer = ocsp.load_der_ocsp_response(
            await services.ocsp.respond(_ocsp_request(_leaf(old_leaf), int_1.certificate))
        )
        assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason == x509.ReasonFlags.key_compromise
        answer.certificates[0].verify_directly_issued_by(int_1.certificate)
        good = ocsp.load_der_ocsp_response(
            await services.ocsp.respond(
                _ocsp_request(_leaf(new_leaf), rotation.created.certificate)
            )
        )
        assert good.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert good.certificates[0].issuer == rotation.created.certificate.subject
    finally:
        await services.close()


# --- alternate chains (RFC 8555 §7.4.2) ----------------------------------------------------------


def _cross_sign(intermediate: x509.Certificate) -> tuple[x509.Certificate, x509.Certificate]:
    """Another CA's root, and its certificate for the intermediate's subject and key."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Partner Root CA")])
    now = utc_now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    root = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(new_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )  # fmt: skip
    cross = (
        x509.CertificateBuilder().subject_name(intermediate.subject).issuer_name(name)
        .public_key(intermediate.public_key()).serial_number(new_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(intermediate.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA384())
    )  # fmt: skip
    return root, cross


@pytest.fixture
def dns() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    r = Responder()
    await r.start()
    yield r
    await r.stop()


async def test_alternate_chain_download(
    tmp_path: Path, db_url: str, dns: TestDNSServer, responder: Responder
) -> None:
    data_dir = tmp_path / "data"
    # The same CA settings as the harness below, which then loads this hierarchy.
    settings = load_settings(
        server={"data_dir": data_dir, "http_listen": ""},
        database={"url": db_url},
        ca={"backend": "software"},
    )
    services = await build_services(settings)
    try:
        intermediate = services.hierarchy.intermediate
        partner_root, cross = _cross_sign(intermediate.certificate)
        with pytest.raises(CAError) as info:  # the intermediate's own certificate is no alternate
            await add_alternate_chain(
                services.sessions, services.hierarchy,
                AlternateChainSpec(None, intermediate.pem.encode(), "own.pem"), utc_now,
            )  # fmt: skip
        assert info.value.kind == "malformed"
        alternate = await add_alternate_chain(
            services.sessions, services.hierarchy,
            AlternateChainSpec(None, cross.public_bytes(PEM), "cross.pem"), utc_now,
        )  # fmt: skip
        assert (alternate.id, alternate.intermediate_id) == ("alt-int-1-1", "int-1")
    finally:
        await services.close()

    async with running_acme(
        db_url, data_dir, dns_address=dns.address, http01_port=responder.port,
        validation_timeout_seconds=3,
    ) as acme:  # fmt: skip
        client = await acme.client()
        assert (await client.register()).status == 201
        order, chain = await obtain(client, ["alt.example.test"], responder, dns)
        default = await client.get(order["certificate"])  # type: ignore[arg-type]
        alternates = [link for link in default.links if 'rel="alternate"' in link]
        assert len(alternates) == 1
        alt_url = alternates[0].split(">")[0][1:]
        assert alt_url == f"{order['certificate']}/alt/1"
        reply = await client.get(alt_url)
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/pem-certificate-chain")
        alt_chain = x509.load_pem_x509_certificates(reply.body)
        assert alt_chain[0] == chain[0]  # the same leaf ...
        assert alt_chain[1:] == [cross] and chain[1:] == [intermediate.certificate]  # other chain
        assert f'<{order["certificate"]}>;rel="alternate"' in reply.links
        up = next(link for link in reply.links if 'rel="up"' in link).split(">")[0][1:]
        async with acme.http.get(up) as issuer:
            assert x509.load_pem_x509_certificates(await issuer.read()) == [cross]
        _openssl_verify(tmp_path, partner_root.public_bytes(PEM).decode(), reply.body.decode())
        root_pem = (data_dir / "ca" / "root.pem").read_text()
        _openssl_verify(tmp_path, root_pem, default.body.decode())
        for missing in ("/alt/2", "/alt/0", "/alt/x"):
            assert (await client.get(f"{order['certificate']}{missing}")).status == 404
