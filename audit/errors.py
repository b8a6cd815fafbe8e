"""The audit package's error."""

from __future__ import annotations


class AuditError(Exception):
    """An audit entry or checkpoint could not be written or read. ``cause`` is for the logs."""

    def __init__(self, detail: str, cause: BaseException | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.cause = cause
