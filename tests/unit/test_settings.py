"""Settings: defaults, TOML file, environment overrides, and one clear line for a bad value."""

import subprocess
import sys
from pathlib import Path

import pytest

from certyard.settings import SettingsError, load_settings, parse_hostport


def test_defaults_and_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.server.listen == "127.0.0.1:8443"
    assert settings.server.hostnames == ["localhost"]
    assert settings.server.data_dir == Path("var")
    assert settings.acme.http01_port == 80 and settings.acme.tlsalpn01_port == 443
    assert settings.acme.dns_resolvers == []
    assert any(str(n) == "127.0.0.0/8" for n in settings.acme.validation_deny)
    assert settings.public_url == "https://localhost:8443"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")


def test_file_then_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[server]\nlisten = "127.0.0.1:9999"\nhostnames = ["a.example"]\n'
        "[acme]\nhttp01_port = 8080\n"
    )
    monkeypatch.setenv("CERTYARD__ACME__HTTP01_PORT", "5002")
    monkeypatch.setenv("CERTYARD__ACME__VALIDATION_DENY", "[]")
    monkeypatch.setenv("CERTYARD__ACME__DNS_RESOLVERS", '["127.0.0.1:5353"]')
    settings = load_settings(config)
    assert settings.server.listen == "127.0.0.1:9999"
    assert settings.server.hostnames == ["a.example"]
    assert settings.acme.http01_port == 5002
    assert settings.acme.validation_deny == []
    assert settings.acme.dns_resolvers == ["127.0.0.1:5353"]
    # Keys the file does not set keep the embedded default.
    assert settings.acme.tlsalpn01_port == 443


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("CERTYARD__ACME__HTTP01_PORT", "abc", "acme.http01_port"),
        ("CERTYARD__ACME__HTTP01_PORT", "70000", "acme.http01_port"),
        ("CERTYARD__SERVER__LISTEN", "nowhere", "server.listen"),
        ("CERTYARD__DATABASE__URL", "mysql://x", "database.url"),
        ("CERTYARD__ACME__DNS_RESOLVERS", '["a:b:c"]', "acme.dns_resolvers"),
        ("CERTYARD__CA__KEY_ALGORITHM", "dsa", "ca.key_algorithm"),
    ],
)
def test_bad_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, key: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert key in str(info.value)


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {"CERTYARD__SERVER__LISTEN": "bad", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "certyard.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.listen" in lines[0]


def test_unknown_key_in_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nlisten_on = 1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert "server.listen_on" in str(info.value)


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:53") == ("127.0.0.1", 53)
    assert parse_hostport("[::1]:5353") == ("::1", 5353)
    assert parse_hostport("ns.example", default_port=53) == ("ns.example", 53)
    with pytest.raises(ValueError):
        parse_hostport("::1:53")
