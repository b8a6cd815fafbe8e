"""Loading a label's pre-shared serverkeygen keys (est_server/wiring.py load_decrypt_keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.errors import CAError
from est_server.wiring import load_decrypt_keys

SECRET = "00112233445566778899aabbccddeeff"


def _file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_loads_ids_and_keys(tmp_path: Path) -> None:
    path = _file(tmp_path, f"# comment\n\n0a0b {SECRET}  # trailing\n")
    assert load_decrypt_keys(path, "x") == {b"\x0a\x0b": bytes.fromhex(SECRET)}
    assert load_decrypt_keys(None, "x") == {}


def test_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="0600"):
        load_decrypt_keys(_file(tmp_path, f"0a {SECRET}\n", 0o644), "x")


@pytest.mark.parametrize("line", ["0a", f"zz {SECRET}", "0a 0011", f"0a {SECRET} extra"])
def test_bad_line_is_named_without_its_secret(tmp_path: Path, line: str) -> None:
    with pytest.raises(CAError, match="line 1") as caught:
        load_decrypt_keys(_file(tmp_path, line + "\n"), "x")
    assert SECRET not in str(caught.value.detail)


def test_channel_binding_with_approval_is_refused() -> None:
    from pydantic import ValidationError

    from certyard.settings import EstLabelSettings

    with pytest.raises(ValidationError, match="channel_binding cannot be combined with approval"):
        EstLabelSettings(channel_binding=True, approval=True)
