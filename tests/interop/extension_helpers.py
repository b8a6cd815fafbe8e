"""Helpers for the ACME extension interop tests (EAB, ARI, profiles).

* :class:`Certbot` runs the real certbot (from .venv) against one certyard, with its own config,
  work and logs directories;
* :func:`certyard_cli` runs ``certyard acme ...`` as a subprocess with the server's environment
  (same data dir and database), and :func:`create_eab_key` wraps ``certyard acme eab create``;
* :func:`cert_id` computes an RFC 9773 §4.1 certID independently of the server's code, and
  :func:`renewal_info` fetches ``GET {renewalInfo}/{certID}`` over TLS verified against certyard's
  root;
* :class:`AcmeLib` drives certbot's ``acme`` library directly, for what certbot 5.8 itself does
  not send (``replaces`` in newOrder, RFC 9773 §5), answering http-01 with the library's own
  standalone server.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import sqlite3
import subprocess
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from acme import challenges, client, crypto_util, messages, standalone
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.json_util import field
from josepy.jwa import ES256, RS256
from josepy.jwk import JWK, JWKEC

from tests.interop.conftest import CLIENT_TIMEOUT, Interop
from tests.support.server import CertyardServer, certyard_command

EMAIL = "test@example.com"
CLI_TIMEOUT = 60.0
HTTP_TIMEOUT = 30.0
ACME_DEADLINE = dt.timedelta(seconds=90)


# -- certyard's command line ---------------------------------------------------------------------


def certyard_cli(server: CertyardServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``certyard <args>`` with the server's settings; fails the test with its output."""
    argv = [*certyard_command(), *args]
    try:
        result = subprocess.run(
            argv,
            env=server.environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{argv} timed out after {CLI_TIMEOUT:.0f} s: {exc}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"{argv} failed (exit status {result.returncode})\n--- stdout ---\n{result.stdout}"
            f"\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


@dataclass(frozen=True)
class EabCredentials:
    kid: str
    hmac_key: str  # base64url, no padding


def create_eab_key(
    server: CertyardServer,
    *,
    allow_domains: Sequence[str] = (),
    profiles: Sequence[str] = (),
    max_validity_days: int | None = None,
) -> EabCredentials:
    """``certyard acme eab create``: the key id on the first line, the HMAC key on the second."""
    args = ["acme", "eab", "create"]
    args += [arg for domain in allow_domains for arg in ("--allow-domain", domain)]
    args += [arg for profile in profiles for arg in ("--profile", profile)]
    if max_validity_days is not None:
        args += ["--max-validity-days", str(max_validity_days)]
    lines = certyard_cli(server, *args).stdout.splitlines()
    assert len(lines) == 2, lines
    kid, hmac_key = lines
    # base64url without padding (RFC 8555 §7.3.4 leaves the encoding to the CA; clients expect it)
    assert kid and set(hmac_key) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    ), lines
    assert len(base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))) >= 16
    return EabCredentials(kid, hmac_key)


def eab_keys(server: CertyardServer) -> dict[str, dict[str, Any]]:
    """``certyard acme eab list`` (one JSON object a line), by key id."""
    out = certyard_cli(server, "acme", "eab", "list").stdout
    keys = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {key["kid"]: key for key in keys}


# -- RFC 9773 ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content octets)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    serial = cert.serial_number
    # A positive DER INTEGER: minimal big-endian two's complement, so one more bit for the sign.
    octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    return f"{_b64url(aki.key_identifier)}.{_b64url(octets)}"


@dataclass(frozen=True)
class RenewalInfo:
    start: dt.datetime
    end: dt.datetime
    retry_after: str | None
    body: dict[str, Any]


def _rfc3339(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, text
    return parsed


def get_json(server: CertyardServer, url: str) -> tuple[dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, method="GET")
    with urllib.request.urlopen(
        request, timeout=HTTP_TIMEOUT, context=server.ssl_context()
    ) as response:
        body = json.loads(response.read())
        return body, dict(response.headers.items())


def directory(server: CertyardServer) -> dict[str, Any]:
    return get_json(server, server.directory_url)[0]


def renewal_info(server: CertyardServer, cert: x509.Certificate) -> RenewalInfo:
    """``GET {renewalInfo}/{certID}`` (no authentication, RFC 9773 §4.1)."""
    base = directory(server)["renewalInfo"]
    body, headers = get_json(server, f"{base}/{cert_id(cert)}")
    window = body["suggestedWindow"]
    return RenewalInfo(
        _rfc3339(window["start"]), _rfc3339(window["end"]), headers.get("Retry-After"), body
    )


def retry_after_seconds(value: str) -> float:
    """Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value.isdigit():
        return float(value)
    when = email.utils.parsedate_to_datetime(value)
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


# -- certyard's database (SQLite) ----------------------------------------------------------------


def db_query(server: CertyardServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    path = server.data_dir / "certyard.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql, params).fetchall()


def order_of_serial(server: CertyardServer, serial: int) -> tuple[str, str | None, str | None]:
    """(order id, replaces, profile) of the order that issued the certificate ``serial``."""
    digits = format(serial, "x")
    digits = digits if len(digits) % 2 == 0 else "0" + digits
    rows = db_query(
        server,
        "SELECT o.id, o.replaces, o.profile FROM orders o "
        "JOIN certificates c ON c.order_id = o.id WHERE c.serial = ?",
        digits,
    )
    assert len(rows) == 1, (digits, rows)
    order_id, replaces, profile = rows[0]
    return order_id, replaces, profile


def db_order(server: CertyardServer, order_url: str) -> tuple[str, str | None, str | None]:
    """(order id, replaces, profile) of the order at ``order_url``."""
    order_id = order_url.rstrip("/").rsplit("/", 1)[-1]
    rows = db_query(server, "SELECT id, replaces, profile FROM orders WHERE id = ?", order_id)
    assert len(rows) == 1, (order_url, rows)
    found_id, replaces, profile = rows[0]
    return found_id, replaces, profile


# -- certbot -------------------------------------------------------------------------------------


@dataclass
class Certbot:
    interop: Interop
    path: str
    base: Path

    def argv(self, command: str, *args: str) -> list[str]:
        return [
            self.path,
            command,
            "--config-dir", str(self.base / "config"),
            "--work-dir", str(self.base / "work"),
            "--logs-dir", str(self.base / "logs"),
            "--server", self.interop.certyard.directory_url,
            "--non-interactive",
            *args,
        ]  # fmt: skip

    def run(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"REQUESTS_CA_BUNDLE": str(self.interop.certyard.root_pem_path)}
        return self.interop.run(
            self.argv(command, *args), env=env, check=check, timeout=CLIENT_TIMEOUT
        )

    def http_flags(self) -> list[str]:
        return [
            "--standalone",
            "--preferred-challenges", "http",
            "--http-01-address", "127.0.0.1",
            "--http-01-port", str(self.interop.http01_port),
        ]  # fmt: skip

    def certonly(
        self, cert_name: str, names: Sequence[str], *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``certonly`` over http-01 (certbot's standalone server) for ``names``."""
        return self.run(
            "certonly",
            "--agree-tos", "-m", EMAIL, "--no-eff-email",
            *self.http_flags(),
            "--cert-name", cert_name,
            *[arg for name in names for arg in ("-d", name)],
            *extra,
            check=check,
        )  # fmt: skip

    def live(self, cert_name: str) -> Path:
        return self.base / "config" / "live" / cert_name

    def renewal_conf(self, cert_name: str) -> Path:
        return self.base / "config" / "renewal" / f"{cert_name}.conf"

    def log_text(self) -> str:
        log = self.base / "logs" / "letsencrypt.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def account(self) -> tuple[JWK, str]:
        """certbot's (only) account on this server: its key and its URL."""
        found = list((self.base / "config" / "accounts").rglob("regr.json"))
        assert len(found) == 1, found
        regr = json.loads(found[0].read_text())
        key = JWK.json_loads(found[0].with_name("private_key.json").read_text())
        return key, regr["uri"]

    def failure(self, result: subprocess.CompletedProcess[str], what: str) -> str:
        return self.interop.report(
            result.args, result.returncode, result.stdout, result.stderr, what
        )


# -- certbot's acme library, directly ------------------------------------------------------------


class NewOrderReplacing(messages.NewOrder):
    """newOrder with RFC 9773 §5 ``replaces``, which acme 5.8's NewOrder does not declare."""

    replaces: str = field("replaces", omitempty=True)


@dataclass
class PlacedOrder:
    url: str
    body: dict[str, Any]  # the JSON the server answered, unknown fields included
    resource: messages.OrderResource
    key_pem: bytes


class AcmeLib:
    """certbot's ``acme`` library (ClientV2) against certyard, trusting only certyard's root."""

    def __init__(
        self, interop: Interop, key: JWK | None = None, account_url: str | None = None
    ) -> None:
        self.interop = interop
        if key is None:
            key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        alg = ES256 if isinstance(key, JWKEC) else RS256
        account = None
        if account_url is not None:
            account = messages.RegistrationResource(uri=account_url, body=messages.Registration())
        # requests takes a CA bundle path where ClientNetwork declares a bool.
        verify = cast(bool, str(interop.certyard.root_pem_path))
        self.net = client.ClientNetwork(
            key, account=account, alg=alg, verify_ssl=verify, user_agent="certyard-interop-test"
        )
        self.client = client.ClientV2(
            messages.Directory.from_json(directory(interop.certyard)), self.net
        )
        # The library turns a 409 into ConflictError without its problem document: keep the
        # last response (a requests hook) to read it.
        self.last_response: requests.Response | None = None
        self.net.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_response = response

    def register(self) -> messages.RegistrationResource:
        return self.client.new_account(
            messages.NewRegistration.from_data(email=EMAIL, terms_of_service_agreed=True)
        )

    def new_order(
        self, names: Sequence[str], *, replaces: str | None = None, profile: str | None = None
    ) -> PlacedOrder:
        """POST newOrder; a problem document raises :class:`acme.messages.Error`."""
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        csr_pem = crypto_util.make_csr(key_pem, list(names))
        request = NewOrderReplacing(
            identifiers=[
                messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in names
            ],
            replaces=replaces or "",
            profile=profile or "",
        )
        response = self.net.post(self.client.directory["newOrder"], request)
        body = response.json()
        authzrs = []
        for url in body["authorizations"]:
            authz = self.net.post(url, None)  # POST-as-GET
            authzrs.append(
                messages.AuthorizationResource(
                    body=messages.Authorization.from_json(authz.json()), uri=url
                )
            )
        resource = messages.OrderResource(
            body=messages.Order.from_json(body),
            uri=response.headers["Location"],
            authorizations=authzrs,
            csr_pem=csr_pem,
        )
        return PlacedOrder(response.headers["Location"], body, resource, key_pem)

    def refused_order(
        self, names: Sequence[str], *, replaces: str | None = None, profile: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """newOrder that must fail: the HTTP status and the problem document."""
        try:
            order = self.new_order(names, replaces=replaces, profile=profile)
        except (messages.Error, acme_errors.ConflictError):
            response = self.last_response
            assert response is not None
            assert response.headers.get("Content-Type", "").startswith(
                "application/problem+json"
            ), (response.status_code, response.headers, response.text)
            return response.status_code, response.json()
        pytest.fail(f"newOrder {names} replacing {replaces} was accepted: {order.body}")

    def complete(self, order: PlacedOrder) -> str:
        """Answer pending http-01 challenges, finalize, and return the PEM chain."""
        deadline = dt.datetime.now() + ACME_DEADLINE
        with self._http01(order.resource.authorizations) as pending:
            for challb in pending:
                self.client.answer_challenge(challb, challb.chall.response(self.net.key))
            resource = self.client.poll_authorizations(order.resource, deadline)
            resource = self.client.finalize_order(resource, deadline)
        assert resource.fullchain_pem
        return str(resource.fullchain_pem)

    @contextmanager
    def _http01(
        self, authzrs: Sequence[messages.AuthorizationResource]
    ) -> Iterator[list[messages.ChallengeBody]]:
        pending = [
            challb
            for authzr in authzrs
            if authzr.body.status == messages.STATUS_PENDING
            for challb in authzr.body.challenges
            if isinstance(challb.chall, challenges.HTTP01)
        ]
        if not pending:
            yield []
            return
        resources = set()
        for challb in pending:
            response, validation = challb.response_and_validation(self.net.key)
            resources.add(
                standalone.HTTP01RequestHandler.HTTP01Resource(
                    chall=challb.chall, response=response, validation=validation
                )
            )
        server = standalone.HTTP01Server(("127.0.0.1", self.interop.http01_port), resources)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield pending
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
