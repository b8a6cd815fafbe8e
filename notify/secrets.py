"""Reading hook secrets and the SMTP password from files (never from the config itself)."""

from __future__ import annotations

import stat
from pathlib import Path

from notify.errors import NotifyConfigError


def read_secret_file(path: Path, what: str) -> str:
    """The file's content without the trailing newline; like ssh's key checks, a file that
    group or others may read is refused."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise NotifyConfigError(
                f"{what} file {path} must not be readable by group or others (chmod 600)"
            )
        value = path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise NotifyConfigError(f"{what} file {path} cannot be read ({exc.strerror})") from None
    if not value:
        raise NotifyConfigError(f"{what} file {path} is empty")
    return value
