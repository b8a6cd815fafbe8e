"""One TLS (or STARTTLS) handshake: the chain the server sent, the version and the cipher.

Choice of TLS stack: the standard library's ``ssl`` through asyncio (``StreamWriter.start_tls``,
Python 3.11+), so one event loop drives thousands of handshakes without threads. The whole chain
the server sent comes from ``SSLObject.get_unverified_chain()`` on Python 3.13+ and, on 3.11 and
3.12, from the same C method on the private ``_sslobj`` (present since 3.10: OpenSSL's
``SSL_get_peer_cert_chain``). If neither exists, the leaf alone (``getpeercert(binary_form=True)``)
is recorded. pyOpenSSL was not used: it would add a runtime dependency and a thread per
handshake for the same data.

The client accepts everything (no verification, ``@SECLEVEL=0``, TLS 1.0 upwards): the scanner
must see weak and broken servers to report them; judging the chain is findings.py's job.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import ssl
import warnings
from typing import Any

from scanner.jobs import ProbeJob, ProbeResult, Status
from scanner.starttls import PREAMBLES, StartTlsRefused

# OpenSSL reasons that mean "the peer answered, but not with TLS".
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
}


def client_context(*, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ssl.SSLError):
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    with contextlib.suppress(ValueError, ssl.SSLError):
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    if maximum is not None:
        with warnings.catch_warnings():
            # Deliberate: the deprecated_tls_version probe offers TLS 1.1 at most.
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.maximum_version = maximum
    return ctx


def peer_chain(ssl_object: Any) -> list[bytes]:
    """The certificates the server sent (leaf first), as DER."""
    public = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return [bytes(cert) for cert in public() or []]
    inner = getattr(ssl_object, "_sslobj", None)
    if inner is not None and hasattr(inner, "get_unverified_chain"):
        return [cert.public_bytes(_ssl.ENCODING_DER) for cert in inner.get_unverified_chain() or []]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


_READ_SIZE = 16 * 1024 + 256  # one TLS record (RFC 8446 §5.2: 2^14 plus overhead)


def _close(writer: asyncio.StreamWriter) -> None:
    # abort(): no close_notify round trip; a scan does not wait for polite goodbyes.
    writer.transport.abort()


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ctx: ssl.SSLContext,
    sni: str | None,
) -> ssl.SSLObject:
    """The TLS handshake over memory BIOs on the plain stream, and nothing after it.

    Not ``StreamWriter.start_tls``: asyncio's SSL transport gives every connection a 256 KiB
    read buffer (asyncio.sslproto.SSLProtocol.max_size), which at a scan's concurrency is most of
    its memory; a scan only needs the handshake, whose records are a few KiB.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    # server_hostname None: no SNI extension at all (RFC 6066 §3).
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=sni)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                writer.write(pending)
            data = await reader.read(_READ_SIZE)
            if not data:
                raise ConnectionResetError("connection closed during the TLS handshake") from None
            incoming.write(data)
    pending = outgoing.read()  # TLS 1.3: the client's Finished; sent as a courtesy
    if pending:
        writer.write(pending)
    return tls


async def probe(job: ProbeJob, ctx: ssl.SSLContext, *, seconds: float) -> ProbeResult:
    """Connect, run the STARTTLS preamble if any, handshake; every outcome is a result."""
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(job.ip, job.port)
    except ConnectionRefusedError:
        return ProbeResult(job, Status.REFUSED, error="connection refused")
    except TimeoutError:
        return ProbeResult(job, Status.TIMEOUT, error=f"no TCP answer within {seconds:g} s")
    except OSError as exc:
        return ProbeResult(job, Status.ERROR, error=f"connect: {exc.strerror or exc}")
    try:
        async with asyncio.timeout(seconds):
            preamble = PREAMBLES.get(job.protocol)
            if preamble is not None:
                await preamble(reader, writer, job.sni or job.host or job.ip)
            ssl_object = await handshake(reader, writer, ctx, job.sni)
        cipher = ssl_object.cipher()
        return ProbeResult(
            job,
            Status.OK,
            chain=peer_chain(ssl_object),
            tls_version=ssl_object.version(),
            cipher=cipher[0] if cipher else None,
        )
    except TimeoutError:
        what = "STARTTLS dialogue or TLS handshake" if job.protocol != "tls" else "TLS handshake"
        return ProbeResult(job, Status.NO_TLS, error=f"no {what} within {seconds:g} s")
    except StartTlsRefused as exc:
        return ProbeResult(job, Status.ERROR, error=f"STARTTLS: {exc}")
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or ""
        status = Status.NO_TLS if reason in _NOT_TLS_REASONS else Status.ERROR
        return ProbeResult(job, status, error=f"TLS: {reason or exc}")
    except (OSError, EOFError) as exc:
        return ProbeResult(job, Status.ERROR, error=f"handshake: {str(exc) or type(exc).__name__}")
    finally:
        _close(writer)
