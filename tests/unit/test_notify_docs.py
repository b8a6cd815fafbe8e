"""The TOML examples of docs/notifications.md and docs/scheduler.md load as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from certyard.settings import load_settings
from tests.support.tools import REPO_ROOT


def toml_blocks(doc: str) -> list[str]:
    text = (REPO_ROOT / "docs" / doc).read_text()
    return re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("doc", ["notifications.md", "scheduler.md"])
def test_doc_examples_load(doc: str, tmp_path: Path) -> None:
    blocks = toml_blocks(doc)
    assert blocks
    try:
        for number, block in enumerate(blocks):
            path = tmp_path / f"example{number}.toml"
            path.write_text(block)
            settings = load_settings(path)
            if doc == "notifications.md":
                assert [h.name for h in settings.notify.hooks] == [
                    "pager",
                    "chat",
                    "teams",
                    "pki-team",
                    "ticket",
                ]
                assert settings.notify.smtp.from_ == "certyard@example.com"
            else:
                jobs = {j.name: j for j in settings.scheduler.jobs}
                assert jobs["renewal-check"].every == 6 * 3600
                assert not jobs["ct"].catch_up
                assert jobs["nightly-scan"].params["ports"] == [443, 8443]
    finally:
        load_settings(None)  # leave the module-level file list as the default
