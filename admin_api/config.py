"""Settings section: Admin listener and API ([admin]).

Imported by certyard.settings: import nothing from certyard here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROLES = ("admin", "operator", "auditor", "viewer")


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class OidcSettings(_Section):
    """OIDC bearer tokens (JWT, RFC 7519) from an identity provider; empty issuer: disabled."""

    issuer: str = ""
    audience: str = ""
    # The issuer's JWKS (RFC 7517 §5) fetched over HTTP(S); cached, re-fetched on an unknown kid.
    jwks_url: str = ""
    # Asymmetric algorithms only: an HMAC algorithm would let a public key act as a MAC secret.
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    # The claim holding the user's role(s) (a string or a list of strings) ...
    role_claim: str = "roles"
    # ... and how its values map to certyard roles ({"pki-admins": "admin", ...}).
    role_map: dict[str, str] = Field(default_factory=dict)
    # The claim naming the user's namespace; "" (or a token without it): no namespace.
    namespace_claim: str = ""
    # Seconds of clock skew tolerated on exp/nbf/iat (RFC 7519 §4.1.4).
    leeway_seconds: int = Field(default=30, ge=0, le=600)
    # The JWKS is re-fetched at most this often for an unknown kid (a flood of bogus kids must
    # not turn into a flood of requests to the identity provider).
    jwks_refresh_min_seconds: float = Field(default=30.0, ge=0, le=3600)
    jwks_cache_seconds: float = Field(default=3600.0, ge=0, le=86400)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"}
        allowed |= {"ES512", "EdDSA"}
        bad = [alg for alg in value if alg not in allowed]
        if bad:
            raise ValueError(f"unsupported or symmetric algorithm(s): {', '.join(bad)}")
        return value

    @field_validator("role_map")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted({role for role in value.values() if role not in ROLES})
        if bad:
            raise ValueError(f"unknown role(s) {', '.join(bad)}; roles are {', '.join(ROLES)}")
        return value


class AdminSettings(_Section):
    # The admin listener, separate from the public one; "" disables it.
    listen: str = "127.0.0.1:9443"
    # false: plain HTTP (keep it on loopback); true: HTTPS with the public listener's
    # certificate (issued by certyard's CA for server.hostnames).
    tls: bool = False
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    # API tokens: lifetime when none is asked for, and the longest one may ask for.
    token_default_days: int = Field(default=90, ge=1, le=3650)
    token_max_days: int = Field(default=365, ge=1, le=3650)
    # Lists: the page size without ?limit= (the largest ?limit= is 500).
    page_size: int = Field(default=50, ge=1, le=500)
    # Exports (CSV/JSON) stop after this many rows and say so in a header.
    export_max_rows: int = Field(default=100000, ge=1, le=10_000_000)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port")
        return value
