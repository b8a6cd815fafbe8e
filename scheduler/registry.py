"""Job kinds: what a job of kind "scan", "ct", "renew", "crl", ... actually does.

The process wiring registers one async callable per kind; a job's ``params`` (from the config)
are handed to it, and the dict it returns is stored as the run's summary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

JobHandler = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any] | None]]


class UnknownJobKind(LookupError):
    pass


class JobRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}

    def register(self, kind: str, handler: JobHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def get(self, kind: str) -> JobHandler:
        try:
            return self._handlers[kind]
        except KeyError:
            raise UnknownJobKind(f"no handler registered for job kind {kind!r}") from None

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers
