"""Settings: conf/default.toml, then an optional --config TOML file, then CERTYARD__SECTION__KEY.

pydantic-settings does the merging and the environment parsing; this module only declares the
keys (their names are public: outside tools set them) and turns a validation error into one line.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from admin_api.config import AdminSettings
from audit.config import AuditSettings
from ct_monitor.config import CTSettings
from deploy.config import DeploySettings
from notify.config import NotifySettings
from renewal.config import RenewalSettings
from scanner.config import ScanSettings
from scheduler.config import SchedulerSettings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "default.toml"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _default_deny() -> list[IPNetwork]:
    from acme_server.va import DEFAULT_DENY

    return list(DEFAULT_DENY)


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    data_dir: Path = Path("var")
    listen: str = "127.0.0.1:8443"
    hostnames: list[str] = Field(default_factory=lambda: ["localhost"], min_length=1)
    public_url: str | None = None
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    shutdown_grace_seconds: float = Field(default=10, ge=0, le=600)
    # Plain-HTTP listener for CRLs and OCSP (RFC 5019 §5: served without TLS); "" disables it.
    http_listen: str = "127.0.0.1:8080"
    # The URL clients reach that listener at (put into certificates); default from http_listen.
    http_public_url: str | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_hostport(value)
        return value

    @field_validator("http_listen")
    @classmethod
    def _check_http_listen(cls, value: str) -> str:
        if value:
            parse_hostport(value)
        return value

    @field_validator("public_url", "http_public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class DatabaseSettings(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        ):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class Pkcs11Settings(_Section):
    # Empty module: certyard provisions a SoftHSM2 token under <data_dir>/softhsm (the default).
    module: str = ""
    token_label: str = "certyard"  # noqa: S105 - a token name, not a secret
    # File holding the user PIN (owner-only); empty with SoftHSM2: <data_dir>/softhsm/user-pin.
    pin_file: Path | None = None
    sessions: int = Field(default=4, ge=1, le=64)


KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
ALL_KEY_TYPES: list[KeyType] = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]


class ProfileSettings(_Section):
    name: str
    kind: Literal["tls-server", "tls-client", "device", "shortlived"]
    validity_days: float = Field(gt=0)
    key_types: list[KeyType] = Field(default_factory=lambda: list(ALL_KEY_TYPES))
    include_crl_dp: bool = True
    include_ocsp_aia: bool = False
    description: str = ""


class CASettings(_Section):
    backend: Literal["pkcs11", "software"] = "pkcs11"
    pkcs11: Pkcs11Settings = Field(default_factory=Pkcs11Settings)
    key_algorithm: KeyType = "ec-p256"
    organization: str = "certyard"
    root_common_name: str = "certyard Root CA"
    intermediate_common_name: str = "certyard Issuing CA 1"
    leaf_validity_days: int = Field(default=90, ge=1, le=398)
    key_passphrase_file: Path | None = None
    country: str = Field(default="XX", pattern=r"^[A-Z]{2}$")
    # Lint every certificate with pkilint before the real key signs it (off only for benchmarks).
    lint: bool = True
    # A private CA may certify internal names (.test, .internal, private IPs).
    allow_internal_names: bool = True
    default_profile: str = "tls-server"
    # Empty: the built-in profiles (tls-server, tls-client, device, shortlived).
    profiles: list[ProfileSettings] = Field(default_factory=list)
    crl_validity_hours: float = Field(default=168, gt=0, le=240)
    crl_regenerate_minutes: float = Field(default=60, gt=0)
    # Split each issuer's CRL into this many shards by serial (RFC 5280 §5.2.5 partitions).
    crl_shards: int = Field(default=1, ge=1, le=1024)
    ocsp_validity_hours: float = Field(default=96, ge=8, le=240)


class RateLimitSettings(_Section):
    capacity: int = Field(ge=1)
    period_seconds: int = Field(ge=1)


class AcmeRateLimits(_Section):
    enabled: bool = True
    new_orders_per_account: RateLimitSettings = RateLimitSettings(
        capacity=300, period_seconds=3 * 3600
    )
    new_orders_per_domain: RateLimitSettings = RateLimitSettings(
        capacity=50, period_seconds=7 * 86400
    )
    new_accounts_per_ip: RateLimitSettings = RateLimitSettings(capacity=10, period_seconds=3 * 3600)
    failed_validations_per_account: RateLimitSettings = RateLimitSettings(
        capacity=5, period_seconds=3600
    )
    # "account:<id>" or "eab:<kid>" -> capacity multiplier (e.g. 10 for a big customer).
    overrides: dict[str, float] = Field(default_factory=dict)


class VaAgentSettings(_Section):
    """One remote validation agent (``certyard va-agent``) for multi-perspective validation."""

    name: str = Field(min_length=1, max_length=64)
    url: str = Field(pattern=r"^https://")


class AcmeSettings(_Section):
    terms_of_service: str = ""
    website: str = ""
    caa_identities: list[str] = Field(default_factory=list)
    http01_port: int = Field(default=80, ge=1, le=65535)
    tlsalpn01_port: int = Field(default=443, ge=1, le=65535)
    dns_resolvers: list[str] = Field(default_factory=list)
    validation_deny: list[IPNetwork] = Field(default_factory=_default_deny)
    nonce_lifetime_seconds: int = Field(default=3600, ge=10)
    order_lifetime_seconds: int = Field(default=7 * 86400, ge=60)
    authz_lifetime_seconds: int = Field(default=30 * 86400, ge=60)
    authz_reuse_seconds: int = Field(default=30 * 86400, ge=0)
    validation_workers: int = Field(default=8, ge=1, le=256)
    validation_timeout_seconds: float = Field(default=10, gt=0, le=120)
    orders_page_size: int = Field(default=50, ge=1, le=1000)
    # RFC 8555 §7.3.4: refuse newAccount without an external account binding.
    require_eab: bool = False
    # RFC 8555 §7.4.1 newAuthz (pre-authorization).
    allow_preauthorization: bool = False
    # A finalize left "processing" this long by a dead instance is taken over by the next one.
    finalize_stale_seconds: int = Field(default=60, ge=5)
    # A validation job claimed by an instance that died is claimed again after this long.
    validation_lease_seconds: int = Field(default=60, ge=5)
    # draft-ietf-acme-dns-account-label (dns-account-01), off until the draft settles.
    dns_account_01: bool = False
    rate_limits: AcmeRateLimits = Field(default_factory=AcmeRateLimits)
    # Recheck CAA at finalize when an authorization was validated longer ago than this.
    caa_recheck_seconds: int = Field(default=28800, ge=0)
    # RFC 9773 §4.3: Retry-After on renewalInfo answers.
    ari_retry_after_seconds: int = Field(default=21600, ge=60, le=7 * 86400)
    # Multi-perspective validation: remote agents, mutual TLS files, and how many agents must
    # agree (0 = all but one, at least one).
    va_agents: list[VaAgentSettings] = Field(default_factory=list)
    va_client_cert: Path | None = None
    va_client_key: Path | None = None
    va_ca_file: Path | None = None
    va_quorum: int = Field(default=0, ge=0)
    va_timeout_seconds: float = Field(default=30, gt=0, le=300)
    # "br": enforce the Baseline Requirements' MPIC minimums (BR §3.2.2.9, acme_server/va/mpic.py):
    # at least mpic_min_perspectives agents, and va_quorum from the BR quorum table.
    mpic_policy: Literal["custom", "br"] = "custom"
    mpic_min_perspectives: int = Field(default=2, ge=2, le=64)

    @model_validator(mode="after")
    def _check_va_agents(self) -> AcmeSettings:
        if self.mpic_policy == "br":
            self._apply_br_mpic()
        if not self.va_agents:
            return self
        names = [agent.name for agent in self.va_agents]
        if len(set(names)) != len(names):
            raise ValueError("acme.va_agents: names must be unique")
        if self.va_quorum > len(self.va_agents):
            raise ValueError(
                f"acme.va_quorum {self.va_quorum} exceeds the {len(self.va_agents)} va_agents"
            )
        for key in ("va_client_cert", "va_client_key", "va_ca_file"):
            if getattr(self, key) is None:
                raise ValueError(f"acme.va_agents needs acme.{key} (mutual TLS)")
        return self

    def _apply_br_mpic(self) -> None:
        from acme_server.va.mpic import br_quorum

        count = len(self.va_agents)
        if count < self.mpic_min_perspectives:
            raise ValueError(
                f'acme.mpic_policy = "br" needs at least {self.mpic_min_perspectives} remote '
                f"perspectives (acme.va_agents), {count} configured"
            )
        required = br_quorum(count)
        if self.va_quorum and self.va_quorum < required:
            raise ValueError(
                f'acme.va_quorum {self.va_quorum} is below what acme.mpic_policy = "br" requires '
                f"for {count} remote perspectives ({required})"
            )
        # The server reads va_quorum: under "br" it is the BR quorum (or a stricter one set).
        self.va_quorum = max(self.va_quorum, required)

    @field_validator("dns_resolvers")
    @classmethod
    def _check_resolvers(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_hostport(item, default_port=53)
        return value


# RFC 7030 §3.2.2: a label is one path segment; it must not be an operation name.
EST_OPERATIONS = frozenset(
    {"cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs"}
)
_EST_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class EstLabelSettings(_Section):
    # "ecdsa" / "rsa": that chain's active intermediate; any other value: an intermediate's id;
    # "": whichever chain matches the CSR's key (cacerts then lists every active intermediate).
    issuer: str = ""
    profile: str = "device"
    auth: Literal["basic", "cert", "either", "both"] = "either"
    # RFC 7030 §4.2.2: a re-enrollment may certify the same key (renew) or a new one (rekey).
    reenroll_key_change: Literal["allow", "require", "forbid"] = "allow"
    # RFC 7030 §4.2.3: hold simpleenroll/serverkeygen requests for an operator (certyard est
    # approve/reject); the device gets 202 + Retry-After until then.
    approval: bool = False
    # RFC 7030 §3.5: the CSR's challengePassword must carry the TLS session's tls-unique value
    # (base64); missing or wrong: 401. Needs TLS 1.2 (the stdlib cannot export TLS 1.3 keys).
    channel_binding: bool = False
    # RFC 7030 §4.5 / RFC 9908: false answers csrattrs with 204 instead of the profile template.
    csr_attributes: bool = True
    # RFC 7030 §3.3.2 / IEEE 802.1AR: PEM files of manufacturer CAs whose IDevID certificates
    # may authenticate simpleenroll (initial enrollment) under this label.
    manufacturer_cas: list[Path] = Field(default_factory=list)
    # RFC 7030 §4.4.1.2 DecryptKeyIdentifier: a file (mode 0600) of "<key id hex> <AES key hex>"
    # lines, the symmetric keys devices share with this label for encrypted serverkeygen.
    decrypt_keys_file: Path | None = None
    # Enrollments (simpleenroll + simplereenroll + serverkeygen) per window and server process;
    # beyond it 429 with Retry-After. 0: unlimited.
    rate_limit: int = Field(default=0, ge=0)
    rate_limit_window_seconds: float = Field(default=60, gt=0, le=86400)

    @model_validator(mode="after")
    def _check_binding(self) -> EstLabelSettings:
        if self.channel_binding and self.approval:
            # RFC 7030 §3.5 / §4.2.3: the re-posted CSR would carry the first session's value.
            raise ValueError("channel_binding cannot be combined with approval")
        return self


def _default_est_labels() -> dict[str, EstLabelSettings]:
    return {"default": EstLabelSettings()}


class EstSettings(_Section):
    labels: dict[str, EstLabelSettings] = Field(default_factory=_default_est_labels)
    # The label served at /.well-known/est/<operation> (no label segment).
    default_label: str = "default"
    max_body_bytes: int = Field(default=16384, ge=1024, le=1024 * 1024)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, EstLabelSettings]) -> dict[str, EstLabelSettings]:
        for name in value:
            if not _EST_LABEL.match(name) or name in EST_OPERATIONS:
                raise ValueError(f"{name!r} is not a usable EST label (RFC 7030 §3.2.2)")
        return value

    @model_validator(mode="after")
    def _check_default(self) -> EstSettings:
        if self.default_label not in self.labels:
            raise ValueError(f"default_label {self.default_label!r} is not one of the labels")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CERTYARD__",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ca: CASettings = Field(default_factory=CASettings)
    acme: AcmeSettings = Field(default_factory=AcmeSettings)
    est: EstSettings = Field(default_factory=EstSettings)
    # Sections declared by the packages that read them (each package's config.py).
    scan: ScanSettings = Field(default_factory=ScanSettings)
    ct: CTSettings = Field(default_factory=CTSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    renewal: RenewalSettings = Field(default_factory=RenewalSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)

    # Set by load_settings(): the TOML files, lowest priority first.
    _toml_files: tuple[Path, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=list(_TOML_FILES), deep_merge=True)
        return (init_settings, env_settings, toml)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.server.data_dir / 'certyard.db').resolve()}"

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return parse_hostport(self.server.listen)

    @property
    def http_public_url(self) -> str | None:
        """Base URL of the plain-HTTP listener (CRL, OCSP), None when it is disabled."""
        if self.server.http_public_url:
            return self.server.http_public_url
        if not self.server.http_listen:
            return None
        host, port = parse_hostport(self.server.http_listen)
        # Where the listener really is, when it names one address (127.0.0.1 by default);
        # the server's first hostname when it listens on every address.
        unspecified = ("0.0.0.0", "::", "")  # noqa: S104 - comparing, not binding
        name = host if host not in unspecified else self.server.hostnames[0]
        if ":" in name:
            name = f"[{name}]"
        return f"http://{name}:{port}" if port != 80 else f"http://{name}"

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url
        _, port = self.listen_host_port
        name = self.server.hostnames[0]
        if ":" in name:
            name = f"[{name}]"
        return f"https://{name}:{port}" if port != 443 else f"https://{name}"


# pydantic-settings reads the TOML file list when the sources are built; load_settings() sets it.
_TOML_FILES: list[Path] = [DEFAULT_CONFIG]


class SettingsError(Exception):
    """A bad setting: the message is one line naming the key."""


def parse_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``host:port``, ``[v6]:port`` (or a bare host when a default port is given)."""
    host, sep, port_text = value.rpartition(":")
    if value.startswith("[") and "]" in value:
        close = value.index("]")
        host = value[1:close]
        rest = value[close + 1 :]
        if rest.startswith(":"):
            port_text, sep = rest[1:], ":"
        elif rest == "" and default_port is not None:
            return host, default_port
        else:
            raise ValueError(f"{value!r} is not host:port")
    elif not sep or ":" in host:
        if default_port is not None and ":" not in value:
            return value, default_port
        raise ValueError(f"{value!r} is not host:port")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r} is not host:port with a port from 1 to 65535")
    return host, int(port_text)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, or raise SettingsError with one line naming the offending key."""
    files = [DEFAULT_CONFIG]
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist")
        files.append(config_file)
    _TOML_FILES[:] = files
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise SettingsError(f"invalid setting {key}: {first['msg']}") from None
    except (ValueError, OSError) as exc:  # TOML syntax errors and unreadable files
        raise SettingsError(f"cannot read settings: {exc}") from None
