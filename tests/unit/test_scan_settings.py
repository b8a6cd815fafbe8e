"""The [scan] settings are the defaults of ``certyard scan``; options override them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from certyard import scan_commands
from certyard.settings import load_settings


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    scan_commands.add_parsers(parser.add_subparsers())
    return parser.parse_args(["scan", *argv])


def test_settings_fill_what_the_command_line_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[scan]\nports = "8443,9443"\ntimeout_seconds = 2.5\nexclude = ["10.9.0.0/16"]\n'
        "legacy_probe = false\n"
    )
    settings = load_settings(config)
    request = scan_commands.request_from_args(_args("a.test"), settings.scan)
    assert request.ports == [8443, 9443]
    assert request.options.timeout == 2.5 and request.options.legacy_probe is False
    assert request.excludes == ["10.9.0.0/16"]
    request = scan_commands.request_from_args(
        _args("a.test", "--ports", "443", "--timeout", "1", "--exclude", "10.8.0.0/16"),
        settings.scan,
    )
    assert request.ports == [443] and request.options.timeout == 1.0
    assert request.excludes == ["10.9.0.0/16", "10.8.0.0/16"]


def test_a_misspelt_scan_key_is_refused(tmp_path: Path) -> None:
    from certyard.settings import SettingsError

    config = tmp_path / "c.toml"
    config.write_text("[scan]\nport = 443\n")
    with pytest.raises(SettingsError):
        load_settings(config)
