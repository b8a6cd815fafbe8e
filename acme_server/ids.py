"""Random resource identifiers: they appear in URLs, so they must not be guessable."""

import secrets


def new_id() -> str:
    return secrets.token_urlsafe(16)
