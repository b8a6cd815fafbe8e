"""``certyard audit …``: audit trail (certyard audit verify|export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from certyard.settings import Settings


class UsageError(Exception):
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="audit trail (certyard audit verify|export)")
    p.add_argument("--config", type=Path)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    raise UsageError("not implemented yet")
