"""Settings section: SSH deployment ([deploy]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]


class DeploySettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    # The key made for each new certificate (on the target with openssl, else in certyard).
    key_type: KeyType = "ec-p256"
    # Make the key on the target (openssl over SSH): the private key never leaves the host.
    # When the target has no openssl, the key is made in certyard and sent over SSH.
    remote_key_generation: bool = True
    connect_timeout_seconds: float = Field(default=10, gt=0, le=300)
    # Each remote command (openssl, the reload command, chown) must finish within this.
    command_timeout_seconds: float = Field(default=60, gt=0, le=3600)
    # After the reload: how long the endpoint may take to serve the new certificate, and how
    # often it is scanned meanwhile.
    verify_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    verify_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    # Per TLS handshake of the verification scan.
    probe_timeout_seconds: float = Field(default=5, gt=0, le=60)
    # Earlier file generations kept on the target: <path>.certyard-prev, .certyard-prev.2, …
    backups_to_keep: int = Field(default=1, ge=1, le=10)
    # Profile used by `certyard deploy target add` when --profile is not given
    # (None: the CA's default profile).
    default_profile: str | None = None
