"""ACME extensions with the real clients: EAB (RFC 8555 §7.3.4), ARI (RFC 9773), profiles.

Two certyard servers (SQLite) share the module's test DNS server: the module's default one
(``interop``) and one started with ``acme.require_eab=true`` (``eab_interop``).

* EAB, certbot: without ``--eab-kid``/``--eab-hmac-key`` certbot refuses to register (it reads
  ``meta.externalAccountRequired``), and the server itself refuses a newAccount without a binding
  (``externalAccountRequired``, checked with certbot's ``acme`` library); with the key, certbot
  obtains a certificate for the names the key allows; a name outside ``--allow-domain`` is
  ``rejectedIdentifier``; the key cannot bind a second account; after ``eab revoke`` the
  account's orders are refused; a key limited to one profile refuses another
  (``invalidProfile``).
* EAB, lego 4.9.1 (``--eab --kid --hmac``): without them lego refuses to register; with them,
  a certificate over http-01, no longer valid than the key's ``--max-validity-days``; with a key
  whose policy forbids the name, ``rejectedIdentifier``.
* ARI, certbot 5.8 (which consults ``renewalInfo`` in ``certbot renew`` but sends no
  ``replaces``): not renewed while the suggested window is ahead; after ``certyard acme ari
  advance`` moves the window into the past, ``certbot renew`` renews. ``replaces`` (RFC 9773 §5)
  is then exercised through certbot's ``acme`` library with certbot's own account: the order
  records the certID, and a second order replacing the same certificate is 409
  ``alreadyReplaced``.
* Profiles, certbot (``--preferred-profile`` / ``--required-profile``): ``shortlived`` gives a
  certificate of at most 7 days; an unknown required profile is ``invalidProfile``.

Every certificate is checked with ``openssl verify`` against certyard's root and its exact SANs.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import configobj  # type: ignore[import-untyped]
import pytest
from acme import messages
from cryptography import x509

from tests.interop.conftest import Interop, serial_of, split_pem
from tests.interop.extension_helpers import (
    EMAIL,
    AcmeLib,
    Certbot,
    cert_id,
    certyard_cli,
    create_eab_key,
    db_order,
    directory,
    eab_keys,
    order_of_serial,
    renewal_info,
    retry_after_seconds,
)
from tests.support.dnsserver import TestDNSServer
from tests.support.server import CertyardServer, free_port
from tests.support.tools import require_tool

pytestmark = pytest.mark.interop

SHORTLIVED_MAX = dt.timedelta(days=7)


@pytest.fixture(scope="module")
def eab_interop(interop_dir: Path, dns_server: TestDNSServer) -> Iterator[Interop]:
    """A second certyard that requires an external account binding for every new account."""
    data_dir = interop_dir / "certyard-eab"
    server = CertyardServer(
        data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir}/certyard.db",
        http01_port=free_port(),
        tlsalpn01_port=free_port(),
        dns_resolvers=[dns_server.address],
        validation_deny=[],
        extra_env={"CERTYARD__ACME__REQUIRE_EAB": "true"},
        name="certyard-eab",
    )
    work_dir = interop_dir / "work-eab"
    work_dir.mkdir(exist_ok=True)
    with server:
        yield Interop(
            certyard=server,
            dns=dns_server,
            txt_dir=interop_dir / "txt",
            work_dir=work_dir,
            openssl=require_tool("openssl"),
        )


def certbot_in(interop: Interop, name: str) -> Certbot:
    base = interop.work_dir / name
    base.mkdir()
    return Certbot(interop, require_tool("certbot"), base)


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def assert_refused(
    interop: Interop, result: subprocess.CompletedProcess[str], problem: str
) -> None:
    """The client failed, and its output names the ACME problem type (its URN)."""
    what = f"did not fail with urn:ietf:params:acme:error:{problem}"
    report = interop.report(result.args, result.returncode, result.stdout, result.stderr, what)
    assert result.returncode != 0, report
    assert f"urn:ietf:params:acme:error:{problem}" in output_of(result), report


def lifetime(cert: x509.Certificate) -> dt.timedelta:
    # RFC 5280 §4.1.2.5: the validity period includes both notBefore and notAfter.
    return cert.not_valid_after_utc - cert.not_valid_before_utc + dt.timedelta(seconds=1)


# -- EAB -----------------------------------------------------------------------------------------


def test_certbot_eab(eab_interop: Interop) -> None:
    server = eab_interop.certyard
    assert directory(server)["meta"]["externalAccountRequired"] is True
    key = create_eab_key(server, allow_domains=["eab.example.test", "*.eab-sub.example.test"])
    assert eab_keys(server)[key.kid]["state"] == "unused"
    certbot = certbot_in(eab_interop, "certbot-eab")
    eab = ("--eab-kid", key.kid, "--eab-hmac-key", key.hmac_key)

    # Without a binding: certbot refuses before it sends newAccount ...
    plain = certbot.run("register", "--agree-tos", "-m", EMAIL, "--no-eff-email", check=False)
    assert plain.returncode != 0, certbot.failure(plain, "registered without EAB")
    assert "external account" in output_of(plain).lower(), certbot.failure(plain, "no EAB hint")
    assert not list((certbot.base / "config" / "accounts").rglob("regr.json"))
    # ... and the server refuses one all the same (RFC 8555 §7.3.4).
    with pytest.raises(messages.Error) as refused:
        AcmeLib(eab_interop).register()
    assert refused.value.code == "externalAccountRequired", refused.value

    # With it: a certificate for two names the key allows (one exact, one below *.).
    names = ["eab.example.test", "www.eab-sub.example.test"]
    certbot.certonly("eab", names, *eab)
    live = certbot.live("eab")
    eab_interop.check_certificate(live / "cert.pem", live / "chain.pem", names)
    bound = eab_keys(server)[key.kid]
    assert bound["state"] == "bound" and bound["account"], bound

    # A name outside the key's policy: the order is refused.
    # (--debug: certbot then prints the ACME error with its type, not only its detail.)
    outside = certbot.certonly("outside", ["outside.example.test"], "--debug", check=False)
    assert_refused(eab_interop, outside, "rejectedIdentifier")
    assert "external account policy" in output_of(outside)
    assert not certbot.live("outside").exists()

    # The key is bound: a second account cannot use it.
    other = certbot_in(eab_interop, "certbot-eab-other")
    again = other.run(
        "register", "--agree-tos", "-m", EMAIL, "--no-eff-email", "--debug", *eab, check=False
    )
    assert_refused(eab_interop, again, "unauthorized")
    assert not list((other.base / "config" / "accounts").rglob("regr.json"))

    # A key limited to the tls-server profile: shortlived (a profile the CA offers) is refused.
    narrow = create_eab_key(server, allow_domains=["*.example.test"], profiles=["tls-server"])
    profiled = other.certonly(
        "profiled", ["eab-profile.example.test"],
        "--eab-kid", narrow.kid, "--eab-hmac-key", narrow.hmac_key,
        "--required-profile", "shortlived", "--debug",
        check=False,
    )  # fmt: skip
    assert_refused(eab_interop, profiled, "invalidProfile")
    assert eab_keys(server)[narrow.kid]["state"] == "bound"

    # Revoked key: its account may not order any more, not even allowed names.
    certyard_cli(server, "acme", "eab", "revoke", key.kid)
    assert eab_keys(server)[key.kid]["state"] == "revoked"
    revoked = certbot.certonly("after-revoke", ["eab.example.test"], "--debug", check=False)
    assert_refused(eab_interop, revoked, "unauthorized")


def test_lego_eab(eab_interop: Interop) -> None:
    lego_path = require_tool("lego")
    server = eab_interop.certyard
    env = {"LEGO_CA_CERTIFICATES": str(server.root_pem_path)}

    def lego(
        base: Path, names: list[str], *flags: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            lego_path,
            "--server", server.directory_url,
            "--accept-tos",
            "--email", EMAIL,
            "--path", str(base),
            *[arg for name in names for arg in ("-d", name)],
            *flags,
            "--http", "--http.port", f"127.0.0.1:{eab_interop.http01_port}",
            "run",
        ]  # fmt: skip
        return eab_interop.run(argv, env=env, check=check)

    names = ["lego-eab.example.test"]
    base = eab_interop.work_dir / "lego-eab"

    # lego reads meta.externalAccountRequired and stops before newAccount.
    plain = lego(eab_interop.work_dir / "lego-plain", names, check=False)
    report = eab_interop.report(plain.args, plain.returncode, plain.stdout, plain.stderr, "")
    assert plain.returncode != 0, report
    assert "external account" in output_of(plain).lower(), report

    key = create_eab_key(server, allow_domains=names, max_validity_days=10)
    lego(base, names, "--eab", "--kid", key.kid, "--hmac", key.hmac_key)
    cert = eab_interop.check_bundle(base / "certificates" / f"{names[0]}.crt", names)
    assert eab_keys(server)[key.kid]["state"] == "bound"

    # A key whose policy allows another name only.
    narrow = create_eab_key(server, allow_domains=["lego-other.example.test"])
    forbidden = ["lego-forbidden.example.test"]
    base2 = eab_interop.work_dir / "lego-forbidden"
    result = lego(base2, forbidden, "--eab", "--kid", narrow.kid, "--hmac", narrow.hmac_key,
                  check=False)  # fmt: skip
    assert_refused(eab_interop, result, "rejectedIdentifier")
    assert not (base2 / "certificates" / f"{forbidden[0]}.crt").exists()

    # The key's --max-validity-days caps the certificate's validity period (notBefore through
    # notAfter inclusive, RFC 5280 §4.1.2.5, as the CA's own profiles count it).
    assert lifetime(cert) <= dt.timedelta(days=10), (
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        lifetime(cert),
    )


# -- ARI (RFC 9773) ------------------------------------------------------------------------------


def test_certbot_ari_renewal(interop: Interop) -> None:
    server = interop.certyard
    assert directory(server)["renewalInfo"], directory(server)
    certbot = certbot_in(interop, "certbot-ari")
    names = ["ari.example.test"]
    certbot.certonly("ari", names)
    live = certbot.live("ari")
    first = interop.check_certificate(live / "cert.pem", live / "chain.pem", names)

    # The default window lies ahead, inside the certificate's lifetime (RFC 9773 §4.2).
    info = renewal_info(server, first)
    now = dt.datetime.now(dt.UTC)
    assert now < info.start < info.end <= first.not_valid_after_utc, info
    assert info.retry_after is not None and retry_after_seconds(info.retry_after) > 0, info

    renew = (
        "--cert-name", "ari",
        "--no-random-sleep-on-renew",
        "--http-01-address", "127.0.0.1",
        "--http-01-port", str(interop.http01_port),
    )  # fmt: skip
    result = certbot.run("renew", *renew)
    assert serial_of(live / "cert.pem") == first.serial_number, certbot.failure(result, "renewed")
    assert "not yet due" in output_of(result), certbot.failure(result, "no 'not yet due'")
    # certbot did ask: it keeps the server's Retry-After, and logged no ARI failure.
    conf = configobj.ConfigObj(str(certbot.renewal_conf("ari")))
    assert "ari_retry_after" in conf.get("acme_renewal_info", {}), dict(conf)
    assert "error occurred requesting ACME Renewal Information" not in certbot.log_text()

    # Move the window into the past: a client must then renew at once (RFC 9773 §4.2). (With
    # the default "--start now --hours 24" certbot picks a random time inside the window, most
    # likely still ahead, so whether it renews would be left to chance.)
    start = (now - dt.timedelta(hours=2)).isoformat()
    certyard_cli(
        server, "acme", "ari", "advance",
        "--serial", format(first.serial_number, "x"), "--start", start, "--hours", "1",
    )  # fmt: skip
    moved = renewal_info(server, first)
    assert moved.end < dt.datetime.now(dt.UTC), moved

    # certbot honours Retry-After (6 h by default) before it asks again: drop what it
    # remembered, as if that time had passed.
    del conf["acme_renewal_info"]
    conf.write()
    result = certbot.run("renew", *renew)
    second_serial = serial_of(live / "cert.pem")
    assert second_serial != first.serial_number, certbot.failure(result, "did not renew")
    second = interop.check_certificate(live / "cert.pem", live / "chain.pem", names)

    # certbot 5.8 sends no "replaces": if a later one does, it must be the old certID.
    _, certbot_replaces, _ = order_of_serial(server, second_serial)
    assert certbot_replaces in (None, cert_id(first)), certbot_replaces

    # replaces through certbot's acme library, with certbot's own account (RFC 9773 §5).
    account_key, account_url = certbot.account()
    lib = AcmeLib(interop, account_key, account_url)
    order = lib.new_order(names, replaces=cert_id(second))
    assert order.body.get("replaces") == cert_id(second), order.body
    order_id, replaces, _ = db_order(server, order.url)
    assert replaces == cert_id(second), (order_id, replaces)
    status, problem = lib.refused_order(names, replaces=cert_id(second))
    assert (status, problem.get("type")) == (
        409,
        "urn:ietf:params:acme:error:alreadyReplaced",
    ), problem

    chain = split_pem(lib.complete(order))
    leaf_path = interop.work_dir / "ari-replacement.pem"
    chain_path = interop.work_dir / "ari-replacement-chain.pem"
    leaf_path.write_text(chain[0])
    chain_path.write_text("".join(chain[1:]))
    third = interop.check_certificate(leaf_path, chain_path, names)
    assert order_of_serial(server, third.serial_number)[1] == cert_id(second)


# -- profiles (draft-ietf-acme-profiles) ---------------------------------------------------------


def test_certbot_profiles(interop: Interop) -> None:
    server = interop.certyard
    profiles = directory(server)["meta"]["profiles"]
    assert set(profiles) == {"tls-server", "shortlived"}, profiles
    certbot = certbot_in(interop, "certbot-profiles")

    short = ["short.example.test"]
    certbot.certonly("short", short, "--preferred-profile", "shortlived")
    live = certbot.live("short")
    cert = interop.check_certificate(live / "cert.pem", live / "chain.pem", short)
    assert lifetime(cert) <= SHORTLIVED_MAX, cert.not_valid_after_utc
    assert order_of_serial(server, cert.serial_number)[2] == "shortlived"

    # The default profile, asked for by name, for contrast: longer than a short-lived one.
    regular = ["regular.example.test"]
    certbot.certonly("regular", regular, "--required-profile", "tls-server")
    live = certbot.live("regular")
    cert = interop.check_certificate(live / "cert.pem", live / "chain.pem", regular)
    assert lifetime(cert) > SHORTLIVED_MAX, cert.not_valid_after_utc
    assert order_of_serial(server, cert.serial_number)[2] == "tls-server"

    unknown = certbot.certonly(
        "unknown", ["unknown.example.test"], "--required-profile", "no-such-profile", "--debug",
        check=False,
    )  # fmt: skip
    assert_refused(interop, unknown, "invalidProfile")
    assert not certbot.live("unknown").exists()
