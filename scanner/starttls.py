"""STARTTLS preambles: the plain-text dialogue before the TLS handshake.

Each function reads and writes on a connected stream and returns when the server has agreed to
start TLS; it raises ``StartTlsRefused`` when the server answers otherwise. Line lengths are
bounded (RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; IMAP lines are cut at 8 KiB).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

MAX_LINE = 8192
MAX_LINES = 64


class StartTlsRefused(Exception):
    pass


async def _line(reader: asyncio.StreamReader) -> str:
    data = await reader.readline()
    if not data:
        raise StartTlsRefused("connection closed during the STARTTLS dialogue")
    if len(data) > MAX_LINE:
        raise StartTlsRefused("overlong line in the STARTTLS dialogue")
    return data.decode("ascii", "replace").rstrip("\r\n")


async def _smtp_reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    # RFC 5321 §4.2.1: "250-text" continues a multi-line reply, "250 text" ends it.
    lines: list[str] = []
    for _ in range(MAX_LINES):
        line = await _line(reader)
        lines.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            if not line[:3].isdigit():
                raise StartTlsRefused(f"not an SMTP reply: {line[:40]!r}")
            return int(line[:3]), lines
    raise StartTlsRefused("SMTP reply too long")


async def smtp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = ""
) -> None:
    """RFC 3207 §4: greeting, EHLO, STARTTLS, 220."""
    code, _ = await _smtp_reply(reader)
    if code != 220:
        raise StartTlsRefused(f"SMTP greeting {code}")
    writer.write(b"EHLO certyard-scanner.invalid\r\n")
    code, lines = await _smtp_reply(reader)
    if code != 250:
        raise StartTlsRefused(f"EHLO answered {code}")
    if not any(line.upper().startswith("STARTTLS") for line in lines):
        raise StartTlsRefused("SMTP server does not offer STARTTLS")
    writer.write(b"STARTTLS\r\n")
    code, _ = await _smtp_reply(reader)
    if code != 220:
        raise StartTlsRefused(f"STARTTLS answered {code}")


async def imap(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = ""
) -> None:
    """RFC 3501 §6.2.1 (and RFC 9051): untagged greeting, then ``tag STARTTLS`` → ``tag OK``."""
    greeting = await _line(reader)
    if not greeting.upper().startswith("* OK"):
        raise StartTlsRefused(f"IMAP greeting {greeting[:40]!r}")
    writer.write(b"c1 STARTTLS\r\n")
    for _ in range(MAX_LINES):
        line = await _line(reader)
        if line.startswith("c1 "):
            if line[3:].upper().startswith("OK"):
                return
            raise StartTlsRefused(f"STARTTLS answered {line[:40]!r}")
    raise StartTlsRefused("no tagged answer to STARTTLS")


async def pop3(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = ""
) -> None:
    """RFC 2595 §4: ``+OK`` greeting, ``STLS`` → ``+OK``."""
    greeting = await _line(reader)
    if not greeting.startswith("+OK"):
        raise StartTlsRefused(f"POP3 greeting {greeting[:40]!r}")
    writer.write(b"STLS\r\n")
    answer = await _line(reader)
    if not answer.startswith("+OK"):
        raise StartTlsRefused(f"STLS answered {answer[:40]!r}")


async def ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = "") -> None:
    """RFC 4217 §4: 220 greeting, ``AUTH TLS`` → 234 (FTP replies are SMTP-shaped, RFC 959)."""
    code, _ = await _smtp_reply(reader)
    if code != 220:
        raise StartTlsRefused(f"FTP greeting {code}")
    writer.write(b"AUTH TLS\r\n")
    code, _ = await _smtp_reply(reader)
    if code != 234:
        raise StartTlsRefused(f"AUTH TLS answered {code}")


# PostgreSQL protocol §55.2.10: SSLRequest is length 8 and the code 80877103.
POSTGRES_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


async def postgres(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = ""
) -> None:
    """PostgreSQL: SSLRequest, then one byte: ``S`` to go on with TLS, ``N`` for no TLS."""
    writer.write(POSTGRES_SSL_REQUEST)
    answer = await reader.readexactly(1)
    if answer != b"S":
        raise StartTlsRefused(f"SSLRequest answered {answer!r}")


# RFC 4511 §4.14.1: ExtendedRequest (messageID 1) for StartTLS, OID 1.3.6.1.4.1.1466.20037.
_LDAP_OID = b"1.3.6.1.4.1.1466.20037"
LDAP_STARTTLS = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + _LDAP_OID


async def _ber_length(reader: asyncio.StreamReader) -> int:
    first = (await reader.readexactly(1))[0]
    if first < 0x80:
        return first
    count = first & 0x7F
    if not 1 <= count <= 3:
        raise StartTlsRefused("bad BER length in the LDAP answer")
    return int.from_bytes(await reader.readexactly(count), "big")


async def ldap(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = ""
) -> None:
    """RFC 4511 §4.14.2: the ExtendedResponse must carry resultCode success (0)."""
    writer.write(LDAP_STARTTLS)
    if (await reader.readexactly(1)) != b"\x30":
        raise StartTlsRefused("not an LDAP message")
    length = await _ber_length(reader)
    if length > MAX_LINE:
        raise StartTlsRefused("LDAP answer too long")
    body = await reader.readexactly(length)
    # messageID (INTEGER), then [APPLICATION 24] ExtendedResponse whose first element is the
    # resultCode ENUMERATED.
    if len(body) < 3 or body[0] != 0x02:
        raise StartTlsRefused("malformed LDAP answer")
    rest = body[2 + body[1] :]
    if len(rest) < 2 or rest[0] != 0x78:
        raise StartTlsRefused("LDAP answer is not an ExtendedResponse")
    offset = 2 if rest[1] < 0x80 else 2 + (rest[1] & 0x7F)
    result = rest[offset : offset + 3]
    if len(result) != 3 or result[0] != 0x0A or result[1] != 1:
        raise StartTlsRefused("malformed LDAP resultCode")
    if result[2] != 0:
        raise StartTlsRefused(f"StartTLS resultCode {result[2]}")


# RFC 6120 §5.4.2: the XMPP STARTTLS negotiation, namespaces of §4.8.
_XMPP_TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
MAX_XMPP_BYTES = 64 * 1024


async def _xmpp_read_until(reader: asyncio.StreamReader, markers: tuple[str, ...]) -> str:
    """Read stream data until one of ``markers`` appears; XMPP is not line-based, so a bounded
    buffer is searched (a full XML parser is not needed for three fixed elements)."""
    buffer = ""
    while len(buffer) < MAX_XMPP_BYTES:
        chunk = await reader.read(4096)
        if not chunk:
            raise StartTlsRefused("connection closed during the XMPP STARTTLS dialogue")
        buffer += chunk.decode("utf-8", "replace")
        for marker in markers:
            if marker in buffer:
                return marker
    raise StartTlsRefused("XMPP stream features too long")


async def xmpp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str = ""
) -> None:
    """RFC 6120 §5.4.2: open a client stream to ``domain``, expect <starttls/> among the stream
    features, send <starttls/>, expect <proceed/> (a <failure/> ends it)."""
    header = (
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams'>"
    ).format(domain.replace("'", ""))
    writer.write(header.encode())
    found = await _xmpp_read_until(reader, ("</stream:features>", "<stream:error"))
    if found != "</stream:features>":
        raise StartTlsRefused("XMPP server answered with a stream error")
    writer.write(f"<starttls xmlns='{_XMPP_TLS_NS}'/>".encode())
    answer = await _xmpp_read_until(reader, ("<proceed", "<failure", "<stream:error"))
    if answer != "<proceed":
        raise StartTlsRefused(f"XMPP STARTTLS answered {answer[1:]}")


PREAMBLES: dict[
    str, Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]
] = {
    "smtp": smtp,
    "imap": imap,
    "pop3": pop3,
    "ftp": ftp,
    "postgres": postgres,
    "ldap": ldap,
    "xmpp": xmpp,
}
