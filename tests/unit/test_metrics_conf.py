"""The Grafana dashboard and the Prometheus rules refer only to metrics certyard exports (a typo
in a panel would otherwise be an empty graph nobody notices), and the names follow the
Prometheus conventions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import certyard.metrics_db
import certyard.metrics_scan  # noqa: F401
from certyard.metrics import REGISTRY
from tests.support.tools import REPO_ROOT

DASHBOARD = REPO_ROOT / "conf" / "grafana" / "certyard-dashboard.json"
RULES = REPO_ROOT / "conf" / "prometheus" / "certyard-rules.yml"
# A certyard metric or recording-rule name inside PromQL (recording rules use level:metric:ops).
NAME = re.compile(r"\bcertyard[_:][A-Za-z0-9_:]*")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


def exported_names() -> set[str]:
    """Every series name the registry can expose, whether or not a sample exists yet."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def recorded_names(rules: dict[str, Any]) -> set[str]:
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def rule_exprs(rules: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels nested in collapsed rows
    return found


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def test_every_metric_is_certyard_and_conventional() -> None:
    families = list(REGISTRY.collect())
    assert families
    for family in families:
        assert family.name.startswith("certyard_"), family.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: durations in seconds"
        assert family.documentation, f"{family.name} has no help text"


def test_dashboard_panels_use_only_exported_metrics(rules: dict[str, Any]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "certyard" and dashboard["uid"]
    known = exported_names() | recorded_names(rules)
    every = panels(dashboard)
    assert len({p["id"] for p in every}) == len(every), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in every)
    for topic in ("issuance", "validation", "5xx", "latency", "ct lag", "expir", "scan"):
        assert topic in titles, f"no panel about {topic}"
    used: set[str] = set()
    for panel in every:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = set(NAME.findall(target["expr"]))
            assert names, f"{panel['title']!r}: {target['expr']} names no certyard metric"
            unknown = names - known
            assert not unknown, f"panel {panel['title']!r} uses unknown metrics {unknown}"
            used |= names
    # Every family a person would chart appears on the dashboard.
    for family in ("certyard_hsm_errors_total", "certyard_ct_log_lag_entries"):
        assert family in used


def test_rules_use_only_exported_metrics(rules: dict[str, Any]) -> None:
    known = exported_names() | recorded_names(rules)
    alerts = set()
    for name, expr in rule_exprs(rules):
        unknown = set(NAME.findall(expr)) - known
        assert not unknown, f"rule {name} uses unknown metrics {unknown}"
        alerts.add(name)
    for alert in (
        "CertyardCertificatesExpiringSoon",
        "CertyardCTLogLagHigh",
        "CertyardHSMDown",
        "CertyardValidationFailureRateHigh",
    ):
        assert alert in alerts


def test_a_typo_is_caught(rules: dict[str, Any]) -> None:
    # The check above would notice a misspelt metric in a panel.
    known = exported_names() | recorded_names(rules)
    assert set(NAME.findall("rate(certyard_issuance_total[5m])")) - known


def test_docs_list_every_metric() -> None:
    text = (Path(REPO_ROOT) / "docs" / "metrics.md").read_text()
    for family in REGISTRY.collect():
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{shown}" in text, f"docs/metrics.md does not describe {shown}"
