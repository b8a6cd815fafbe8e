"""E-mail hooks over SMTP (RFC 5321) with aiosmtplib: STARTTLS (RFC 3207) or implicit TLS
(RFC 8314), optional AUTH with the password read from a file. The password is held by the hook
object only; neither it nor the SMTP conversation is ever logged."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import aiosmtplib

from notify.errors import DeliveryError
from notify.events import Notification
from notify.payloads import event_to_dict


class SmtpTransport:
    """Where and how to submit mail; one per [notify.smtp], shared by every e-mail hook."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        starttls: bool = False,
        tls: bool = False,
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.tls = tls
        self.ca_file = ca_file
        self.username = username
        self._password = password
        self.timeout = timeout

    def __repr__(self) -> str:  # never shows the password
        return f"SmtpTransport(host={self.host!r}, port={self.port}, username={self.username!r})"

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.starttls or self.tls):
            return None
        return ssl.create_default_context(
            cafile=None if self.ca_file is None else str(self.ca_file)
        )

    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        try:
            await aiosmtplib.send(
                message,
                sender=self.sender,
                recipients=list(recipients),
                hostname=self.host,
                port=self.port,
                use_tls=self.tls,
                start_tls=self.starttls,
                tls_context=self._tls_context(),
                username=self.username,
                password=self._password,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            # RFC 5321 §4.2.1: 4yz is a transient failure, 5yz permanent.
            retryable = any(400 <= code < 500 for code in codes)
            raise DeliveryError(f"SMTP recipients refused: {codes}", retryable=retryable) from None
        except aiosmtplib.SMTPResponseException as exc:
            retryable = 400 <= exc.code < 500
            raise DeliveryError(
                f"SMTP {self.host}:{self.port}: {exc.code} {exc.message}", retryable=retryable
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {reason}", retryable=True) from None


def build_message(
    event: Notification, sender: str, recipients: Sequence[str], now: dt.datetime
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[certyard] {event.severity.upper()}: {event.subject}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "certyard")
    message["X-Certyard-Idempotency-Key"] = event.idempotency_key
    message["X-Certyard-Event-Kind"] = event.kind
    lines = [event.subject, "", f"Kind: {event.kind}", f"Severity: {event.severity}"]
    details = event_to_dict(event)["details"]
    for key, value in details.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        lines.append(f"{key}: {text}")
    lines += ["", f"Idempotency key: {event.idempotency_key}", "", "-- certyard"]
    message.set_content("\n".join(lines) + "\n")
    return message


class EmailHook:
    def __init__(
        self,
        name: str,
        transport: SmtpTransport,
        to: Sequence[str],
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.name = name
        self.transport = transport
        self.to = list(to)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    async def send(self, event: Notification) -> None:
        message = build_message(event, self.transport.sender, self.to, self._clock())
        await self.transport.send(message, self.to)
