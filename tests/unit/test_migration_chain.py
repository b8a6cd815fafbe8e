"""The migrations form one linear chain with one head: two features that each added a migration
on the same parent must be re-chained before they land (``alembic upgrade head`` and downgrades
need one head)."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from storage.engine import MIGRATIONS_DIR


def test_one_linear_chain() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_heads() == [scripts.get_current_head()]
    revisions = list(scripts.walk_revisions())
    assert all(not rev.is_merge_point for rev in revisions)
    # Each revision but the first has exactly one parent, and each parent one child.
    parents = [rev.down_revision for rev in revisions if rev.down_revision is not None]
    assert len(parents) == len(set(parents)) == len(revisions) - 1
