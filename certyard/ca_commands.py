"""``certyard ca ...``: key ceremony, status, root certificate, revocation, CRLs and rotation.

Every command builds the CA through ``certyard.wiring.build_services`` with the process
settings. Output goes to stdout; failures are one line on stderr, exit status 2 for usage and
configuration errors (CAError "malformed": a bad ceremony file, an unknown reason or issuer),
1 for operational ones (no such serial, a hierarchy that already exists, the token is down).
Nothing secret is ever printed: key references, public-key fingerprints and certificates only.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.ceremony import CHAINS, Ceremony, default_intermediate, load_ceremony
from ca.errors import CAError
from ca.hierarchy import IssuerHandle, Rotation, add_alternate_chain, add_intermediates, rotate
from ca.keys import spki_der
from certyard.settings import Settings
from certyard.wiring import HierarchyMode, Services, build_services, ca_config, utc_now
from storage.repositories.issuers import certificate_counts, list_issuers

EXIT_FAILED = 1
EXIT_USAGE = 2

# RFC 5280 §5.3.1 CRLReason names (value 7 is not used).
REASONS: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}
_REASON_NAMES = {code: name for name, code in REASONS.items()}

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = sub.add_parser("ca", help="CA commands: ceremony, status, revocation, CRLs, rotation")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    init = ca_sub.add_parser("init", help="create the CA hierarchy (key ceremony)")
    init.add_argument("--ceremony", type=Path, metavar="FILE", help="ceremony TOML file")
    init.add_argument(
        "--add-intermediate",
        action="store_true",
        help="add the file's intermediates (and alternate chains) to an existing hierarchy; "
        "without a file, the default intermediate of each chain that has none",
    )
    status = ca_sub.add_parser("status", help="issuers, key backend health, certificate counts")
    status.add_argument("--json", action="store_true", help="JSON instead of a table")
    ca_sub.add_parser("root", help="print the root CA certificate (PEM)")
    revoke = ca_sub.add_parser("revoke", help="revoke a certificate by serial number")
    revoke.add_argument("serial", help="hexadecimal serial (colons allowed)")
    revoke.add_argument(
        "--reason", default="unspecified", help="RFC 5280 reason: name (keyCompromise) or number"
    )
    crl = ca_sub.add_parser("crl", help="write the current CRL of a CA")
    crl.add_argument("--issuer", metavar="ID", help="CA id (default: the default intermediate)")
    crl.add_argument("--out", type=Path, metavar="FILE", help="file to write (default: stdout)")
    crl.add_argument("--pem", action="store_true", help="PEM instead of DER")
    rot = ca_sub.add_parser("rotate", help="replace a chain's active intermediate")
    rot.add_argument("--chain", choices=CHAINS, required=True)
    for command in (init, status, revoke, crl, rot, ca_sub.choices["root"]):
        command.add_argument("--config", type=Path, help="TOML file layered over conf/default.toml")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``certyard ca <command>``; returns the exit status."""
    commands: dict[str, Command] = {
        "init": _init,
        "status": _status,
        "root": _root,
        "revoke": _revoke,
        "crl": _crl,
        "rotate": _rotate,
    }
    try:
        return await commands[args.ca_command](args, settings)
    except CAError as exc:
        _fail(exc.detail)
        return EXIT_USAGE if exc.kind == "malformed" else EXIT_FAILED
    except OSError as exc:
        _fail(f"{exc.filename or 'I/O'}: {exc.strerror or exc}")
        return EXIT_FAILED


def _fail(message: str) -> None:
    print(f"certyard: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)


async def _with_services(
    settings: Settings, mode: HierarchyMode, work: Callable[[Services], Awaitable[int]]
) -> int:
    services = await build_services(settings, hierarchy_mode=mode)
    try:
        return await work(services)
    finally:
        await services.close()


# --- init ---------------------------------------------------------------------------------------


async def _init(args: argparse.Namespace, settings: Settings) -> int:
    config = ca_config(settings)
    ceremony = None if args.ceremony is None else load_ceremony(args.ceremony, config)
    if args.add_intermediate:
        try:
            services = await build_services(settings, hierarchy_mode="load")
        except CAError as exc:
            if exc.kind != "not_found":
                raise
        else:  # a hierarchy exists: add to it
            try:
                return await _add(services, ceremony)
            finally:
                await services.close()
    try:
        services = await build_services(settings, hierarchy_mode="create", ceremony=ceremony)
    except CAError as exc:
        if exc.kind != "conflict":
            raise
        raise CAError(
            "conflict",
            "this database already has a CA hierarchy: certyard ca init --add-intermediate "
            "adds intermediates to it, certyard ca rotate replaces one",
        ) from None
    try:
        hierarchy = services.hierarchy
        print(f"created the CA hierarchy (key backend {services.backend.name})")
        for handle in hierarchy.issuers:
            _describe(handle, sys.stdout)
        print(f"root certificate: {settings.server.data_dir / 'ca' / 'root.pem'}")
    finally:
        await services.close()
    return 0


async def _add(services: Services, ceremony: Ceremony | None) -> int:
    config = ca_config(services.settings)
    hierarchy = services.hierarchy
    if ceremony is None:
        missing = [chain for chain in CHAINS if hierarchy.active(chain) is None]
        if not missing:
            raise CAError(
                "conflict",
                "every chain already has an active intermediate: give a ceremony file, "
                "or use certyard ca rotate",
            )
        specs = [dataclasses.replace(default_intermediate(config, c), id=None) for c in missing]
        ceremony = Ceremony(None, tuple(specs))
    elif ceremony.root is not None:
        print(f"keeping the existing root {hierarchy.root.id}; the file's [root] is not used")
    if not ceremony.intermediates and not ceremony.alternate_chains:
        raise CAError("malformed", "the ceremony file adds no intermediate or alternate chain")
    rotations: list[Rotation] = []
    if ceremony.intermediates:
        rotations = await add_intermediates(
            services.sessions, services.backend, config, utc_now, hierarchy,
            ceremony.intermediates,
        )  # fmt: skip
    for rotation in rotations:
        print(f"added intermediate {rotation.created.id} under {hierarchy.root.id}")
        _describe(rotation.created, sys.stdout)
        _describe_retired(rotation)
    for spec in ceremony.alternate_chains:
        alternate = await add_alternate_chain(services.sessions, hierarchy, spec, utc_now)
        certs = x509.load_pem_x509_certificates(alternate.pem.encode("ascii"))
        print(f"added alternate chain {alternate.id} of {alternate.intermediate_id}: {spec.source}")
        for cert in certs:
            print(f"  {cert.subject.rfc4514_string()}  issued by  {cert.issuer.rfc4514_string()}")
    print("restart running certyard instances to use them (they load the hierarchy at start)")
    return 0


# --- status -------------------------------------------------------------------------------------


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    async def work(services: Services) -> int:
        health = await services.backend.health()
        async with services.sessions() as session:
            rows = await list_issuers(session)
            counts = await certificate_counts(session)
        rows.sort(key=lambda row: _ROLE_ORDER.get(row.role, len(_ROLE_ORDER)))  # stable
        issuers = []
        for row in rows:
            cert = x509.load_pem_x509_certificates(row.cert_pem.encode("ascii"))[0]
            issuers.append(
                {
                    "id": row.id,
                    "role": row.role,
                    "chain": row.chain,
                    "status": row.status,
                    "subject": cert.subject.rfc4514_string(),
                    "not_before": _time(cert.not_valid_before_utc),
                    "not_after": _time(cert.not_valid_after_utc),
                    "key_backend": row.key_backend,
                    "key_ref": row.key_ref,
                    "spki_sha256": hashlib.sha256(spki_der(cert.public_key())).hexdigest(),
                    "parent_id": row.parent_id,
                    "alternate_of": row.alternate_of,
                    "retired_at": None if row.retired_at is None else _time(row.retired_at),
                    "certificates_signed": counts.get(row.id, 0),
                }
            )
        backend = {"name": services.backend.name, "ok": health.ok, "detail": health.detail}
        if args.json:
            json.dump({"key_backend": backend, "issuers": issuers}, sys.stdout, indent=2)
            print()
        else:
            state = "ok" if health.ok else "NOT OK"
            store = "token" if services.backend.name == "pkcs11" else "keys"
            print(f"key backend: {services.backend.name}, {store} {state} ({health.detail})")
            _table(issuers, sys.stdout)
        return 0 if health.ok else EXIT_FAILED

    return await _with_services(settings, "load", work)


_ROLE_ORDER = {"root": 0, "intermediate": 1, "alternate": 2, "ocsp": 3}
_COLUMNS = (
    ("ID", "id"),
    ("ROLE", "role"),
    ("CHAIN", "chain"),
    ("STATUS", "status"),
    ("NOT AFTER", "not_after"),
    ("SIGNED", "certificates_signed"),
    ("BACKEND", "key_backend"),
    ("KEY REF", "key_ref"),
    ("SUBJECT", "subject"),
)


def _table(issuers: list[dict[str, Any]], out: TextIO) -> None:
    cells = [[title for title, _ in _COLUMNS]]
    for row in issuers:
        cells.append(["-" if row[key] is None else str(row[key]) for _, key in _COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    for line in cells:
        padded = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.write("  ".join(padded).rstrip() + "\n")


# --- root, revoke, crl, rotate ------------------------------------------------------------------


async def _root(args: argparse.Namespace, settings: Settings) -> int:
    async def work(services: Services) -> int:
        sys.stdout.write(services.hierarchy.root_pem())
        return 0

    # As before: on an empty database this creates the hierarchy (like the first serve).
    return await _with_services(settings, "load_or_create", work)


def parse_reason(value: str) -> int:
    """An RFC 5280 §5.3.1 reason by name (case-insensitive) or number."""
    if value.isdigit() and int(value) in _REASON_NAMES:
        return int(value)
    for name, code in REASONS.items():
        if name.lower() == value.lower():
            return code
    choices = ", ".join(f"{name} ({code})" for name, code in REASONS.items())
    raise CAError("malformed", f"unknown revocation reason {value!r}; one of {choices}")


async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    reason = parse_reason(args.reason)

    async def work(services: Services) -> int:
        try:
            stored = await services.authority.revoke_serial(args.serial, reason)
        except CAError as exc:
            if exc.kind == "conflict":
                raise CAError("conflict", f"certificate {args.serial} is already revoked") from None
            raise
        when = "" if stored.revoked_at is None else f" at {_time(stored.revoked_at)}"
        print(
            f"revoked serial {stored.serial_hex} (certificate {stored.id}, issuer "
            f"{stored.issuer_id}, reason {_REASON_NAMES[reason]}){when}"
        )
        return 0

    return await _with_services(settings, "load", work)


async def _crl(args: argparse.Namespace, settings: Settings) -> int:
    async def work(services: Services) -> int:
        issuer_id = args.issuer or services.hierarchy.intermediate.id
        if issuer_id not in services.crls.issuer_ids:
            known = ", ".join(services.crls.issuer_ids)
            raise CAError("malformed", f"no CA {issuer_id!r}; CRLs exist for {known}")
        published = await services.crls.current(issuer_id)
        crl = x509.load_der_x509_crl(published.der)
        data = crl.public_bytes(Encoding.PEM) if args.pem else published.der
        if args.out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return 0
        args.out.write_bytes(data)
        print(
            f"wrote the CRL of {issuer_id} to {args.out}: number {published.number}, "
            f"{len(crl)} entries, next update {_time(published.next_update)}"
        )
        return 0

    return await _with_services(settings, "load", work)


async def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    async def work(services: Services) -> int:
        rotation = await rotate(
            services.sessions, services.backend, ca_config(settings), utc_now,
            services.hierarchy, args.chain,
        )  # fmt: skip
        print(f"rotated the {args.chain} chain: {rotation.created.id} is its active intermediate")
        _describe(rotation.created, sys.stdout)
        _describe_retired(rotation)
        print("restart running certyard instances: they issue from what they loaded at start")
        return 0

    return await _with_services(settings, "load", work)


# --- output -------------------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(handle: IssuerHandle, out: TextIO) -> None:
    cert = handle.certificate
    role = handle.role if handle.chain is None else f"{handle.role}, chain {handle.chain}"
    if handle.role != "root":
        role += f", {handle.status}"
    lines = [
        f"{handle.id}  ({role})",
        f"  subject        {cert.subject.rfc4514_string()}",
        f"  key            {handle.algorithm}, {handle.key_ref}",
        f"  SPKI SHA-256   {hashlib.sha256(spki_der(cert.public_key())).hexdigest()}",
        f"  serial         {cert.serial_number:x}",
        f"  validity       {_time(cert.not_valid_before_utc)} to {_time(cert.not_valid_after_utc)}",
    ]
    extensions = cert.extensions
    path_length = extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    lines.append(f"  path length    {'none' if path_length is None else path_length}")
    try:
        constraints = extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        lines.append(f"  constraints    {describe_name_constraints(constraints)}")
    out.write("\n".join(lines) + "\n")


def _describe_retired(rotation: Rotation) -> None:
    if rotation.retired is not None:
        print(
            f"retired {rotation.retired.id}: it issues no more, and keeps signing CRLs and "
            "OCSP answers for the certificates it issued"
        )


def describe_name_constraints(constraints: x509.NameConstraints) -> str:
    """One line: "permitted DNS a, b; excluded IP 0.0.0.0/0, ::/0; ..."."""
    parts = []
    for label, subtrees in (
        ("permitted", constraints.permitted_subtrees),
        ("excluded", constraints.excluded_subtrees),
    ):
        by_type: dict[str, list[str]] = {}
        for name in subtrees or []:
            if isinstance(name, x509.DNSName):
                by_type.setdefault("DNS", []).append(name.value)
            elif isinstance(name, x509.IPAddress):
                by_type.setdefault("IP", []).append(str(name.value))
            elif isinstance(name, x509.DirectoryName):
                by_type.setdefault("directory", []).append(name.value.rfc4514_string())
            else:
                by_type.setdefault(type(name).__name__, []).append(str(name.value))
        parts += [f"{label} {kind} {', '.join(values)}" for kind, values in by_type.items()]
    return "; ".join(parts)
