"""CAA checking (RFC 8659) with the account and method bindings of RFC 8657.

Before issuing for a name the CA looks for the closest CAA record set on the name or an
ancestor (RFC 8659 §3, "climbing the tree"). The set permits issuance when it has no issue /
issuewild property that applies, or when one names one of our identities (``acme.
caa_identities``) with an ``accounturi`` equal to the requesting account (if given) and a
``validationmethods`` list holding the method used (if given). A lookup that fails or is
truncated even over TCP refuses issuance: RFC 8659 §3 lets a CA treat that as permission only
under conditions we cannot verify, so we fail closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.name
import dns.rdatatype
import dns.resolver

from acme_server.errors import AcmeError
from acme_server.va.policy import ValidationConfig, ValidationFailure, make_resolver

# RFC 8659 §4.1: bit 0 of the flags octet (128) is the critical flag.
_CRITICAL = 128
_KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "issuemail", "issuevmc"})


@dataclass(frozen=True)
class CaaRecord:
    flags: int
    tag: str
    value: str


@dataclass(frozen=True)
class IssueValue:
    issuer: str  # "" means "no CA may issue" (RFC 8659 §4.2)
    parameters: dict[str, str]


def parse_issue_value(value: str) -> IssueValue | None:
    """RFC 8659 §4.2 issue-value: ``[issuer-domain-name] *(";" parameter)``; None if malformed
    (a malformed property matches nothing, which refuses issuance if nothing else permits)."""
    parts = value.split(";")
    issuer = parts[0].strip().lower().rstrip(".")
    parameters: dict[str, str] = {}
    for part in parts[1:]:
        part = part.strip()
        if not part:
            continue
        key, eq, val = part.partition("=")
        if not eq or not key.strip().isalnum():
            return None
        parameters[key.strip().lower()] = val.strip()
    return IssueValue(issuer, parameters)


def permits(
    records: Iterable[CaaRecord],
    *,
    wildcard: bool,
    identities: Iterable[str],
    account_uri: str,
    method: str,
) -> tuple[bool, str]:
    """Decide from the relevant record set; returns (allowed, reason)."""
    records = list(records)
    for record in records:
        if record.flags & _CRITICAL and record.tag.lower() not in _KNOWN_TAGS:
            # RFC 8659 §4.1: an unknown critical property forbids issuance.
            return False, f"unknown critical CAA property {record.tag!r}"
    tag = "issue"
    if wildcard and any(r.tag.lower() == "issuewild" for r in records):
        tag = "issuewild"  # RFC 8659 §4.3: issuewild takes precedence for wildcards
    relevant = [r for r in records if r.tag.lower() == tag]
    if not relevant:
        return True, "no CAA issue property applies"
    ours = {identity.lower().rstrip(".") for identity in identities}
    for record in relevant:
        parsed = parse_issue_value(record.value)
        if parsed is None or parsed.issuer == "" or parsed.issuer not in ours:
            continue
        # RFC 8657 §3: accounturi binds to one account, validationmethods to some methods.
        uri = parsed.parameters.get("accounturi")
        if uri is not None and uri != account_uri:
            continue
        methods = parsed.parameters.get("validationmethods")
        if methods is not None and method not in [m.strip() for m in methods.split(",")]:
            continue
        return True, f"CAA {tag} record permits {record.value!r}"
    return False, f"CAA {tag} records do not authorize this CA, account or method"


async def relevant_records(domain: str, config: ValidationConfig) -> list[CaaRecord]:
    """The closest non-empty CAA record set at or above ``domain`` (RFC 8659 §3)."""
    resolver = make_resolver(config)
    name = dns.name.from_text(domain)
    while name != dns.name.root and len(name.labels) > 1:
        try:
            answer = await resolver.resolve(name, "CAA", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            answer = None
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException):
            raise ValidationFailure(
                AcmeError(
                    "caa",
                    f"CAA lookup for {name.to_text(omit_final_dot=True)} failed; "
                    "issuance refused (RFC 8659 §3)",
                ),
                [],
            ) from None
        if answer is not None and answer.response.flags & dns.flags.TC:
            raise ValidationFailure(
                AcmeError(
                    "caa",
                    f"CAA answer for {name.to_text(omit_final_dot=True)} was "
                    "truncated; issuance refused",
                ),
                [],
            )
        rrset = answer.rrset if answer is not None else None
        if rrset is not None and rrset.rdtype == dns.rdatatype.CAA and len(rrset):
            return [
                CaaRecord(
                    int(r.flags),
                    r.tag.decode("ascii", "replace"),
                    r.value.decode("utf-8", "replace"),
                )
                for r in rrset
            ]
        name = name.parent()
    return []


async def check_caa(
    domain: str,
    *,
    wildcard: bool,
    identities: Iterable[str],
    account_uri: str,
    method: str,
    config: ValidationConfig,
) -> None:
    """Raise ValidationFailure(caa) unless CAA lets this CA issue for ``domain`` now."""
    records = await relevant_records(domain, config)
    allowed, reason = permits(
        records, wildcard=wildcard, identities=identities, account_uri=account_uri, method=method
    )
    if not allowed:
        shown = f"*.{domain}" if wildcard else domain
        raise ValidationFailure(AcmeError("caa", f"{shown}: {reason}"), [])
