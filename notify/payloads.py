"""What each hook type sends: the generic JSON body, Slack's and Teams' incoming-webhook shapes.

Event details may hold anything JSON-like; values JSON cannot carry (datetimes, paths) are
written as strings so a payload never fails to render.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from notify.events import Notification, Severity

SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
# Colours for Slack attachments / Teams themeColor, by severity.
_COLOURS = {
    "info": "439FE0",
    "low": "2EB886",
    "medium": "DAA038",
    "high": "E8793B",
    "critical": "D00000",
}


def _default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def to_json_bytes(payload: Any) -> bytes:
    """Compact, key-sorted JSON: the exact bytes the signature covers."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=_default).encode()


def event_to_dict(event: Notification) -> dict[str, Any]:
    """The event as plain JSON values (stored in the ledger, rebuilt for a re-drive)."""
    body = {
        "kind": event.kind,
        "severity": event.severity,
        "subject": event.subject,
        "idempotency_key": event.idempotency_key,
        "details": event.details,
    }
    loaded: dict[str, Any] = json.loads(to_json_bytes(body))
    return loaded


def event_from_dict(data: dict[str, Any]) -> Notification:
    severity: Severity = data["severity"]
    return Notification(
        kind=str(data["kind"]),
        severity=severity,
        subject=str(data["subject"]),
        idempotency_key=str(data["idempotency_key"]),
        details=dict(data.get("details") or {}),
    )


def json_payload(event: Notification, sent_at: dt.datetime) -> dict[str, Any]:
    """The generic webhook body. ``sent_at`` is inside the signed body, so a receiver can reject
    old replays by checking it (the X-Certyard-Timestamp header repeats it, unsigned)."""
    return {
        "source": "certyard",
        **event_to_dict(event),
        "sent_at": sent_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


def _facts(event: Notification) -> list[tuple[str, str]]:
    facts = [("Kind", event.kind), ("Severity", event.severity)]
    for key, value in event_to_dict(event)["details"].items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        facts.append((str(key), text[:500]))
    return facts


def _mrkdwn_escape(text: str) -> str:
    # Slack: &, < and > are control characters in message text (api.slack.com "Formatting text").
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: Notification) -> dict[str, Any]:
    """Slack incoming webhook: ``text`` (notification fallback) and Block Kit ``blocks``."""
    title = f"[{event.severity.upper()}] {event.subject}"
    fields = [
        {"type": "mrkdwn", "text": f"*{_mrkdwn_escape(k)}*\n{_mrkdwn_escape(v)}"}
        for k, v in _facts(event)
    ]
    blocks: list[dict[str, Any]] = [
        # Header blocks take plain_text of at most 150 characters (Block Kit reference).
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn_escape(event.subject)}},
    ]
    # A section holds at most 10 fields.
    for start in range(0, len(fields), 10):
        blocks.append({"type": "section", "fields": fields[start : start + 10]})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"certyard · {event.idempotency_key}"}],
        }
    )
    return {"text": title, "blocks": blocks}


def teams_messagecard(event: Notification) -> dict[str, Any]:
    """Legacy Office 365 connector payload (MessageCard)."""
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": event.subject[:200],
        "themeColor": _COLOURS.get(event.severity, _COLOURS["critical"]),
        "title": f"[{event.severity.upper()}] {event.subject}",
        "sections": [
            {
                "facts": [{"name": k, "value": v} for k, v in _facts(event)],
                "text": f"certyard · {event.idempotency_key}",
            }
        ],
    }


def teams_adaptive(event: Notification) -> dict[str, Any]:
    """Teams Workflows incoming webhook: a message with one Adaptive Card attachment."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": f"[{event.severity.upper()}] {event.subject}",
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": "Attention" if SEVERITY_ORDER.get(event.severity, 4) >= 3 else "Default",
            },
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in _facts(event)],
            },
            {
                "type": "TextBlock",
                "text": f"certyard · {event.idempotency_key}",
                "isSubtle": True,
                "wrap": True,
                "size": "Small",
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
