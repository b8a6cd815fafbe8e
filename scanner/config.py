"""Settings section: the discovery scanner ([scan]); each key is the default of the
``certyard scan`` option of the same name, which overrides it.

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ScanSettings(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")

    ports: str = "443"  # "443,8443,1000-1010"
    exclude: list[str] = Field(default_factory=list)  # networks never probed
    trust: list[Path] = Field(default_factory=list)  # extra roots for chain validation
    timeout_seconds: float = Field(default=5.0, gt=0)  # per phase: connect, then handshake
    retries: int = Field(default=1, ge=0)
    concurrency: int = Field(default=256, ge=1)  # connections open at once, in all
    per_host: int = Field(default=4, ge=1)  # connections open at once to one address
    expiring_days: float = Field(default=30.0, ge=0)  # expiring_soon threshold
    legacy_probe: bool = True  # one more handshake per ip:port capped at TLS 1.1
    ocsp_stapling: bool = True  # one more handshake per direct-TLS ip:port asking for OCSP
    known_names: bool = True  # also try SNI names the inventory and CT know for each address
    syn_rate: int = Field(default=10_000, ge=1)  # --syn: SYN packets per second, at most
