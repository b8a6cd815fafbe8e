"""The scan's reports on disk while it runs, so memory does not grow with the size of the range.

Each finished endpoint is written once, as one JSON line (its report object, already in the JSON
report's shape, plus each finding's certificate digest for SARIF), to an anonymous temporary
file. Only the sort key and the line's offset stay in memory; ``records()`` reads the lines back
in the report's order (ip, port, then SNI with "no SNI" first), one at a time.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

SortKey = tuple[str, int, str]


@dataclass(frozen=True)
class Record:
    """One endpoint of the report: the JSON report object, and for each of its findings (in the
    same order) the SHA-256 of the certificate it is about, or None."""

    endpoint: dict[str, Any]
    finding_certs: list[str | None]


def sort_key(endpoint: dict[str, Any]) -> SortKey:
    return (str(endpoint["ip"]), int(endpoint["port"]), endpoint.get("sni") or "")


class Spool:
    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="certyard-scan-")
        self._index: list[tuple[SortKey, int, int]] = []  # key, offset, length
        self._end = 0
        self.by_status: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._index)

    def add(self, record: Record) -> None:
        line = json.dumps(
            [record.endpoint, record.finding_certs], separators=(",", ":"), ensure_ascii=False
        ).encode()
        self._file.seek(self._end)
        self._file.write(line)
        self._index.append((sort_key(record.endpoint), self._end, len(line)))
        self._end += len(line)
        self.by_status[str(record.endpoint["status"])] += 1
        self.by_code.update(str(f["code"]) for f in record.endpoint["findings"])

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def records(self) -> Iterator[Record]:
        """Every record, in report order (a stable sort: arrival order breaks ties)."""
        self._file.flush()
        for _key, offset, length in sorted(self._index, key=lambda item: item[0]):
            self._file.seek(offset)
            endpoint, certs = json.loads(self._file.read(length))
            yield Record(endpoint, certs)

    def endpoints(self) -> Iterator[dict[str, Any]]:
        return (record.endpoint for record in self.records())

    def close(self) -> None:
        self._file.close()
