"""Builds the EST front end from the settings: the labels resolved against the CA hierarchy
and the profiles, and the extra trust anchors the TLS listener needs for IDevID clients.

``certyard.server`` calls :func:`build_est_context` and, on its server SSL context,
:func:`add_manufacturer_trust`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.config import SERVER_KINDS
from ca.errors import CAError
from certyard.settings import Settings
from certyard.wiring import Services, ca_config, utc_now
from est_server.context import EstContext, EstLabel
from est_server.csrattrs import csr_attributes


def _load_cas(paths: list[Path], where: str) -> tuple[x509.Certificate, ...]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            certificates += x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CAError(
                "malformed", f"{where}: cannot read CA certificates from {path}: {exc}"
            ) from None
    return tuple(certificates)


def load_decrypt_keys(path: Path | None, where: str) -> dict[bytes, bytes]:
    """``<key id hex> <AES-128/192/256 key hex>`` lines ("#" comments); the file must not be
    readable by group or others (the keys are secrets shared with devices)."""
    if path is None:
        return {}
    try:
        if path.stat().st_mode & 0o077:
            raise CAError("malformed", f"{where}: {path} must not be readable by others (0600)")
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CAError("malformed", f"{where}: cannot read {path}: {exc.strerror}") from None
    keys: dict[bytes, bytes] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            key_id_hex, key_hex = text.split()
            key_id, key = bytes.fromhex(key_id_hex), bytes.fromhex(key_hex)
        except ValueError:
            key_id, key = b"", b""
        if not key_id or len(key) not in (16, 24, 32):
            # Never echo the line: it holds a secret.
            raise CAError(
                "malformed", f"{where}: {path} line {number}: expected '<key id hex> <AES key hex>'"
            )
        keys[key_id] = key
    return keys


def manufacturer_cas(settings: Settings) -> list[x509.Certificate]:
    """Every label's manufacturer CAs (IDevID issuers, RFC 7030 §3.3.2), without duplicates."""
    seen: dict[bytes, x509.Certificate] = {}
    for name, label in settings.est.labels.items():
        for ca in _load_cas(label.manufacturer_cas, f"est.labels.{name}.manufacturer_cas"):
            seen.setdefault(ca.public_bytes(serialization.Encoding.DER), ca)
    return list(seen.values())


def add_manufacturer_trust(context: ssl.SSLContext, settings: Settings) -> None:
    """Let the TLS listener accept client certificates of the labels' manufacturer CAs (the
    handshake verifies the chain; est_server.auth.check_idevid then checks the label)."""
    cas = manufacturer_cas(settings)
    if cas:
        context.load_verify_locations(
            cadata="".join(ca.public_bytes(serialization.Encoding.PEM).decode() for ca in cas)
        )


def build_est_context(services: Services) -> EstContext:
    """The EST labels of the settings, resolved against the CA hierarchy (CAError
    "malformed" for a label naming an unknown profile or issuer, or an unreadable CA file)."""
    settings = services.settings
    hierarchy = services.hierarchy
    profiles = {profile.name: profile for profile in ca_config(settings).profiles}
    labels: dict[str, EstLabel] = {}
    for name, label in settings.est.labels.items():
        where = f"est.labels.{name}"
        profile = profiles.get(label.profile)
        if profile is None:
            raise CAError("malformed", f"{where}.profile: no profile {label.profile!r}")
        chain: str | None = None
        if not label.issuer:
            issuers = [handle for handle in hierarchy.intermediates if handle.active]
        else:
            found = (
                hierarchy.active(label.issuer)
                if label.issuer in ("ecdsa", "rsa")
                else hierarchy.issuer(label.issuer)
            )
            if found is None or found.chain is None or not found.active:
                raise CAError(
                    "malformed", f"{where}.issuer: no active intermediate {label.issuer!r}"
                )
            issuers, chain = [found], found.chain
        use_common_name = profile.kind not in SERVER_KINDS
        labels[name] = EstLabel(
            name=name,
            # RFC 7030 §4.1.3: the issuing CA certificate(s), then the root.
            ca_certificates=(*(h.certificate for h in issuers), hierarchy.root.certificate),
            profile=label.profile,
            auth=label.auth,
            reenroll_key_change=label.reenroll_key_change,
            chain=chain,
            use_common_name=use_common_name,
            approval=label.approval,
            channel_binding=label.channel_binding,
            csr_attributes=(
                csr_attributes(
                    profile,
                    chain=chain,
                    channel_binding=label.channel_binding,
                    common_name=use_common_name,
                )
                if label.csr_attributes
                else None
            ),
            manufacturer_cas=_load_cas(label.manufacturer_cas, f"{where}.manufacturer_cas"),
            decrypt_keys=load_decrypt_keys(label.decrypt_keys_file, f"{where}.decrypt_keys_file"),
            rate_limit=label.rate_limit,
            rate_limit_window_seconds=label.rate_limit_window_seconds,
        )
    return EstContext(
        labels=labels,
        default_label=settings.est.default_label,
        issuer=services.authority,
        lookup=services.issuance,
        sessions=services.sessions,
        clock=utc_now,
        max_body_bytes=settings.est.max_body_bytes,
    )
