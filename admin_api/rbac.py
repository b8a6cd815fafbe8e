"""Roles and the permissions they grant: the one table authorization is decided from.

Every route declares the one permission it needs (admin_api/registry.py); a principal may call it
when its role grants that permission and, for a token with scopes, the scopes name it too.
"""

from __future__ import annotations

from typing import Final

from admin_api.config import ROLES

PERMISSIONS: Final[dict[str, str]] = {
    "certificates:read": "search, read and export issued certificates",
    "certificates:revoke": "revoke issued certificates",
    "scans:read": "read scans, endpoints, findings and reports",
    "scans:manage": "start and cancel scans",
    "acme:read": "read ACME accounts and EAB keys",
    "eab:manage": "create and revoke EAB keys",
    "est:read": "read EST users and pending enrollments",
    "est:manage": "add and remove EST users",
    "est:approve": "approve or reject pending EST enrollments",
    "issuers:read": "read issuers and the CA status",
    "tokens:read": "list API tokens (never their values)",
    "tokens:manage": "create and revoke API tokens",
    "namespaces:manage": "bind certificate requesters and scans to namespaces",
    "audit:read": "read the audit trail",
    "ct:read": "read the CT watch list, matches and per-log status",
    "ct:manage": "add and remove CT watch list entries",
    "renewal:read": "read the renewal queue, policies and run history",
    "renewal:run": "run a renewal pass (or a dry run)",
    "deploy:read": "read deployment targets and their run history",
}

_VIEWER = frozenset(
    {
        "certificates:read",
        "scans:read",
        "acme:read",
        "est:read",
        "issuers:read",
        "ct:read",
        "renewal:read",
        "deploy:read",
    }
)
# The auditor reads everything (the audit trail and who holds which token) and changes nothing.
_AUDITOR = _VIEWER | {"audit:read", "tokens:read"}
# The operator runs the PKI day to day; tokens and namespaces stay with the admin.
_OPERATOR = _VIEWER | {
    "certificates:revoke",
    "scans:manage",
    "eab:manage",
    "est:manage",
    "est:approve",
    "ct:manage",
    "renewal:run",
}

ROLE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset(PERMISSIONS),
    "operator": frozenset(_OPERATOR),
    "auditor": frozenset(_AUDITOR),
    "viewer": _VIEWER,
}
assert set(ROLE_PERMISSIONS) == set(ROLES)
assert all(perms <= set(PERMISSIONS) for perms in ROLE_PERMISSIONS.values())


def allowed(role: str, scopes: tuple[str, ...], permission: str) -> bool:
    if permission not in ROLE_PERMISSIONS.get(role, frozenset()):
        return False
    return not scopes or permission in scopes
