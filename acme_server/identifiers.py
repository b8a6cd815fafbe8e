"""Identifier checks for newOrder (RFC 8555 §7.1.3, §7.1.4; RFC 5280 §4.2.1.6 for names)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from acme_server.errors import AcmeError, Subproblem
from acme_server.messages import IdentifierPayload

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, order=True)
class Identifier:
    type: str
    value: str  # as in the order: "*.example.com" keeps its wildcard

    @property
    def wildcard(self) -> bool:
        return self.type == "dns" and self.value.startswith("*.")

    @property
    def base_value(self) -> str:
        """The value an authorization is for (RFC 8555 §7.1.4: without the "*.")."""
        return self.value[2:] if self.wildcard else self.value

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


def _dns_name_problem(name: str) -> str | None:
    if len(name) > 253:
        return "name is longer than 253 characters"
    base = name[2:] if name.startswith("*.") else name
    if "*" in base:
        return "a wildcard may only be the whole leftmost label"
    labels = base.split(".")
    if len(labels) < 2:
        return "name must have at least two labels"
    for label in labels:
        if not _LABEL.match(label):
            return f"label {label[:63]!r} is not a valid DNS label"
    if labels[-1].isdigit():
        return "the last label must not be all digits"
    try:
        ipaddress.ip_address(base)
    except ValueError:
        return None
    return "an IP address is not a dns identifier"


def parse_identifiers(items: list[IdentifierPayload], limit: int) -> list[Identifier]:
    """Normalise and check the identifiers; every bad one is a subproblem of one error."""
    if len(items) > limit:
        raise AcmeError("rejectedIdentifier", f"an order may name at most {limit} identifiers")
    problems: list[Subproblem] = []
    result: set[Identifier] = set()
    for item in items:
        if item.type == "ip":
            # RFC 8738 §3: an IPv4 dotted quad or an RFC 5952 IPv6 text form; we store the
            # canonical form so the CSR comparison and authorization reuse see one spelling.
            try:
                address = ipaddress.ip_address(item.value.strip())
            except ValueError:
                problems.append(
                    Subproblem(
                        "malformed",
                        "not an IP address",
                        {"type": "ip", "value": item.value[:255]},
                    )
                )
                continue
            result.add(Identifier("ip", str(address)))
            continue
        if item.type != "dns":
            problems.append(
                Subproblem(
                    "unsupportedIdentifier",
                    f"identifier type {item.type[:20]!r} is not supported",
                    {"type": item.type[:20], "value": item.value[:255]},
                )
            )
            continue
        value = item.value.strip().lower().rstrip(".")
        problem = _dns_name_problem(value)
        if problem is not None:
            problems.append(
                Subproblem(
                    "rejectedIdentifier", problem, {"type": "dns", "value": item.value[:255]}
                )
            )
            continue
        result.add(Identifier("dns", value))
    if problems:
        kinds = {p.type for p in problems}
        top = kinds.pop() if len(kinds) == 1 else "compound"
        if len(problems) == 1:
            only = problems[0]
            raise AcmeError(
                top,
                f"{only.identifier and only.identifier['value']}: {only.detail}",
                subproblems=problems,
            )
        raise AcmeError(
            top, "some identifiers are not acceptable (see subproblems)", subproblems=problems
        )
    return sorted(result)
