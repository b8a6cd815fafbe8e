"""OCSP stapling (RFC 6066 §8 status_request): does the endpoint staple an OCSP response, and
what does it say?

The standard library's ``ssl`` neither asks for nor exposes a stapled response, so this one
extra handshake per direct-TLS endpoint goes through pyOpenSSL (``request_ocsp`` and the OCSP
client callback), in a worker thread with a blocking socket and the scan's timeout. STARTTLS
endpoints are not checked (their preambles are asyncio code); their ``ocsp_stapling`` is None.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from typing import Any

from cryptography.x509 import ocsp
from OpenSSL import SSL

from scanner.jobs import ProbeJob


def describe(response_der: bytes) -> dict[str, Any]:
    """JSON-ready summary of a stapled response (RFC 6960 §4.2.1)."""
    out: dict[str, Any] = {"stapled": True}
    try:
        response = ocsp.load_der_ocsp_response(response_der)
    except ValueError as exc:
        out["error"] = f"unparsable OCSP response: {exc}"
        return out
    out["response_status"] = response.response_status.name.lower()
    if response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
        out["cert_status"] = response.certificate_status.name.lower()
        out["this_update"] = response.this_update_utc.isoformat()
        next_update = response.next_update_utc
        out["next_update"] = next_update.isoformat() if next_update else None
        out["serial"] = format(response.serial_number, "x")
    return out


def _handshake(ip: str, port: int, sni: str | None, seconds: float) -> dict[str, Any]:
    stapled: list[bytes] = []

    def on_ocsp(_conn: SSL.Connection, data: bytes, _extra: object) -> bool:
        if data:
            stapled.append(bytes(data))
        return True  # the scanner reports; it does not refuse the handshake

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    ctx.set_cipher_list(b"ALL:@SECLEVEL=0")
    ctx.set_ocsp_client_callback(on_ocsp)
    with socket.create_connection((ip, port), timeout=seconds) as sock:
        conn = SSL.Connection(ctx, sock)
        if sni:
            conn.set_tlsext_host_name(sni.encode("idna"))
        conn.request_ocsp()
        conn.set_connect_state()
        # A socket with a timeout is non-blocking underneath, so OpenSSL answers "want read"
        # whenever the server is slower than us: wait for the socket, up to the deadline.
        deadline = time.monotonic() + seconds
        while True:
            try:
                conn.do_handshake()
                break
            except (SSL.WantReadError, SSL.WantWriteError) as want:
                left = deadline - time.monotonic()
                writing = isinstance(want, SSL.WantWriteError)
                ready = select.select(
                    [] if writing else [sock], [sock] if writing else [], [], max(left, 0)
                )
                if left <= 0 or not any(ready):
                    raise TimeoutError("OCSP stapling handshake") from None
        try:
            conn.shutdown()
        except SSL.Error:
            pass  # the handshake is what we came for; a close_notify that cannot go is fine
    return describe(stapled[0]) if stapled else {"stapled": False}


async def check_stapling(job: ProbeJob, *, seconds: float) -> dict[str, Any] | None:
    """The stapling result, or None when not checked (STARTTLS, or the handshake failed)."""
    if job.protocol != "tls":
        return None
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_handshake, job.ip, job.port, job.sni, seconds), seconds * 2
        )
    except (OSError, SSL.Error, TimeoutError):
        return None
