"""acme.mpic_policy = "br": the Baseline Requirements' MPIC minimums (BR §3.2.2.9)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from acme_server.va.mpic import br_allowed_non_corroborations, br_quorum
from certyard.settings import SettingsError, load_settings
from tests.support.server import certyard_command
from tests.support.tools import REPO_ROOT

_TLS = {"va_client_cert": "/c.pem", "va_client_key": "/c.key", "va_ca_file": "/ca.pem"}


def _agents(count: int) -> list[dict[str, str]]:
    return [{"name": f"p{i}", "url": f"https://va{i}.example:8600"} for i in range(count)]


@pytest.mark.parametrize(
    "perspectives, allowed, quorum",
    [(2, 1, 2), (3, 1, 2), (4, 1, 3), (5, 1, 4), (6, 2, 4), (7, 2, 5), (10, 2, 8)],
)
def test_br_quorum_table(perspectives: int, allowed: int, quorum: int) -> None:
    # 2-5 perspectives: one may disagree; 6+: two; and never fewer than two corroborating.
    assert br_allowed_non_corroborations(perspectives) == allowed
    assert br_quorum(perspectives) == quorum


def test_br_table_needs_two_perspectives() -> None:
    with pytest.raises(ValueError, match="at least 2 remote perspectives"):
        br_quorum(1)


@pytest.mark.parametrize("count, quorum", [(2, 2), (3, 2), (5, 4), (6, 4)])
def test_br_policy_sets_the_quorum(count: int, quorum: int) -> None:
    settings = load_settings(acme={"mpic_policy": "br", "va_agents": _agents(count), **_TLS})
    assert settings.acme.va_quorum == quorum


def test_br_policy_keeps_a_stricter_quorum_and_refuses_a_weaker_one() -> None:
    acme = {"mpic_policy": "br", "va_agents": _agents(3), **_TLS}
    assert load_settings(acme={**acme, "va_quorum": 3}).acme.va_quorum == 3
    with pytest.raises(SettingsError, match=r"va_quorum 1 is below .* for 3 remote perspectives"):
        load_settings(acme={**acme, "va_quorum": 1})


def test_br_policy_refuses_too_few_perspectives() -> None:
    with pytest.raises(SettingsError, match=r"needs at least 2 remote perspectives.*1 configured"):
        load_settings(acme={"mpic_policy": "br", "va_agents": _agents(1), **_TLS})
    with pytest.raises(SettingsError, match=r"needs at least 4 remote perspectives.*3 configured"):
        load_settings(
            acme={
                "mpic_policy": "br",
                "mpic_min_perspectives": 4,
                "va_agents": _agents(3),
                **_TLS,
            }
        )


def test_custom_policy_is_unchanged() -> None:
    settings = load_settings(acme={"va_agents": _agents(1), **_TLS})
    assert settings.acme.va_quorum == 0  # wiring: 0 = all but one, at least one


def test_serve_refuses_to_start_without_enough_perspectives(tmp_path: Path) -> None:
    config = tmp_path / "mpic.toml"
    config.write_text('[acme]\nmpic_policy = "br"\n')
    done = subprocess.run(
        [*certyard_command(), "serve", "--config", str(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert 'acme.mpic_policy = "br" needs at least 2 remote perspectives' in lines[0]
