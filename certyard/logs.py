"""Structured logs: one JSON object a line in production, readable lines in a terminal.

``log.format``: "json" always writes JSON lines; "console" always the coloured, aligned form;
"auto" (the default) writes JSON unless standard error is a terminal. Every line has
``timestamp`` (ISO 8601, UTC), ``level`` and ``event``; lines written while serving a request
carry its ``request_id`` (certyard/request_ids.py binds it with structlog's context variables,
merged here). Libraries logging through the standard library (aiohttp, asyncio, alembic) are
rendered the same way, so a JSON log is JSON on every line.

Secrets are never passed to a logger in the first place; :func:`redact_secrets` is defence in
depth: a value under a key that names a secret (password, token, hmac, pin, authorization ...)
or that looks like a credential (an HTTP Authorization value, a certyard API token) is
replaced by "[redacted]" before any line is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
# A key part that names a secret ("est_password", "hmac_key", "X-Auth-Token", "pin" ...).
_SECRET_PARTS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "hmac",
        "pin",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "apikey",
    }
)
# Whole keys naming key material.
_SECRET_KEYS = frozenset(
    {"private_key", "key_material", "key_pem", "key_der", "key_blob", "api_key", "privkey"}
)
# A key ending so names something about a secret, not the secret ("token_id", "pin_file").
_HARMLESS_SUFFIXES = frozenset({"id", "ids", "file", "path", "ref", "label", "count", "kind"})
# Values that are credentials whatever their key: HTTP auth schemes (RFC 9110 §11.4) with a
# credential after them, and certyard API tokens (admin_api/tokens.py: "cyt_...").
_SECRET_VALUE = re.compile(r"^\s*(?:(?:Bearer|Basic|Digest)\s+\S|cyt_[A-Za-z0-9_-]{8,})", re.I)
_SPLIT = re.compile(r"[^a-z0-9]+")
_MAX_DEPTH = 4


def secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in _SECRET_KEYS:
        return True
    parts = [p for p in _SPLIT.split(lowered) if p]
    if not parts or parts[-1] in _HARMLESS_SUFFIXES:
        return False
    return any(p in _SECRET_PARTS for p in parts)


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return REDACTED if _SECRET_VALUE.match(value) else value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and secret_key(k) else _clean(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: see the module docstring. The event name itself is kept."""
    for key in list(event_dict):
        if key == "event" or key.startswith("_"):
            continue
        if secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _clean(event_dict[key], 0)
    return event_dict


def use_json(fmt: str) -> bool:
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of writing, not the one of the
    moment logging was configured: a command run in-process by a test (whose captured stderr
    is closed after it) or a redirected stderr then never leaves a logger writing to a dead
    stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _CertyardHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installs, so configuring again replaces it only."""


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json(fmt) else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        # Not cached: a logger bound once would keep this configuration for good, and the
        # command line may configure logging again in the same process (tests run commands
        # in-process; structlog.testing.capture_logs must still see their events).
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (aiohttp, asyncio, alembic): the same
    # processors and renderer, so their lines are JSON lines too.
    handler = _CertyardHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CertyardHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    # Python warnings (DeprecationWarning ...) through the "py.warnings" logger: JSON too.
    logging.captureWarnings(True)
