"""Roles, scopes, token lifetimes, cursors and the OIDC settings checks."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from admin_api import tokens
from admin_api.config import AdminSettings, OidcSettings
from admin_api.pagination import _cell, _decode, _encode
from admin_api.problems import Problem
from admin_api.rbac import PERMISSIONS, ROLE_PERMISSIONS, allowed


def test_role_table() -> None:
    viewer, auditor = ROLE_PERMISSIONS["viewer"], ROLE_PERMISSIONS["auditor"]
    operator, admin = ROLE_PERMISSIONS["operator"], ROLE_PERMISSIONS["admin"]
    assert admin == set(PERMISSIONS)
    assert viewer < auditor and viewer < operator < admin
    writes = {p for p in PERMISSIONS if not p.endswith(":read")}
    assert not (viewer | auditor) & writes
    assert "audit:read" in auditor and "audit:read" not in operator
    assert "tokens:manage" not in operator


def test_scopes_narrow_a_role_never_widen_it() -> None:
    assert allowed("operator", (), "certificates:revoke")
    assert not allowed("operator", ("certificates:read",), "certificates:revoke")
    assert not allowed("viewer", ("certificates:revoke",), "certificates:revoke")
    assert not allowed("nobody", (), "certificates:read")


def test_lifetimes_and_namespaces() -> None:
    assert tokens.parse_lifetime("30d") == dt.timedelta(days=30)
    assert tokens.parse_lifetime("12h") == dt.timedelta(hours=12)
    for bad in ("", "0d", "30", "d", "3w", "-1d"):
        with pytest.raises(tokens.TokenError):
            tokens.parse_lifetime(bad)
    tokens.check_namespace("team-a")
    for bad in ("", "Team", "-x", "a" * 65, "a b"):
        with pytest.raises(tokens.TokenError):
            tokens.check_namespace(bad)
    assert tokens.digest("cyt_x") == tokens.digest("cyt_x") != tokens.digest("cyt_y")


def test_cursor_round_trip_and_tampering() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cursor = _encode("-not_after", when, "abc")
    assert _decode(cursor, "-not_after") == (when, "abc")
    for bad, sort in ((cursor, "not_after"), ("AAAA", "-not_after"), ("!!", "-not_after")):
        with pytest.raises(Problem) as caught:
            _decode(bad, sort)
        assert caught.value.status == 400


def test_oidc_settings_refuse_symmetric_algorithms_and_unknown_roles() -> None:
    with pytest.raises(ValidationError, match="HS256"):
        OidcSettings(algorithms=["HS256"])
    with pytest.raises(ValidationError, match="emperor"):
        OidcSettings(role_map={"g": "emperor"})
    with pytest.raises(ValidationError):
        AdminSettings(listen="nowhere")
    assert AdminSettings().listen == "127.0.0.1:9443" and AdminSettings().tls is False


def test_csv_cells_never_start_a_formula() -> None:
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("+1") == "'+1" and _cell("@SUM(A1)") == "'@SUM(A1)"
    assert _cell("-2+3") == "'-2+3"
    assert _cell("-k69wnpTXdB5btdX76wi4Q") == "-k69wnpTXdB5btdX76wi4Q"  # a random id
    assert _cell(["a.test", "b.test"]) == "a.test b.test" and _cell(None) == ""
