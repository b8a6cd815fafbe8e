"""renewal.queue and renewal.policy: states, ranking and policy matching, without a database."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from renewal.config import PolicyConfig, PolicyMatch, RenewalSettings
from renewal.inventory import InventoryItem
from renewal.policy import Policy, matches, policies_from_settings, select_policy
from renewal.queue import assess, build_queue

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def item(
    key: str,
    *,
    age_days: float = 10,
    lifetime_days: float = 90,
    names: tuple[str, ...] = ("www.example.com",),
    sources: tuple[str, ...] = ("scan",),
    findings: tuple[str, ...] = (),
    endpoints: int = 1,
    **kw: object,
) -> InventoryItem:
    not_before = NOW - age_days * DAY
    it = InventoryItem(
        key=key,
        names=list(names),
        not_before=not_before,
        not_after=not_before + lifetime_days * DAY,
        sources=set(sources),
        findings=set(findings),
        endpoints={f"192.0.2.{i}:443" for i in range(endpoints)},
    )
    for name, value in kw.items():
        setattr(it, name, value)
    return it


DEFAULTS = policies_from_settings(RenewalSettings())


def test_expired_and_weak_key_rank_before_healthy() -> None:
    healthy = item("healthy", age_days=5)
    expired = item("expired", age_days=100)
    weak = item("weak", age_days=5, findings=("weak_key",))
    queue = build_queue([healthy, expired, weak], DEFAULTS, NOW)
    assert [e.item.key for e in queue][-1] == "healthy"
    assert {e.item.key for e in queue[:2]} == {"expired", "weak"}
    states = {e.item.key: e.state for e in queue}
    assert states == {"healthy": "healthy", "expired": "expired", "weak": "at-risk"}
    assert not queue[-1].needs_action and queue[0].needs_action and queue[1].needs_action


def test_states() -> None:
    policy = DEFAULTS[-1]
    assert assess(item("a", age_days=10), policy, NOW).state == "healthy"
    # Default policy: due at two thirds of the lifetime (60 of 90 days).
    assert assess(item("b", age_days=59), policy, NOW).state == "healthy"
    assert assess(item("c", age_days=61), policy, NOW).state == "renew-due"
    assert assess(item("d", age_days=91), policy, NOW).state == "expired"
    assert assess(item("e", revoked=True), policy, NOW).state == "revoked"
    assert assess(item("f", findings=("sha1_signature",)), policy, NOW).state == "at-risk"
    assert assess(item("g", findings=("ct_unknown_issuance",)), policy, NOW).state == "at-risk"
    # Expiry codes from the scanner are counted by the expiry part only, not as at-risk.
    assert assess(item("h", findings=("expiring_soon",)), policy, NOW).state == "healthy"
    marked = assess(item("i"), policy, NOW, operator_mark="key on a stolen laptop")
    assert marked.state == "at-risk"
    assert marked.at_risk_reasons == ("operator:key on a stolen laptop",)


def test_priority_grows_with_exposure_and_findings() -> None:
    policy = DEFAULTS[-1]
    one = assess(item("one", endpoints=1), policy, NOW)
    many = assess(item("many", endpoints=20), policy, NOW)
    unseen = assess(item("unseen", endpoints=0), policy, NOW)
    assert unseen.priority < one.priority < many.priority
    sha1 = assess(item("sha1", findings=("sha1_signature",)), policy, NOW)
    both = assess(item("both", findings=("sha1_signature", "weak_key")), policy, NOW)
    assert one.priority < sha1.priority < both.priority
    # A revoked certificate still served outranks an expired one nobody serves.
    served_revoked = assess(item("r", revoked=True, endpoints=2), policy, NOW)
    gone = assess(item("x", age_days=200, endpoints=0), policy, NOW)
    assert served_revoked.priority > gone.priority and served_revoked.needs_action
    assert not assess(item("r0", revoked=True, endpoints=0), policy, NOW).needs_action


def _settings(*policies: dict[str, object]) -> RenewalSettings:
    return RenewalSettings.model_validate({"policies": list(policies)})


def test_first_matching_policy_wins_and_default_covers_the_rest() -> None:
    settings = _settings(
        {"name": "legacy", "match": {"names": ["*.legacy.example"]}, "method": "ssh",
         "target": "web1", "renew_days_before": 30},
        {"name": "all-scanned", "match": {"sources": ["scan"]}, "method": "notify",
         "owner": "ops@example.com"},
        {"name": "never", "match": {"names": ["*.legacy.example"]}, "method": "est"},
    )  # fmt: skip
    policies = policies_from_settings(settings)
    legacy = item("l", names=("app.LEGACY.example",))
    assert select_policy(policies, legacy).name == "legacy"
    assert select_policy(policies, item("s")).name == "all-scanned"
    issued = item("c", sources=("certyard",))
    chosen = select_policy(policies, issued)
    assert chosen.name == "default" and chosen.method == "notify"
    assert chosen.renew_at_fraction == pytest.approx(2 / 3)
    # renew_days_before: due 30 days before notAfter (day 60 of 90 is not yet, day 61 is).
    assert assess(item("l1", names=("a.legacy.example",), age_days=59.5), policies[0], NOW).state \
        == "healthy"  # fmt: skip
    assert assess(item("l2", names=("a.legacy.example",), age_days=61), policies[0], NOW).state \
        == "renew-due"  # fmt: skip


def test_match_criteria_are_anded_and_patterns_ored() -> None:
    it = item("m", names=("db.internal", "db2.internal"), issuer="CN=Legacy CA,O=Corp")
    it.tags = {"acme", "profile:tls-server"}
    it.endpoint_aliases = {"db.internal:5432"}
    assert matches(PolicyMatch(), it)
    assert matches(PolicyMatch(names=["nope.*", "db2.*"]), it)
    assert matches(PolicyMatch(names=["db.*"], tags=["acme"], sources=["scan"]), it)
    assert not matches(PolicyMatch(names=["db.*"], sources=["ct"]), it)
    assert matches(PolicyMatch(issuers=["*Legacy CA*"]), it)
    assert not matches(PolicyMatch(issuers=["CN=Other*"]), it)
    assert matches(PolicyMatch(endpoints=["*:5432"]), it)
    assert matches(PolicyMatch(endpoints=["192.0.2.0:443"]), it)
    assert not matches(PolicyMatch(endpoints=["*:8443"]), it)
    assert not matches(PolicyMatch(tags=["est"]), it)


def test_policy_marks_at_risk() -> None:
    policy = Policy.from_config(
        PolicyConfig(name="compromised", match=PolicyMatch(names=["*.hsm1.example"]), at_risk=True),
        2 / 3,
    )
    entry = assess(item("p", names=("a.hsm1.example",)), policy, NOW)
    assert entry.state == "at-risk" and entry.at_risk_reasons == ("policy:compromised",)


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ([{"name": "a", "renew_at_fraction": 0.5, "renew_days_before": 3}], "not both"),
        ([{"name": "a"}, {"name": "a"}], "duplicate policy name"),
        ([{"name": "default"}], "reserved"),
        ([{"name": "a", "method": "carrier-pigeon"}], "method"),
        ([{"name": "a", "renew_at_fraction": 1.5}], "renew_at_fraction"),
        ([{"name": "a", "match": {"colour": ["red"]}}], "colour"),
    ],
)
def test_bad_policies_are_refused(policies: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RenewalSettings.model_validate({"policies": policies})
