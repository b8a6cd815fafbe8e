"""The HSM goes away under a running ``certyard serve`` and comes back (docs/hsm.md).

A real server with its default key backend, PKCS#11 on the SoftHSM2 token it provisions under
``<data_dir>/softhsm``. An ACME client gets an order to "ready"; then the token disappears for
real - its object store ``<data_dir>/softhsm/tokens`` is renamed away, as the backend's own test
does (tests/integration/test_pkcs11.py) - and:

* finalize answers 503 with a ``serverInternal`` problem document, ``Retry-After`` and a clear
  detail (no stack trace, no internals), and the order goes back to "ready", not "invalid";
* ``/readyz`` answers 503 with ``ca_keys.ok == false``; ``/healthz`` still 200;
* nothing unrevocable is left in the database: a certificate row of that order, if any, is a
  "signing" record with a serial and no DER (docs/ca.md "Issuance records");

the directory is renamed back, and without restarting the server ``/readyz`` turns 200 within a
polling deadline, the retried finalize succeeds and ``openssl verify`` accepts the certificate.
"""

from __future__ import annotations

import asyncio
import email.utils
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.acme_client import AcmeTestClient, csr_field, make_csr
from tests.support.acme_https import (
    Http01Responder,
    JsonReply,
    acme_over_https,
    get_json,
    ready_order,
)
from tests.support.dnsserver import TestDNSServer
from tests.support.server import CertyardServer
from tests.support.softhsm import require_softhsm
from tests.support.tools import require_tool

NAMES = ["hsm-outage.example.test"]
RECOVERY_DEADLINE = 30.0
OUTAGE_DEADLINE = 30.0
POLL_INTERVAL = 0.2
TOOL_TIMEOUT = 60.0
PROBLEM = "application/problem+json"


@pytest.fixture
def dns() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(tmp_path: Path, dns: TestDNSServer) -> Iterator[CertyardServer]:
    require_softhsm()
    # Default settings otherwise: SQLite in the data dir, ca.backend = "pkcs11" with the
    # SoftHSM2 token certyard provisions under <data_dir>/softhsm.
    certyard = CertyardServer(
        tmp_path / "certyard", dns_resolvers=[dns.address], validation_deny=[]
    )
    with certyard:
        yield certyard


def certificate_rows(server: CertyardServer, order_id: str) -> list[dict[str, Any]]:
    """The ``certificates`` rows of an order, read with sqlite3 from the server's database."""
    database = server.data_dir / "certyard.db"
    assert database.is_file(), database
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, state, serial, status, der FROM certificates WHERE order_id = ?",
            (order_id,),
        ).fetchall()
    return [dict(row) for row in rows]


def retry_after_seconds(value: str | None) -> float:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date."""
    assert value, "no Retry-After header"
    if value.isdigit():
        return float(value)
    when = email.utils.parsedate_to_datetime(value)
    return when.timestamp() - time.time()


async def run_tool(argv: list[str]) -> tuple[int, str]:
    """Run a program without blocking the event loop: (exit status, stdout + stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TOOL_TIMEOUT)
    except TimeoutError:
        process.kill()  # the process this call started, by its handle
        await process.wait()
        raise AssertionError(f"{argv} did not finish within {TOOL_TIMEOUT:.0f} s") from None
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def readyz_until(
    client: AcmeTestClient, server: CertyardServer, status: int, deadline: float
) -> JsonReply:
    end = time.monotonic() + deadline
    while True:
        reply = await get_json(client.session, f"{server.base_url}/readyz")
        if reply.status == status:
            return reply
        assert time.monotonic() < end, f"/readyz stayed {reply.status}: {reply.body}"
        await asyncio.sleep(POLL_INTERVAL)


async def test_finalize_during_hsm_outage_is_503_and_recovers(
    server: CertyardServer, tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    pid = server.pid
    store = server.data_dir / "softhsm" / "tokens"
    assert store.is_dir(), f"the server did not provision its SoftHSM2 token at {store}"
    gone = store.with_name("tokens.gone")

    async with acme_over_https(server) as client, Http01Responder(server.http01_port) as web01:
        assert (await client.register()).status == 201
        order_url, order = await ready_order(client, web01, NAMES)
        order_id = order_url.rstrip("/").rsplit("/", 1)[-1]
        assert (await get_json(client.session, f"{server.base_url}/readyz")).status == 200
        csr, _ = make_csr(NAMES)

        store.rename(gone)  # the token's storage disappears under the running server
        try:
            # -- finalize: 503, serverInternal, Retry-After, a clear detail -------------------
            reply = await client.post(order["finalize"], {"csr": csr_field(csr)})
            assert reply.status == 503, (reply.status, reply.body, server.log_tail())
            assert reply.headers.get("Content-Type", "").startswith(PROBLEM), reply.headers
            problem = reply.json()
            assert problem["type"] == "urn:ietf:params:acme:error:serverInternal", problem
            assert problem.get("status") == 503, problem
            assert retry_after_seconds(reply.headers.get("Retry-After")) > 0, reply.headers
            detail = problem.get("detail")
            assert isinstance(detail, str) and detail.strip(), problem
            body = reply.body.decode()
            # RFC 9457 detail for the client: no stack trace, no module internals, no paths.
            for internal in ("Traceback", 'File "', "CKR_", "pkcs11", str(server.data_dir)):
                assert internal not in body, problem

            # Nothing was issued and the fault is temporary: the order is ready again.
            order_now = (await client.get(order_url)).json()
            assert order_now["status"] == "ready", order_now
            assert "certificate" not in order_now, order_now

            # -- health: not ready (the CA keys), but alive -----------------------------------
            readyz = await readyz_until(client, server, 503, OUTAGE_DEADLINE)
            assert readyz.body["checks"]["ca_keys"]["ok"] is False, readyz.body
            assert readyz.body["checks"]["database"]["ok"] is True, readyz.body
            healthz = await get_json(client.session, f"{server.base_url}/healthz")
            assert healthz.status == 200, healthz.body

            # -- database: only revocable "signing" records, never a released certificate -----
            outage_rows = certificate_rows(server, order_id)
            for row in outage_rows:
                assert row["state"] == "signing", row
                assert row["serial"], row  # the record is revocable by serial
                assert row["status"] == "valid", row
                assert row["der"] is None, row
        finally:
            gone.rename(store)

        # -- the token is back: ready again, without a restart -------------------------------
        readyz = await readyz_until(client, server, 200, RECOVERY_DEADLINE)
        assert readyz.body["checks"]["ca_keys"]["ok"] is True, readyz.body
        assert server.process is not None and server.process.poll() is None
        assert server.pid == pid

        reply = await client.post(order["finalize"], {"csr": csr_field(csr)})
        assert reply.status == 200, (reply.status, reply.body, server.log_tail())
        order_now = await client.poll(order_url, {"valid", "invalid"}, RECOVERY_DEADLINE)
        assert order_now["status"] == "valid", order_now
        download = await client.get(order_now["certificate"])
        assert download.status == 200, download.body
        content_type = download.headers.get("Content-Type", "")
        assert content_type.startswith("application/pem-certificate-chain"), content_type

    chain = x509.load_pem_x509_certificates(download.body)
    assert len(chain) == 2, download.body  # leaf and intermediate, never the root
    leaf_path, chain_path = tmp_path / "leaf.pem", tmp_path / "chain.pem"
    pem = serialization.Encoding.PEM
    leaf_path.write_bytes(chain[0].public_bytes(pem))
    chain_path.write_bytes(b"".join(cert.public_bytes(pem) for cert in chain[1:]))
    argv = [
        openssl, "verify",
        "-purpose", "sslserver",
        "-CAfile", str(server.root_pem_path),
        "-untrusted", str(chain_path),
        str(leaf_path),
    ]  # fmt: skip
    code, output = await run_tool(argv)
    assert code == 0 and output.strip() == f"{leaf_path}: OK", output
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES

    # The certificate is the order's one "issued" row; the outage left at most stale "signing"
    # records, with other serials, that were never completed or released.
    rows = certificate_rows(server, order_id)
    issued = [row for row in rows if row["state"] == "issued"]
    assert len(issued) == 1, rows
    assert int(issued[0]["serial"], 16) == chain[0].serial_number
    assert issued[0]["der"] == chain[0].public_bytes(serialization.Encoding.DER)
    stale = [row for row in rows if row["state"] != "issued"]
    assert sorted(r["id"] for r in stale) == sorted(r["id"] for r in outage_rows), rows
    for row in stale:
        assert row["state"] == "signing" and row["der"] is None, row
        assert int(row["serial"], 16) != chain[0].serial_number, row
        # Revocation services count it as issued (docs/revocation.md): OCSP "good", not
        # "unknown", so it can be revoked and shown revoked like any certificate.
        serial = f"0x{row['serial']}"
        code, output = await run_tool(
            [
                openssl, "ocsp",
                "-issuer", str(chain_path),
                "-serial", serial,
                "-url", f"{server.http_url}/ocsp",
                "-CAfile", str(server.root_pem_path),
            ]
        )  # fmt: skip
        assert code == 0 and "Response verify OK" in output, output
        assert f"{serial}: good" in output, output
