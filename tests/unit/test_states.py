"""Order and authorization status rules (RFC 8555 §7.1.6)."""

import datetime as dt

import pytest

from acme_server.states import authz_status, challenge_types, order_status

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)
EARLIER = NOW - dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("stored", "expires", "expected"),
    [
        ("pending", LATER, "pending"),
        ("valid", LATER, "valid"),
        ("pending", EARLIER, "expired"),
        ("valid", EARLIER, "expired"),
        ("invalid", EARLIER, "invalid"),
        ("deactivated", EARLIER, "deactivated"),
    ],
)
def test_authz_status(stored: str, expires: dt.datetime, expected: str) -> None:
    assert authz_status(stored, expires, NOW) == expected


@pytest.mark.parametrize(
    ("stored", "expires", "authzs", "expected"),
    [
        ("pending", LATER, ["pending", "valid"], "pending"),
        ("pending", LATER, ["valid", "valid"], "ready"),
        ("pending", LATER, ["valid", "invalid"], "invalid"),
        ("pending", LATER, ["valid", "deactivated"], "invalid"),
        ("pending", LATER, ["expired"], "invalid"),
        ("ready", LATER, ["valid"], "ready"),
        ("ready", EARLIER, ["valid"], "invalid"),
        ("pending", EARLIER, ["pending"], "invalid"),
        ("processing", EARLIER, ["valid"], "processing"),
        ("valid", EARLIER, ["expired"], "valid"),
        ("invalid", LATER, ["valid"], "invalid"),
    ],
)
def test_order_status(stored: str, expires: dt.datetime, authzs: list[str], expected: str) -> None:
    assert order_status(stored, expires, authzs, NOW) == expected


def test_wildcards_only_get_dns01() -> None:
    assert challenge_types(True) == ("dns-01",)
    assert set(challenge_types(False)) == {"http-01", "dns-01", "tls-alpn-01"}


def test_dns_account_01_and_ip_challenge_types() -> None:
    assert challenge_types(False, "ip") == ("http-01", "tls-alpn-01")
    assert challenge_types(True, dns_account=True) == ("dns-01", "dns-account-01")
    assert "dns-account-01" in challenge_types(False, dns_account=True)


def test_account_label_matches_the_draft_example() -> None:
    from acme_server.va.dns01 import account_label

    # draft-ietf-acme-dns-account-label: https://example.com/acme/acct/ExampleAccount
    assert account_label("https://example.com/acme/acct/ExampleAccount") == "_ujmmovf2vn55tgye"
