"""ACME profiles (draft-ietf-acme-profiles) and renewal information (RFC 9773), in process."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import update

from acme_server.ari import cert_id_of
from storage.models import Certificate
from tests.integration.test_acme_flow import obtain
from tests.support.acme_app import RunningAcme, running_acme
from tests.support.acme_client import AcmeTestClient, csr_field, make_csr
from tests.support.dnsserver import TestDNSServer
from tests.support.http01 import Responder


@pytest.fixture
async def acme(
    db_url: str, tmp_path: Path, dns: TestDNSServer, responder: Responder
) -> AsyncIterator[RunningAcme]:
    async with running_acme(
        db_url, tmp_path / "data", dns_address=dns.address, http01_port=responder.port
    ) as running:
        yield running


@pytest.fixture
async def client(acme: RunningAcme) -> AcmeTestClient:
    c = await acme.client()
    assert (await c.register()).status == 201
    return c


async def test_directory_lists_profiles_and_renewal_info(client: AcmeTestClient) -> None:
    directory = client.directory
    assert directory["renewalInfo"].endswith("/acme/renewal-info")
    profiles = directory["meta"]["profiles"]
    assert set(profiles) == {"tls-server", "shortlived"}
    assert all(isinstance(text, str) and text for text in profiles.values())


async def test_unknown_profile_is_invalid_profile(client: AcmeTestClient) -> None:
    reply = await client.post(
        client.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "p.example.test"}], "profile": "device"},
    )
    assert reply.problem_type == "invalidProfile" and reply.status == 400


async def test_shortlived_profile_issues_short_certificate(
    client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    reply = await client.post(
        client.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "short.example.test"}], "profile": "shortlived"},
    )
    assert reply.status == 201 and reply.json()["profile"] == "shortlived"
    from tests.integration.test_acme_flow import solve

    order_url = reply.headers["Location"]
    await solve(client, reply.json(), responder, dns)
    order = await client.poll(order_url, {"ready"})
    der, _ = make_csr(["short.example.test"])
    await client.post(order["finalize"], {"csr": csr_field(der)})
    order = await client.poll(order_url, {"valid"})
    leaf = x509.load_pem_x509_certificates((await client.get(order["certificate"])).body)[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime <= dt.timedelta(days=7)


async def test_renewal_info_window_replaces_and_advance(
    acme: RunningAcme, client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    _, chain = await obtain(client, ["ari.example.test"], responder, dns)
    leaf = chain[0]
    cert_id = cert_id_of(leaf).encode()
    url = f"{client.directory['renewalInfo']}/{cert_id}"
    async with acme.http.get(url) as resp:
        assert resp.status == 200
        assert int(resp.headers["Retry-After"]) > 0
        window = (await resp.json())["suggestedWindow"]
    start = dt.datetime.fromisoformat(window["start"])
    end = dt.datetime.fromisoformat(window["end"])
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert leaf.not_valid_before_utc + lifetime * 2 / 3 <= start < end < leaf.not_valid_after_utc

    # An operator moves the window earlier (certyard acme ari advance does this).
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with acme.services.sessions.begin() as session:
        await session.execute(
            update(Certificate)
            .where(Certificate.serial == format(leaf.serial_number, "x"))
            .values(ari_window_start=now, ari_window_end=now + dt.timedelta(hours=1))
        )
    async with acme.http.get(url) as resp:
        window = (await resp.json())["suggestedWindow"]
    assert dt.datetime.fromisoformat(window["start"]) == now

    # A renewal names the certificate it replaces; a second order replacing it is refused.
    body = {"identifiers": [{"type": "dns", "value": "ari.example.test"}], "replaces": cert_id}
    first = await client.post(client.directory["newOrder"], body)
    assert first.status == 201, first.body
    assert first.json()["replaces"] == cert_id
    second = await client.post(client.directory["newOrder"], body)
    assert second.problem_type == "alreadyReplaced" and second.status == 409

    # Unknown and malformed certIDs.
    async with acme.http.get(f"{client.directory['renewalInfo']}/AQ.AQ") as resp:
        assert resp.status == 404
    async with acme.http.get(f"{client.directory['renewalInfo']}/not-a-cert-id") as resp:
        assert resp.status == 400
        assert (await resp.json())["type"].endswith(":malformed")

    # Replacing a certificate of another account is refused.
    stranger = await acme.client()
    await stranger.register()
    other = await stranger.post(stranger.directory["newOrder"], body)
    assert other.problem_type == "unauthorized"


async def test_revoked_certificate_window_is_in_the_past(
    acme: RunningAcme, client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.support.jws_client import b64

    _, chain = await obtain(client, ["ari-revoked.example.test"], responder, dns)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    assert (
        await client.post(client.directory["revokeCert"], {"certificate": b64(der)})
    ).status == 200
    url = f"{client.directory['renewalInfo']}/{cert_id_of(chain[0]).encode()}"
    async with acme.http.get(url) as resp:
        window = (await resp.json())["suggestedWindow"]
    assert dt.datetime.fromisoformat(window["end"]) < dt.datetime.now(dt.UTC)
