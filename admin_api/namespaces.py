"""Namespaces: a team's principal (token or OIDC user bound to a namespace) sees and acts on
its own resources only.

A resource belongs to a namespace through a binding of its *subject* (storage/models_admin.py):
a certificate's subject is its ``requester`` ("acme:<account id>", "est:<label>", "cli", ...),
an ACME account's is "acme:<id>", an EST label's "est:<label>", a scan's "scan:<id>". Resources
without a subject of their own (EAB keys, API tokens, issuers) are global: a namespaced
principal does not see EAB keys or tokens at all, and sees issuers (public certificates).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, literal, select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from admin_api.auth import Principal
from admin_api.problems import Problem
from storage.models_admin import NamespaceBinding


def subjects(namespace: str) -> Select[Any]:
    return select(NamespaceBinding.subject).where(NamespaceBinding.namespace == namespace)


def subject_of(prefix: str, column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    return literal(prefix, String) + column


def restrict(
    stmt: Select[Any],
    principal: Principal,
    subject: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> Select[Any]:
    """Only the rows whose subject is bound to the principal's namespace (all when it has none)."""
    if principal.namespace is None:
        return stmt
    return stmt.where(subject.in_(subjects(principal.namespace)))


def global_only(principal: Principal) -> bool:
    """A global resource is visible to principals without a namespace only."""
    return principal.namespace is None


def require_global(principal: Principal, refusal: str) -> None:
    """403 with ``refusal`` for a namespace-bound principal: the resource spans namespaces."""
    if not global_only(principal):
        raise Problem(403, refusal)
