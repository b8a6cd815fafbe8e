"""What the monitor needs to know about one log entry's certificate (parsed with cryptography).

Parsing is fail-safe: a certificate or extension that does not parse still yields an entry whose
names contain ``None`` (an unparsable name that ``watchlist.match_names`` matches against every
watch entry), so a malformed certificate for a watched domain is reported, not dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ct_monitor.tbs import (
    TBSError,
    tbs_sha256_of_certificate,
    tbs_sha256_of_tbs,
    wrap_tbs,
)
from ct_monitor.types import LogEntry


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One log entry's certificate: ``names`` may hold ``None`` for what could not be parsed."""

    entry_type: str
    names: list[str | None]
    issuer: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    serial_hex: str | None
    tbs_sha256: str
    cert_sha256: str | None  # final certificates only
    der: bytes | None  # final certificate, or precertificate when the log gave it
    issuer_spki_sha256: str | None
    notes: list[str] = field(default_factory=list)


def _names(cert: x509.Certificate, notes: list[str]) -> list[str | None]:
    names: list[str | None] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names.extend(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    except ValueError as exc:  # a malformed extension: fail-safe
        names.append(None)
        notes.append(f"unparsable extensions: {exc}")
    try:
        # Subject CN: still how some clients read a name (RFC 6125 §6.4.4); a CN that does
        # not look like a DNS name simply never matches.
        for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attr.value
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            if "." in text and " " not in text and text not in names:
                names.append(text)
    except ValueError as exc:
        names.append(None)
        notes.append(f"unparsable subject: {exc}")
    return names


def _serial_hex(serial: int) -> str | None:
    if serial <= 0:
        return None
    digits = format(serial, "x")
    return digits if len(digits) % 2 == 0 else "0" + digits


def _issuer_spki_sha256(entry: LogEntry) -> str | None:
    if entry.issuer_key_hash:
        return entry.issuer_key_hash.hex()
    if not entry.chain_der:
        return None
    try:
        issuer = x509.load_der_x509_certificate(entry.chain_der[0])
        spki = issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError):
        return None
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """First, cheap phase: the certificate object (None if unparsable) and its names."""

    cert: x509.Certificate | None
    names: list[str | None]
    tbs_sha256: str  # only set when parsing failed (the fallback identity)
    notes: list[str]


def parse_entry(entry: LogEntry) -> ParsedEntry:
    """Parse a log entry's names. x509: the certificate; precert: the leaf's TBS (RFC 6962
    §3.2). ``tbs_sha256`` is left empty (computed by ``entry_info`` for matches only) unless
    parsing failed, in which case it is the fallback identity."""
    notes: list[str] = []
    parse_error = getattr(entry, "parse_error", "")
    if parse_error:
        # The log leaf itself did not parse: fail-safe, it may be a certificate of ours.
        return ParsedEntry(
            None, [None], entry.leaf_hash.hex(), [f"unparsable log entry: {parse_error}"]
        )
    source = entry.tbs_der if entry.entry_type == "precert" else entry.cert_der
    try:
        cert = _load(entry)
    except (TBSError, ValueError) as exc:
        # Identify the issuance by the leaf bytes themselves.
        fallback = hashlib.sha256(source).hexdigest()
        return ParsedEntry(None, [None], fallback, [f"unparsable certificate: {exc}"])
    names = _names(cert, notes)
    return ParsedEntry(cert, names, "", notes)


def _load(entry: LogEntry) -> x509.Certificate:
    """The certificate (x509) or the leaf TBS wrapped as one (precert); ValueError/TBSError."""
    if entry.entry_type == "precert":
        return x509.load_der_x509_certificate(wrap_tbs(entry.tbs_der))
    return x509.load_der_x509_certificate(entry.cert_der)


def _tbs_sha256(entry: LogEntry, parsed: ParsedEntry) -> tuple[str, list[str]]:
    if parsed.tbs_sha256:
        return parsed.tbs_sha256, []
    try:
        if entry.entry_type == "precert":
            return tbs_sha256_of_tbs(entry.tbs_der), []
        return tbs_sha256_of_certificate(entry.cert_der), []
    except TBSError as exc:
        source = entry.tbs_der if entry.entry_type == "precert" else entry.cert_der
        return hashlib.sha256(source).hexdigest(), [f"TBS not walkable: {exc}"]


def entry_info(entry: LogEntry, parsed: ParsedEntry | None = None) -> EntryInfo:
    """Second phase, for matched entries only: issuer, validity, serial, hashes."""
    parsed = parsed or parse_entry(entry)
    if entry.entry_type == "precert":
        der: bytes | None = entry.cert_der or None
        cert_sha256 = None
    else:
        der = entry.cert_der or None
        cert_sha256 = hashlib.sha256(entry.cert_der).hexdigest() if entry.cert_der else None
    cert = parsed.cert
    tbs_sha256, tbs_notes = _tbs_sha256(entry, parsed)
    issuer = ""
    if cert is not None:
        try:
            issuer = cert.issuer.rfc4514_string()
        except ValueError:
            issuer = ""
    return EntryInfo(
        entry_type=entry.entry_type,
        names=parsed.names,
        issuer=issuer,
        not_before=cert.not_valid_before_utc if cert is not None else None,
        not_after=cert.not_valid_after_utc if cert is not None else None,
        serial_hex=_serial_hex(cert.serial_number) if cert is not None else None,
        tbs_sha256=tbs_sha256,
        cert_sha256=cert_sha256,
        der=der,
        issuer_spki_sha256=_issuer_spki_sha256(entry),
        notes=[*parsed.notes, *tbs_notes],
    )
