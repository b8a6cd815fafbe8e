"""CAA decisions (RFC 8659 §4, RFC 8657)."""

from acme_server.va.caa import CaaRecord, parse_issue_value, permits

US = ["certyard.test"]
ACCOUNT = "https://ca.test/acme/account/abc"


def decide(*records: tuple[int, str, str], wildcard: bool = False, method: str = "http-01") -> bool:
    allowed, _ = permits(
        [CaaRecord(*r) for r in records],
        wildcard=wildcard,
        identities=US,
        account_uri=ACCOUNT,
        method=method,
    )
    return allowed


def test_no_records_or_no_issue_property_permits() -> None:
    assert decide()
    assert decide((0, "iodef", "mailto:x@example.test"))


def test_issuer_must_be_us() -> None:
    assert decide((0, "issue", "certyard.test"))
    assert decide((0, "issue", "CertYard.Test."))
    assert not decide((0, "issue", "other.test"))
    assert not decide((0, "issue", ";"))
    assert decide((0, "issue", "other.test"), (0, "issue", "certyard.test"))


def test_account_and_method_bindings() -> None:
    assert decide((0, "issue", f"certyard.test; accounturi={ACCOUNT}"))
    assert not decide((0, "issue", "certyard.test; accounturi=https://ca.test/acme/account/x"))
    assert decide((0, "issue", "certyard.test; validationmethods=dns-01,http-01"))
    assert not decide((0, "issue", "certyard.test; validationmethods=dns-01"))
    assert decide((0, "issue", "certyard.test; validationmethods=dns-01"), method="dns-01")


def test_issuewild_takes_precedence_for_wildcards() -> None:
    records = [(0, "issue", "certyard.test"), (0, "issuewild", ";")]
    assert decide(*records)
    assert not decide(*records, wildcard=True)
    assert decide((0, "issue", "certyard.test"), wildcard=True)


def test_unknown_critical_property_forbids() -> None:
    assert not decide((0, "issue", "certyard.test"), (128, "futurething", "x"))
    assert decide((0, "issue", "certyard.test"), (0, "futurething", "x"))


def test_malformed_parameters_match_nothing() -> None:
    assert parse_issue_value("certyard.test; bad param") is None
    assert not decide((0, "issue", "certyard.test; bad param"))
