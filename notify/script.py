"""Script hooks: run a configured executable with the event in environment variables.

No shell: ``command`` is an argv list run directly. The child gets a small environment (PATH,
HOME, LANG, LC_ALL, TZ from ours, so secrets in certyard's own environment do not leak) plus:

  CERTYARD_EVENT_KIND, CERTYARD_EVENT_SEVERITY, CERTYARD_EVENT_SUBJECT, CERTYARD_EVENT_KEY
  CERTYARD_EVENT_JSON          the whole event as JSON (kind, severity, subject, key, details)
  CERTYARD_EVENT_DETAIL_<KEY>  each scalar detail (key upper-cased, other characters as "_")

Exit status 0 is delivered; any other status or the timeout is a failed attempt (retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Mapping, Sequence

from notify.errors import DeliveryError
from notify.events import Notification
from notify.payloads import event_to_dict

_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_OUTPUT_LIMIT = 400


def event_environment(event: Notification, base: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if base is None else base
    env = {name: source[name] for name in _PASSED_THROUGH if name in source}
    data = event_to_dict(event)
    env.update(
        {
            "CERTYARD_EVENT_KIND": event.kind,
            "CERTYARD_EVENT_SEVERITY": event.severity,
            "CERTYARD_EVENT_SUBJECT": event.subject,
            "CERTYARD_EVENT_KEY": event.idempotency_key,
            "CERTYARD_EVENT_JSON": json.dumps(data, sort_keys=True),
        }
    )
    for key, value in data["details"].items():
        if isinstance(value, str | int | float | bool) or value is None:
            name = re.sub(r"[^A-Z0-9]", "_", str(key).upper())
            env[f"CERTYARD_EVENT_DETAIL_{name}"] = "" if value is None else str(value)
    return env


class ScriptHook:
    def __init__(self, name: str, command: Sequence[str], *, timeout: float = 10.0) -> None:
        if not command:
            raise ValueError("script hook needs a command")
        self.name = name
        self.command = list(command)
        self.timeout = timeout

    async def send(self, event: Notification) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                env=event_environment(event),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group, so a timeout kills the script and its children.
                start_new_session=True,
            )
        except OSError as exc:
            raise DeliveryError(
                f"cannot run {self.command[0]}: {exc.strerror}", retryable=False
            ) from None
        try:
            async with asyncio.timeout(self.timeout):
                _, stderr = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise DeliveryError(
                f"{self.command[0]} timed out after {self.timeout:g} s", retryable=True
            ) from None
        if process.returncode != 0:
            tail = stderr.decode(errors="replace").strip()[-_OUTPUT_LIMIT:]
            raise DeliveryError(
                f"{self.command[0]} exited with status {process.returncode}: {tail}",
                retryable=True,
            )
