"""Errors of the notify package."""

from __future__ import annotations


class NotifyConfigError(ValueError):
    """The [notify] configuration cannot be used (unreadable secret file, ...): one line."""


class DeliveryError(Exception):
    """One delivery attempt failed.

    ``retryable``: a later attempt may succeed (5xx, 429, connection error, SMTP 4xx);
    ``retry_after``: seconds the receiver asked us to wait (HTTP Retry-After).
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
