"""EST beyond the basics, over the real app on a real TLS socket (the fixtures of test_est.py):
tls-unique proof of possession (RFC 7030 §3.5) from a real TLS 1.2 client, the rate limit
(429), CSR attributes from the profile (RFC 9908), IDevID bootstrap (RFC 7030 §3.3.2) and
encrypted server-side key generation (RFC 7030 §4.4.2) opened with ``openssl cms -decrypt``."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import http.client
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc5958, rfc7030, rfc9908
from sqlalchemy import select

from ca.serials import serial_to_hex
from est_server.binding import CHALLENGE_PASSWORD
from est_server.keygen import ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID
from storage.models import EstEnrollment
from tests.integration.test_est import (  # noqa: F401 (est: a fixture)
    BASIC,
    KEK,
    KEK_ID,
    PASSWORD,
    PKCS10,
    Est,
    assert_text_error,
    b64,
    certificates,
    enroll,
    est,
    est_template,
    make_csr,
    request,
)
from tests.support.est_pki import csr_with, manufacturer, pem_cert, pem_key
from tests.support.tools import require_tool

# -- tls-unique channel binding (RFC 7030 §3.5) --------------------------------------------


def _bound_enroll(
    server: Est, binding: str, tls: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
) -> tuple[int, bytes]:
    """A blocking TLS client that reads tls-unique off its own connection (RFC 5929 §3.1) and
    posts, on that same connection, a CSR whose challengePassword carries it ("right"), a
    wrong value ("wrong") or nothing ("none")."""
    context = ssl.create_default_context(cadata=server.root_pem)
    context.maximum_version = tls
    host, port = server.base.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    try:
        connection.connect()
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        unique = sock.get_channel_binding("tls-unique") if tls == ssl.TLSVersion.TLSv1_2 else None
        value = {
            "right": base64.b64encode(unique or b"").decode(),
            "wrong": base64.b64encode(b"\x00" * 12).decode(),
            "none": None,
        }[binding]
        attributes = () if value is None else ((CHALLENGE_PASSWORD, value.encode(), False),)
        der, _ = csr_with("bound-1", attributes=attributes)
        auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        connection.request(
            "POST",
            "/.well-known/est/bound/simpleenroll",
            body=b64(der),
            headers={**PKCS10, "Authorization": f"Basic {auth}"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_tls_unique_binding_accepted(est: Est) -> None:  # noqa: F811
    status, body = await asyncio.to_thread(_bound_enroll, est, "right")
    assert status == 200, body
    assert len(certificates(body)) == 1


@pytest.mark.parametrize("binding", ["wrong", "none"])
async def test_tls_unique_binding_refused_401(est: Est, binding: str) -> None:  # noqa: F811
    status, body = await asyncio.to_thread(_bound_enroll, est, binding)
    assert status == 401, body
    assert b"channel binding" in body


async def test_tls13_binding_label_says_use_tls12(est: Est) -> None:  # noqa: F811
    """Python's ssl cannot export TLS 1.3 keying material (RFC 9266): 401 saying so."""
    status, body = await asyncio.to_thread(_bound_enroll, est, "none", ssl.TLSVersion.TLSv1_3)
    assert status == 401
    assert b"TLS 1.2" in body


async def test_binding_csr_relayed_over_another_session_401(est: Est) -> None:  # noqa: F811
    """A CSR bound to one TLS session, posted over another (a relay): refused."""
    loop_status, _ = await asyncio.to_thread(_bound_enroll, est, "right")
    assert loop_status == 200
    # aiohttp's client opens its own TLS session: a value from another session cannot match.
    der, _ = csr_with("relayed", attributes=((CHALLENGE_PASSWORD, b"AAAAAAAAAAAAAAAA", False),))
    response, body = await request(
        est, "POST", "simpleenroll", label="bound", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 401)


# -- rate limit ----------------------------------------------------------------------------


async def test_rate_limited_429(est: Est) -> None:  # noqa: F811
    for n in range(2):
        der, _ = make_csr(f"burst-{n}")
        response, body = await request(
            est, "POST", "simpleenroll", label="limited", body=b64(der), headers=PKCS10, auth=BASIC
        )
        assert response.status == 200, body
    der, _ = make_csr("burst-3")
    response, body = await request(
        est, "POST", "simpleenroll", label="limited", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 429)
    assert 0 < int(response.headers["Retry-After"]) <= 60
    # Other labels are not affected.
    response, body = await request(
        est, "POST", "simpleenroll", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert response.status == 200, body


# -- csrattrs (RFC 7030 §4.5.2, RFC 9908) ------------------------------------------------------


def _csrattrs(body: bytes) -> rfc7030.CsrAttrs:
    attrs, rest = decoder.decode(base64.b64decode(body), asn1Spec=rfc7030.CsrAttrs())
    assert rest == b""
    return attrs


async def test_csrattrs_template_from_profile(est: Est) -> None:  # noqa: F811
    response, body = await request(est, "GET", "csrattrs", label="rsa")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/csrattrs"
    (item,) = _csrattrs(body)
    attribute = item["attribute"]
    assert attribute["attrType"] == rfc9908.id_aa_certificationRequestInfoTemplate
    template, _ = decoder.decode(
        attribute["attrValues"][0], asn1Spec=rfc9908.CertificationRequestInfoTemplate()
    )
    # The CN is the client's to fill in; the "rsa" label pins the RSA chain.
    (rdn,) = template["subject"]["rdnSequence"]
    assert str(rdn[0]["type"]) == "2.5.4.3" and not rdn[0]["value"].isValue
    assert str(template["subjectPKInfo"]["algorithm"]["algorithm"]) == "1.2.840.113549.1.1.1"
    (ext_request,) = template["attributes"]
    assert ext_request["type"] == rfc9908.id_aa_extensionReqTemplate
    extensions, _ = decoder.decode(
        ext_request["values"][0], asn1Spec=rfc9908.ExtensionReqTemplate()
    )
    (eku,) = extensions
    # The device profile fixes the EKU to clientAuth: a template value (RFC 9908 §3.4).
    expected = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]).public_bytes()
    assert str(eku["extnID"]) == "2.5.29.37" and bytes(eku["extnValue"]) == expected


async def test_csrattrs_asks_for_tls_unique(est: Est) -> None:  # noqa: F811
    response, body = await request(est, "GET", "csrattrs", label="bound")
    assert response.status == 200
    oids = [str(item["oid"]) for item in _csrattrs(body) if item.getName() == "oid"]
    assert oids == [str(CHALLENGE_PASSWORD.dotted_string)]


async def test_csrattrs_tls_server_asks_for_names(est: Est) -> None:  # noqa: F811
    _, body = await request(est, "GET", "csrattrs", label="web")
    (item,) = _csrattrs(body)
    template, _ = decoder.decode(
        item["attribute"]["attrValues"][0], asn1Spec=rfc9908.CertificationRequestInfoTemplate()
    )
    # A TLS server profile: no CN requested, SAN requested without a value.
    assert not template["subject"].isValue
    extensions, _ = decoder.decode(
        template["attributes"][0]["values"][0], asn1Spec=rfc9908.ExtensionReqTemplate()
    )
    names = {str(e["extnID"]): e["extnValue"].isValue for e in extensions}
    assert names == {"2.5.29.37": True, "2.5.29.17": False}


# -- IDevID bootstrap (RFC 7030 §3.3.2) ------------------------------------------------------


async def test_idevid_initial_enrollment(est: Est) -> None:  # noqa: F811
    idevid, key = est.manufacturer.idevid("SN-0042")
    client = est.ssl(pem_cert(idevid), pem_key(key))
    der, _ = make_csr("meter-0042")
    response, body = await request(
        est,
        "POST",
        "simpleenroll",
        label="factory",
        body=b64(der),
        headers=PKCS10,
        ssl_context=client,
    )
    assert response.status == 200, body
    async with est.services.sessions() as session:
        identities = (await session.execute(select(EstEnrollment.identity))).scalars().all()
    assert identities == [f"idevid:{serial_to_hex(idevid.serial_number)}"]
    # Trusted for this label only, and never for re-enrollment (that needs an LDevID).
    for label, operation in (("certonly", "simpleenroll"), ("factory", "simplereenroll")):
        response, body = await request(
            est, "POST", operation, label=label, body=b64(der), headers=PKCS10, ssl_context=client
        )
        assert_text_error(response, body, 403)


async def test_idevid_of_unknown_manufacturer_fails_handshake(est: Est) -> None:  # noqa: F811
    idevid, key = manufacturer("Rogue Devices CA").idevid("SN-666")
    der, _ = make_csr("rogue")
    # The listener trusts no such manufacturer: the TLS handshake itself fails.
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await request(
            est,
            "POST",
            "simpleenroll",
            label="factory",
            body=b64(der),
            headers=PKCS10,
            ssl_context=est.ssl(pem_cert(idevid), pem_key(key)),
        )


# -- encrypted server-side key generation (RFC 7030 §4.4.2) -----------------------------------


def _parts(content_type: str, body: bytes) -> list[email.message.EmailMessage]:
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    return list(message.walk())[1:]


@pytest.mark.parametrize("kind", ["rsa", "ec"], ids=["ktri-rsa", "kari-ec"])
async def test_serverkeygen_encrypted_to_client_certificate(
    est: Est,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    openssl = require_tool("openssl")
    # The client certificate the key is encrypted to: key transport to an RSA key, key
    # agreement (RFC 5753) to an EC one.
    client_key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    der, _ = make_csr("kt-client", key=client_key)
    response, body = await request(
        est, "POST", "simpleenroll", body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert response.status == 200, body
    (client_cert,) = certificates(body)
    ski = client_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    cert_path, key_path = tmp_path / "kt.pem", tmp_path / "kt.key"
    cert_path.write_bytes(pem_cert(client_cert))
    key_path.write_bytes(pem_key(client_key))

    template, _ = csr_with("enc-device", attributes=((ASYMM_DECRYPT_KEY_ID, ski, True),))
    response, body = await request(
        est,
        "POST",
        "serverkeygen",
        body=b64(template),
        headers=PKCS10,
        ssl_context=est.ssl(pem_cert(client_cert), pem_key(client_key)),
    )
    assert response.status == 200, body
    key_part, cert_part = _parts(response.headers["Content-Type"], body)
    assert key_part.get_content_type() == "application/pkcs7-mime"
    assert key_part.get_param("smime-type") == "server-generated-key"
    enveloped = key_part.get_payload(decode=True)
    assert isinstance(enveloped, bytes)
    (tmp_path / "key.p7").write_bytes(enveloped)
    # The real openssl opens the EnvelopedData with the client's key ...

    def run(*argv: str) -> None:
        subprocess.run([openssl, *argv], capture_output=True, check=True, timeout=30, cwd=tmp_path)

    run(
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-in",
        "key.p7",
        "-recip",
        "kt.pem",
        "-inkey",
        "kt.key",
        "-out",
        "signed.der",
    )
    # ... and verifies the SignedData inside up to certyard's root.
    (tmp_path / "root.pem").write_text(est.root_pem)
    run(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        "signed.der",
        "-binary",
        "-CAfile",
        "root.pem",
        "-purpose",
        "any",
        "-out",
        "package.der",
    )
    package, _ = decoder.decode(
        (tmp_path / "package.der").read_bytes(), asn1Spec=rfc5958.AsymmetricKeyPackage()
    )
    key = serialization.load_der_private_key(encoder.encode(package[0]), None)
    cert_cms = cert_part.get_payload(decode=True)
    assert isinstance(cert_cms, bytes)
    (issued,) = certificates(base64.b64encode(cert_cms))
    assert issued.public_key() == key.public_key()
    assert issued.subject.rfc4514_string() == "CN=enc-device"


async def test_serverkeygen_encrypted_to_shared_key(est: Est, tmp_path: Path) -> None:  # noqa: F811
    """RFC 7030 §4.4.1.2 DecryptKeyIdentifier: kekri with the label's pre-shared AES key,
    opened by ``openssl cms -decrypt -secretkey -secretkeyid``."""
    openssl = require_tool("openssl")
    template, _ = csr_with("kek-device", attributes=((DECRYPT_KEY_ID, KEK_ID, True),))
    response, body = await request(
        est, "POST", "serverkeygen", body=b64(template), headers=PKCS10, auth=BASIC
    )
    assert response.status == 200, body
    key_part, cert_part = _parts(response.headers["Content-Type"], body)
    assert key_part.get_param("smime-type") == "server-generated-key"
    enveloped = key_part.get_payload(decode=True)
    assert isinstance(enveloped, bytes)
    (tmp_path / "key.p7").write_bytes(enveloped)
    (tmp_path / "root.pem").write_text(est.root_pem)

    def run(*argv: str) -> None:
        subprocess.run([openssl, *argv], capture_output=True, check=True, timeout=30, cwd=tmp_path)

    run("cms", "-decrypt", "-inform", "DER", "-in", "key.p7", "-secretkey", KEK.hex(),
        "-secretkeyid", KEK_ID.hex(), "-out", "signed.der")  # fmt: skip
    run("cms", "-verify", "-inform", "DER", "-in", "signed.der", "-binary", "-CAfile",
        "root.pem", "-purpose", "any", "-out", "package.der")  # fmt: skip
    package, _ = decoder.decode(
        (tmp_path / "package.der").read_bytes(), asn1Spec=rfc5958.AsymmetricKeyPackage()
    )
    key = serialization.load_der_private_key(encoder.encode(package[0]), None)
    cert_cms = cert_part.get_payload(decode=True)
    assert isinstance(cert_cms, bytes)
    (issued,) = certificates(base64.b64encode(cert_cms))
    assert issued.public_key() == key.public_key()
    # A wrong key cannot open it.
    with pytest.raises(subprocess.CalledProcessError):
        run("cms", "-decrypt", "-inform", "DER", "-in", "key.p7", "-secretkey", "00" * 32,
            "-secretkeyid", KEK_ID.hex(), "-out", "wrong.der")  # fmt: skip


# -- status table: a request without the attributes the label's profile needs ---------------


@pytest.mark.parametrize("label", ["default", "web"])
async def test_missing_required_name_400(est: Est, label: str) -> None:  # noqa: F811
    """csrattrs asks device profiles for a CN and TLS server profiles for subjectAltName; a CSR
    with neither is 400 with the reason."""
    key = ec.generate_private_key(ec.SECP256R1())
    empty = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    der = empty.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    response, body = await request(
        est, "POST", "simpleenroll", label=label, body=b64(der), headers=PKCS10, auth=BASIC
    )
    assert_text_error(response, body, 400)
    assert b"needs a name" in body
