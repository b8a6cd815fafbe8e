"""From a matched log entry to a ``ct_matches`` row and, for an unknown issuance, an alert.

A match is ``ct_unknown_issuance`` when certyard did not issue the certificate (its recorded
TBS hash or serial + issuer, see ``CTStore.issued_by_certyard``) and its issuer is not on the
``ct.authorized_issuers`` allow list; otherwise it is recorded quietly (no alert).

Allow list entries (docs/ct.md "Configuration keys"):

* an issuer distinguished name in RFC 4514 text, e.g. ``CN=R11,O=Let's Encrypt,C=US``, compared
  after parsing both sides (so spacing and attribute-name case do not matter);
* ``sha256:<64 hex>``: SHA-256 of the issuer's DER SubjectPublicKeyInfo, as in a precert leaf's
  ``issuer_key_hash`` (RFC 6962 §3.2) or the first certificate of the entry's chain. This one
  survives a CA renaming its intermediate, and cannot be imitated by a rogue CA choosing a name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from ct_monitor.certinfo import EntryInfo
from ct_monitor.state import CTStore, MatchRecord
from ct_monitor.watchlist import MatchResult
from notify.events import Notification
from storage.models_ct import CTMatch

UNKNOWN_ISSUANCE = "ct_unknown_issuance"
LOG_MISBEHAVIOUR = "ct_log_misbehaviour"
_SPKI_HASH = re.compile(r"sha256:([0-9a-fA-F]{64})")
_RDN_SPLIT = re.compile(r"(?<!\\),")  # RDNs split at commas not escaped (RFC 4514 §2.4)


class AllowListError(ValueError):
    """An ``authorized_issuers`` entry that is neither a DN nor ``sha256:<hex>``."""


def _canonical_dn(text: str) -> str:
    """RFC 4514 text -> one comparable form. cryptography's parser wants upper-case attribute
    types and no spaces around ``,`` and ``=``; people write ``CN=R11, O=Let's Encrypt``."""
    parts = []
    for rdn in _RDN_SPLIT.split(text.strip()):
        attr, sep, value = rdn.partition("=")
        if not sep or not attr.strip():
            raise ValueError(f"{rdn!r} is not TYPE=value")
        parts.append(f"{attr.strip().upper()}={value.strip()}")
    return x509.Name.from_rfc4514_string(",".join(parts)).rfc4514_string().casefold()


@dataclass(frozen=True)
class AllowList:
    dns: frozenset[str]
    spki_hashes: frozenset[str]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AllowList:
        dns: set[str] = set()
        hashes: set[str] = set()
        for entry in entries:
            m = _SPKI_HASH.fullmatch(entry.strip())
            if m:
                hashes.add(m.group(1).lower())
                continue
            try:
                dns.add(_canonical_dn(entry.strip()))
            except ValueError as exc:
                raise AllowListError(
                    f"ct.authorized_issuers: {entry!r} is neither an RFC 4514 DN nor "
                    f"sha256:<hex of the issuer SPKI> ({exc})"
                ) from None
        return cls(frozenset(dns), frozenset(hashes))

    def allows(self, info: EntryInfo) -> bool:
        if info.issuer_spki_sha256 and info.issuer_spki_sha256 in self.spki_hashes:
            return True
        if not info.issuer or not self.dns:
            return False
        try:
            return _canonical_dn(info.issuer) in self.dns
        except ValueError:
            return False


async def classify(
    store: CTStore, allow: AllowList, info: EntryInfo, match: MatchResult
) -> str | None:
    """The finding for a matched entry: None (ours or authorized) or ct_unknown_issuance."""
    if await store.issued_by_certyard(info.tbs_sha256, info.serial_hex, info.issuer):
        return None
    if allow.allows(info):
        return None
    return UNKNOWN_ISSUANCE


def match_record(
    log_url: str, index: int, info: EntryInfo, match: MatchResult, finding: str | None
) -> MatchRecord:
    return MatchRecord(
        log_url=log_url,
        entry_index=index,
        entry_type=info.entry_type,
        names=[n if isinstance(n, str) else "<unparsable>" for n in info.names],
        issuer=info.issuer,
        not_before=info.not_before,
        not_after=info.not_after,
        tbs_sha256=info.tbs_sha256,
        cert_sha256=info.cert_sha256,
        der=info.der,
        finding=finding,
        serial=info.serial_hex,
        notes=[*info.notes, *match.notes],
    )


def unknown_issuance_alert(row: CTMatch) -> Notification:
    """One alert per issuance: the idempotency key is the TBS hash, the same for the
    precertificate and the final certificate (RFC 6962 §3.1)."""
    names = ", ".join(row.names[:5]) + (f" (+{len(row.names) - 5})" if len(row.names) > 5 else "")
    return Notification(
        kind=UNKNOWN_ISSUANCE,
        severity="high",
        subject=f"Certificate not issued by certyard for {names} (issuer {row.issuer or '?'})",
        idempotency_key=f"ct:{row.tbs_sha256}",
        details={
            "log_url": row.log_url,
            "index": row.entry_index,
            "entry_type": row.entry_type,
            "names": list(row.names),
            "issuer": row.issuer,
            "serial": row.serial,
            "not_before": row.not_before.isoformat() if row.not_before else None,
            "not_after": row.not_after.isoformat() if row.not_after else None,
            "tbs_sha256": row.tbs_sha256,
            "cert_sha256": row.cert_sha256,
            "notes": list(row.notes or []),
        },
    )


def misbehaviour_alert(
    log_url: str, detail: str, sizes: Sequence[int], evidence: dict[str, object]
) -> Notification:
    """RFC 6962 §5.3 / RFC 9162 §8.3: a log that cannot prove its tree is append-only."""
    size_text = " -> ".join(str(s) for s in sizes) or "?"
    return Notification(
        kind=LOG_MISBEHAVIOUR,
        severity="high",
        subject=f"CT log {log_url} misbehaved at tree size {size_text}: {detail}",
        idempotency_key=f"ct-log:{log_url}:{size_text}:{evidence.get('signed_root', '')}",
        details={"log_url": log_url, "sizes": list(sizes), "detail": detail, **evidence},
    )
