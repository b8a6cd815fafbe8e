"""Which certificate names a watch list matches (pure functions, no I/O).

A watch entry is either an exact DNS name (``www.example.com``) or, with a leading dot, a domain
and all its subdomains (``.example.com`` matches ``example.com`` and ``a.b.example.com``), the
syntax of certspotter's watch list.

Names are compared label by label in their A-label form (RFC 5890 §2.3.2.1), lower case, without
a trailing dot. Watch entries may be written in Unicode: they are mapped with UTS #46
(non-transitional) through the ``idna`` package, which implements IDNA 2008 + UTS #46; the
standard library's ``encodings.idna`` only knows IDNA 2003 and would map e.g. ``ß`` to ``ss``.

Certificate names are matched fail-safe, as certspotter does: a name in a certificate is attacker
controlled, and a name we cannot understand must not hide a certificate for our domain.

* A wildcard label in a certificate name (``*`` or a partial wildcard such as ``w*``, RFC 6125
  §6.4.3) matches any watched label it could stand for: ``*.example.com`` in a certificate
  matches the watched ``www.example.com`` and ``.example.com``.
* A label that cannot be parsed (empty, bytes outside LDH/underscore, non-ASCII that UTS #46
  rejects) or the redaction placeholder ``?`` matches any label, and the match carries a note.
* A name that cannot be parsed at all (not a string, empty) matches every watch entry, with a
  note.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import idna

IDNA_IMPLEMENTATION = f"idna {idna.__version__} (UTS #46, non-transitional)"

# RFC 1035 §2.3.1 letters, digits, hyphen; underscore appears in real names (_dmarc, SRV-style).
_LDH = re.compile(r"[a-z0-9_-]+")
_WILDCARD_LABEL = re.compile(r"[a-z0-9_*-]+")
MAX_NAME_LENGTH = 253  # RFC 1035 §2.3.4 (without the trailing dot)


class WatchListError(ValueError):
    """A watch entry that is not a DNS name (the message says why)."""


@dataclass(frozen=True, slots=True)
class WatchItem:
    """One watch entry: ``labels`` in A-label form, most significant last as written."""

    labels: tuple[str, ...]
    subtree: bool

    @property
    def pattern(self) -> str:
        """The canonical text: ``.example.com`` for a subtree, ``example.com`` for a name."""
        return ("." if self.subtree else "") + ".".join(self.labels)


@dataclass(frozen=True, slots=True)
class CertName:
    """A DNS name from a certificate, normalised.

    ``labels``: A-label form; ``None`` for a label that could not be parsed (matches anything).
    ``unparsable``: the whole name could not be parsed; it matches every watch entry.
    """

    text: str
    labels: tuple[str | None, ...]
    unparsable: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The certificate names that matched, the watch entries they matched, and any fail-safe
    notes (why an unparsable name or label was reported)."""

    names: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _to_a_label(label: str) -> str:
    """UTS #46 mapping + IDNA 2008 encoding of one non-ASCII label (raises idna.IDNAError)."""
    return idna.encode(label, uts46=True, transitional=False).decode("ascii")


def parse_watch_item(text: str) -> WatchItem:
    """Parse a watch entry (``example.com``, ``.example.com``, Unicode allowed).

    Raises WatchListError with a precise reason. A watch entry is ours, so it is strict: no
    wildcards, no empty labels.
    """
    raw = text.strip()
    subtree = raw.startswith(".")
    name = raw[1:] if subtree else raw
    if name.endswith("."):
        name = name[:-1]  # the absolute form "example.com." is the same name
    if not name:
        raise WatchListError(f"{text!r}: empty name")
    labels: list[str] = []
    for label in name.split("."):
        if not label:
            raise WatchListError(f"{text!r}: empty label")
        if "*" in label:
            raise WatchListError(
                f"{text!r}: wildcards are not watch entries; use .{name.split('.', 1)[-1]}"
            )
        if label.isascii():
            lowered = label.lower()
            if not _LDH.fullmatch(lowered):
                raise WatchListError(
                    f"{text!r}: label {label!r} has characters outside a-z 0-9 - _"
                )
            labels.append(lowered)
            continue
        try:
            labels.append(_to_a_label(label))
        except idna.IDNAError as exc:
            raise WatchListError(f"{text!r}: label {label!r} is not a valid IDN: {exc}") from None
    result = WatchItem(tuple(labels), subtree)
    if len(".".join(result.labels)) > MAX_NAME_LENGTH:
        raise WatchListError(f"{text!r}: longer than {MAX_NAME_LENGTH} characters")
    if any(len(label) > 63 for label in result.labels):
        raise WatchListError(f"{text!r}: a label is longer than 63 characters (RFC 1035 §2.3.4)")
    return result


def parse_watch_list(lines: Iterable[str]) -> list[WatchItem]:
    """Parse a watch list file: one entry a line, ``#`` comments and blank lines ignored."""
    items: list[WatchItem] = []
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            try:
                items.append(parse_watch_item(entry))
            except WatchListError as exc:
                raise WatchListError(f"line {number}: {exc}") from None
    return items


def normalize_cert_name(value: object) -> CertName:
    """Normalise a DNS name found in a certificate (SAN dNSName or subject CN), fail-safe."""
    if not isinstance(value, str):
        return CertName(repr(value), (), unparsable=True, note="name is not text")
    text = value.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        return CertName(value, (), unparsable=True, note="empty name")
    labels: list[str | None] = []
    notes: list[str] = []
    for label in text.split("."):
        if label == "?":  # redacted label (draft-ietf-trans-rfc6962-bis-redaction): may be ours
            labels.append(None)
            notes.append("redacted label")
            continue
        if label.isascii():
            lowered = label.lower()
            if lowered and _WILDCARD_LABEL.fullmatch(lowered):
                labels.append(lowered)
                continue
        else:
            try:
                # dNSName is an IA5String (RFC 5280 §4.2.1.6): Unicode is a mis-issuance, but
                # it may still be a name of ours; map it as a browser would.
                labels.append(_to_a_label(label))
                notes.append(f"non-ASCII label {label!r} mapped with UTS #46")
                continue
            except idna.IDNAError:
                pass
        labels.append(None)
        notes.append(f"unparsable label {label!r}")
    return CertName(value, tuple(labels), note="; ".join(notes))


def _label_matches(cert_label: str | None, watch_label: str) -> bool:
    if cert_label is None:
        return True  # fail-safe: an unparsable or redacted label might be this one
    if "*" in cert_label:
        # RFC 6125 §6.4.3 wildcard (full or partial label); fnmatchcase has no special meaning
        # for LDH characters, only for * ? [ which _WILDCARD_LABEL keeps out except '*'.
        return fnmatch.fnmatchcase(watch_label, cert_label)
    return cert_label == watch_label


def name_matches(name: CertName, item: WatchItem) -> bool:
    """Does the certificate name ``name`` fall under ``item``? Compared from the right."""
    if name.unparsable:
        return True
    cert = list(name.labels)
    watch = list(item.labels)
    while cert and watch:
        if not _label_matches(cert.pop(), watch.pop()):
            return False
    # Every watched label matched; for an exact entry the certificate name must end here too.
    return not watch and (item.subtree or not cert)


def match_names(names: Sequence[object], items: Sequence[WatchItem]) -> MatchResult | None:
    """The names of one certificate against the watch list; None when nothing matches."""
    result = MatchResult()
    for value in names:
        name = normalize_cert_name(value)
        hits = [item.pattern for item in items if name_matches(name, item)]
        if not hits:
            continue
        if name.text not in result.names:
            result.names.append(name.text)
        for pattern in hits:
            if pattern not in result.patterns:
                result.patterns.append(pattern)
        if name.unparsable:
            result.notes.append(f"{name.text}: {name.note} (fail-safe: matches every entry)")
        elif name.note:
            result.notes.append(f"{name.text}: {name.note}")
    if not result.names:
        return None
    return result
