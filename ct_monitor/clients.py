"""Build the right ``LogClient`` for a log description (RFC 6962 or static-ct-api)."""

from __future__ import annotations

from ct_monitor.config import CTSettings
from ct_monitor.httpclient import user_agent
from ct_monitor.rfc6962 import RFC6962Client
from ct_monitor.static_ct import StaticCTClient
from ct_monitor.types import LogClient, LogDescription


def open_client(description: LogDescription, settings: CTSettings | None = None) -> LogClient:
    """A client for ``description`` using the User-Agent, timeout and Retry-After limit from
    ``settings`` (defaults when None). Close it with ``await client.aclose()``."""
    cfg = settings or CTSettings()
    ua = user_agent(cfg.user_agent_contact)
    timeout, wait = cfg.http_timeout_seconds, cfg.max_retry_wait_seconds
    if description.kind == "tiled":
        return StaticCTClient(description, user_agent=ua, timeout=timeout, max_retry_wait=wait)
    return RFC6962Client(description, user_agent=ua, timeout=timeout, max_retry_wait=wait)
