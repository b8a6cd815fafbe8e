"""Write a JSON document with one long list streamed item by item, byte for byte what
``json.dumps(document, indent=2)`` would write, without holding the list.

The document is dumped with a placeholder string where the list goes; the text before and
after it is written around the items, each dumped on its own and indented to the placeholder's
depth. JSON strings never hold a raw newline (RFC 8259 §7), so re-indenting line by line is safe.
The standard library's json has no incremental encoder for this, hence the placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

PLACEHOLDER = "\x00certyard-streamed-list\x00"


def _indented(value: Any, prefix: str) -> str:
    return json.dumps(value, indent=2).replace("\n", "\n" + prefix)


def write(stream: TextIO, skeleton: Any, items: Iterable[Any]) -> None:
    """``skeleton`` holds ``PLACEHOLDER`` exactly once, where the list of ``items`` goes."""
    text = json.dumps(skeleton, indent=2)
    marker = json.dumps(PLACEHOLDER)
    at = text.index(marker)
    line_start = text.rfind("\n", 0, at) + 1
    indent = text[line_start : len(text) - len(text[line_start:].lstrip(" "))]
    stream.write(text[:at])
    stream.write("[")
    inner = indent + "  "
    first = True
    for item in items:
        stream.write(("\n" if first else ",\n") + inner + _indented(item, inner))
        first = False
    stream.write("]" if first else "\n" + indent + "]")
    stream.write(text[at + len(marker) :])
    stream.write("\n")
