"""``certyard acme eab ...`` and ``certyard acme ari advance``: real subprocesses, real database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from tests.support.server import certyard_command


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD__")}
    env["CERTYARD__SERVER__DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [*certyard_command(), "acme", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_eab_create_list_revoke(tmp_path: Path) -> None:
    created = run(
        tmp_path,
        "eab",
        "create",
        "--allow-domain",
        "*.example.test",
        "--json",
        "--max-validity-days",
        "30",
        "--expires",
        "7d",
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["kid"].startswith("kid-") and len(key["hmac_key"]) >= 43
    # The HMAC key is output only: it never reaches the logs.
    assert key["hmac_key"] not in created.stderr
    plain = run(tmp_path, "eab", "create")
    assert len(plain.stdout.strip().splitlines()) == 2
    listed = [json.loads(line) for line in run(tmp_path, "eab", "list").stdout.splitlines()]
    mine = next(k for k in listed if k["kid"] == key["kid"])
    assert mine["state"] == "unused" and mine["allowed_domains"] == ["*.example.test"]
    assert mine["max_validity_days"] == 30 and mine["expires"]
    assert all("hmac" not in json.dumps(k) for k in listed)
    assert run(tmp_path, "eab", "revoke", key["kid"]).returncode == 0
    again = run(tmp_path, "eab", "revoke", key["kid"])
    assert again.returncode == 1 and key["kid"] in again.stderr
    bad = run(tmp_path, "eab", "create", "--expires", "soon")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_ari_advance_moves_the_window(tmp_path: Path) -> None:
    assert run(tmp_path, "eab", "list").returncode == 0  # creates and migrates the database
    db = sqlite3.connect(tmp_path / "certyard.db")
    db.execute(
        "INSERT INTO certificates (id, serial, issuer_id, names, profile, not_before, not_after,"
        " spki_sha256, status, created_at, state, tbs_sha256, requester)"
        " VALUES ('c1', '0a0b', 'int-1', '[]', 'tls-server', '2026-01-01 00:00:00',"
        " '2099-01-01 00:00:00', 'x', 'valid', '2026-01-01 00:00:00', 'issued', 'y', 'cli')"
    )
    db.commit()
    moved = run(tmp_path, "ari", "advance", "--serial", "A0B", "--hours", "2")
    assert moved.returncode == 0, moved.stderr
    assert "1 certificate" in moved.stdout
    start, end = db.execute(
        "SELECT ari_window_start, ari_window_end FROM certificates WHERE id='c1'"
    ).fetchone()
    assert start and end and start < end
    none = run(tmp_path, "ari", "advance", "--serial", "ffff")
    assert none.returncode == 1
