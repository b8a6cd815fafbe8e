"""ACME issuance benchmark: complete issuances per second against certyard and Pebble.

One issuance is newOrder -> http-01 challenge answered -> order ready -> finalize -> order valid
-> certificate downloaded, for a fresh name and a fresh P-256 key. The client is certbot's
``acme`` library (the same code for every target), one account per concurrent caller (made
before the clock starts), in threads. The http-01 responder is one aiohttp server on one port
for every caller and every target; it serves whatever key authorizations the callers put in a
shared dict. Names resolve to 127.0.0.1 through ``tests.support.dnsserver.TestDNSServer``.

Targets (each started fresh in a temporary directory, stopped at the end):

* ``certyard-sqlite``: one ``certyard serve`` on SQLite;
* ``certyard-postgres``: one ``certyard serve`` on a fresh PostgreSQL database
  (``CERTYARD_TEST_POSTGRES_URL``, i.e. ``scripts/postgres-test.sh``); skipped when unset;
* ``certyard-haproxy``: two ``certyard serve`` on one PostgreSQL database behind HAProxy
  (``mode tcp`` roundrobin, TLS passthrough); skipped when ``haproxy`` is missing;
* ``pebble``: the Debian ``pebble`` (``PEBBLE_VA_NOSLEEP=1``, real validation,
  ``PEBBLE_WFE_NONCEREJECT=0`` so it does not reject 5 % of nonces on purpose); skipped when
  ``pebble`` is missing. The Debian package ships no ``test/certs``, so the benchmark makes its
  own localhost certificate for Pebble's listener.

Each cell (target x concurrency) runs a fixed number of issuances with a deadline; a cell with
no completed issuance for ``--stall-seconds`` is stopped and recorded as ``stalled`` with the
rate reached before it (Pebble 2.4.0 is known to deadlock at high concurrency). Client-side
retries follow certbot/lego: on a connection error, a timeout or a 5xx the step is sent again
with a fresh nonce, with bounded exponential backoff.

Each cell also reports ``steps_mean_ms``: the mean client-side time of each step (new_order,
challenge, wait_ready, finalize, wait_valid, download), to see where an issuance's latency goes
(wait_ready includes the client's own poll pauses, 50 ms first).

    .venv/bin/python benchmarks/acme_issuance.py            # full run
    .venv/bin/python benchmarks/acme_issuance.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import ipaddress
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import josepy as jose  # noqa: E402
import requests  # noqa: E402
from acme import challenges, client, crypto_util, errors, messages  # noqa: E402
from aiohttp import web  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

T = TypeVar("T")
HTTP_TIMEOUT = 20


def log(message: str) -> None:
    print(f"acme_issuance: {message}", file=sys.stderr, flush=True)


# -- http-01 responder ------------------------------------------------------------------------


class Responder:
    """One aiohttp http-01 responder on 127.0.0.1:port, in its own thread and event loop.

    ``answers`` maps a token to its key authorization; any caller may add to it.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: dict[str, str] = {}
        self.served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = self.answers.get(request.match_info["token"])
        if body is None:
            return web.Response(status=404, text="not found")
        self.served += 1
        return web.Response(text=body, content_type="text/plain")

    def start(self) -> Responder:
        ready = threading.Event()
        errors_: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/.well-known/acme-challenge/{token}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            try:
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=512)
                loop.run_until_complete(site.start())
            except BaseException as exc:  # reported to start()
                errors_.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="http01-responder", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors_:
            raise errors_[0]
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Responder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the ACME client --------------------------------------------------------------------------


class ServerFault(Exception):
    """A 5xx answer: retried like a connection error."""


# Re-send finalize when an order stays "processing" this long (a dead instance's finalize).
REFINALIZE_AFTER = 8.0


class OrderStuck(RuntimeError):
    """The order did not reach the awaited status before the issuance's deadline."""

    def __init__(self, url: str, status: str) -> None:
        super().__init__(f"order {url} still {status} at the deadline")
        self.url = url
        self.status = status


class RetryingNetwork(client.ClientNetwork):
    """``ClientNetwork`` that turns a 5xx into :class:`ServerFault` before the body is read."""

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = super()._send_request(method, url, *args, **kwargs)
        if response.status_code >= 500:
            raise ServerFault(f"{method} {url}: HTTP {response.status_code} {response.text[:200]}")
        return response


RETRYABLE: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    ServerFault,
    errors.BadNonce,
)


@dataclass
class IssuanceResult:
    name: str
    order_url: str
    fullchain_pem: str
    seconds: float
    retries: int

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.fullchain_pem.encode())

    @property
    def serial_hex(self) -> str:
        digits = format(self.leaf.serial_number, "x")
        return digits if len(digits) % 2 == 0 else "0" + digits


class AcmeWorker:
    """One ACME account and the steps of an issuance, each retried as certbot/lego do."""

    def __init__(
        self,
        directory_url: str,
        ca_bundle: str,
        answers: dict[str, str],
        *,
        attempts: int = 8,
        stop: threading.Event | None = None,
    ) -> None:
        self.directory_url = directory_url
        self.ca_bundle = ca_bundle
        self.answers = answers
        self.attempts = attempts
        self.stop = stop or threading.Event()
        self.retries = 0
        self.net = RetryingNetwork(
            key=jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())),
            alg=jose.ES256,
            verify_ssl=ca_bundle,  # type: ignore[arg-type]  # requests takes a CA path
            user_agent="certyard-acme-issuance-bench",
            timeout=HTTP_TIMEOUT,
        )
        self.acme: client.ClientV2 | None = None
        # Seconds spent in each step of every issuance (newOrder, challenge, ready, finalize,
        # valid, download): where the latency goes, as the client sees it.
        self.steps: dict[str, list[float]] = {}
        self._step_started = 0.0

    def _step(self, name: str) -> None:
        now = time.monotonic()
        self.steps.setdefault(name, []).append(now - self._step_started)
        self._step_started = now

    def retry(self, what: str, step: Callable[[], T]) -> T:
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            if self.stop.is_set():
                raise RuntimeError(f"{what}: stopped")
            try:
                return step()
            except RETRYABLE as exc:
                failure: BaseException = exc
            except messages.Error as exc:
                if exc.code != "badNonce":
                    raise
                failure = exc
            if attempt == self.attempts:
                raise RuntimeError(f"{what}: gave up after {attempt} attempts: {failure}")
            self.retries += 1
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
            delay = min(delay * 2, 4.0)
        raise AssertionError("unreachable")

    def register(self) -> None:
        directory = self.retry(
            "directory", lambda: client.ClientV2.get_directory(self.directory_url, self.net)
        )
        acme = client.ClientV2(directory, self.net)
        regr = self.retry(
            "newAccount",
            lambda: acme.new_account(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            ),
        )
        self.net.account = regr
        self.acme = acme

    def _order(self, url: str) -> messages.Order:
        assert self.acme is not None
        acme = self.acme
        response = self.retry("poll order", lambda: acme._post_as_get(url))
        order: messages.Order = messages.Order.from_json(response.json())
        return order

    def _wait_order(self, url: str, until: set[str], deadline: float) -> messages.Order:
        pause = 0.05
        while True:
            body = self._order(url)
            if body.status is not None and body.status.name in until:
                return body
            if body.status == messages.STATUS_INVALID:
                raise RuntimeError(f"order {url} invalid: {body.error}")
            if time.monotonic() > deadline or self.stop.is_set():
                raise OrderStuck(url, str(body.status.name if body.status else None))
            time.sleep(pause)
            pause = min(pause * 1.5, 0.5)

    def issue(self, name: str, timeout: float = 90.0) -> IssuanceResult:
        assert self.acme is not None
        acme = self.acme
        retries_before = self.retries
        started = time.monotonic()
        deadline = started + timeout
        key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        csr_pem = crypto_util.make_csr(key_pem, [name])
        self._step_started = time.monotonic()
        orderr = self.retry("newOrder", lambda: acme.new_order(csr_pem))
        self._step("new_order")
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue
            challb = next(
                c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            response, validation = challb.response_and_validation(self.net.key)
            self.answers[challb.chall.encode("token")] = validation
            self.retry(
                "challenge",
                lambda c=challb, r=response: acme.answer_challenge(c, r),  # type: ignore[misc]
            )
        self._step("challenge")
        self._wait_order(orderr.uri, {"ready", "processing", "valid"}, deadline)
        self._step("wait_ready")

        csr = x509.load_pem_x509_csr(csr_pem)
        finalize_sent = False

        def finalize() -> None:
            nonlocal finalize_sent
            try:
                acme._post(orderr.body.finalize, messages.CertificateRequest(csr=csr))
            except messages.Error as exc:
                # A finalize whose answer was lost went through: the order moved on.
                if not (finalize_sent and exc.code == "orderNotReady"):
                    raise
            finally:
                finalize_sent = True

        self.retry("finalize", finalize)
        self._step("finalize")
        while True:
            try:
                body = self._wait_order(
                    orderr.uri, {"valid"}, min(deadline, time.monotonic() + REFINALIZE_AFTER)
                )
                break
            except OrderStuck as exc:
                # Still "processing": the instance finalizing it may have died. certyard hands
                # such an order to the next finalize after acme.finalize_stale_seconds.
                if exc.status != "processing" or time.monotonic() > deadline:
                    raise
                self.retry("finalize", finalize)  # orderNotReady until then is swallowed
        self._step("wait_valid")
        cert_url = body.certificate
        assert cert_url is not None
        pem = self.retry("certificate", lambda: acme._post_as_get(cert_url)).text
        self._step("download")
        for token in [
            c.chall.encode("token")
            for a in orderr.authorizations
            for c in a.body.challenges
            if isinstance(c.chall, challenges.HTTP01)
        ]:
            self.answers.pop(token, None)
        return IssuanceResult(
            name, orderr.uri, pem, time.monotonic() - started, self.retries - retries_before
        )


# -- HAProxy ------------------------------------------------------------------------------------


def haproxy_config(port: int, backends: list[tuple[str, int]]) -> str:
    """TLS passthrough (``mode tcp``) round robin over ``backends``, with health checks."""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{backend_port} check inter 500ms fall 2 rise 2"
        for name, backend_port in backends
    )
    return f"""global
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch

frontend acme
    bind 127.0.0.1:{port}
    default_backend certyard

backend certyard
    balance roundrobin
{servers}
"""


class Haproxy:
    """``haproxy -f cfg -db`` as a subprocess, stopped by its PID."""

    def __init__(self, binary: str, work_dir: Path, port: int, backends: list[tuple[str, int]]):
        self.binary = binary
        self.port = port
        self.config_path = work_dir / "haproxy.cfg"
        self.config_path.write_text(haproxy_config(port, backends))
        self.log_path = work_dir / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Haproxy:
        check = subprocess.run(
            [self.binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c failed: {check.stdout}{check.stderr}")
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "-f", str(self.config_path), "-db"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port, timeout, self.process)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def __enter__(self) -> Haproxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.1)


# -- Pebble -------------------------------------------------------------------------------------


def self_signed_localhost(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a localhost certificate it signs: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench pebble listener CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths


class Pebble:
    def __init__(self, binary: str, work_dir: Path, http01_port: int, dns_address: str) -> None:
        from tests.support.server import free_port

        self.binary = binary
        self.work_dir = work_dir
        self.port = free_port()
        self.ca_pem, cert, key = self_signed_localhost(work_dir)
        self.config_path = work_dir / "pebble-config.json"
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{free_port()}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http01_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        self.config_path.write_text(json.dumps(config))
        self.dns_address = dns_address
        self.log_path = work_dir / "pebble.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def directory_url(self) -> str:
        return f"https://localhost:{self.port}/dir"

    def start(self) -> Pebble:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
        env.update({"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "-config", str(self.config_path), "-dnsserver", self.dns_address],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port, 20, self.process)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


# -- cells --------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    directory_url: str
    ca_bundle: str
    restart: Callable[[], None] | None = None  # after a stall


@dataclass
class Cell:
    target: str
    concurrency: int
    issuances: int = 0
    asked: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    retries: int = 0
    stalled: bool = False
    timed_out: bool = False
    first_error: str | None = None
    steps: dict[str, list[float]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(1000 * lat[min(len(lat) - 1, round(p * (len(lat) - 1)))], 1)

        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "asked": self.asked,
            "issuances": self.issuances,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.issuances / self.seconds, 2) if self.seconds else None,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "mean_ms": round(1000 * statistics.fmean(lat), 1) if lat else None,
            "errors": self.errors,
            "retries": self.retries,
            "stalled": self.stalled,
            "timed_out": self.timed_out,
            "first_error": self.first_error,
            # Mean milliseconds per step of an issuance, as the client saw them.
            "steps_mean_ms": {
                step: round(1000 * statistics.fmean(values), 1)
                for step, values in self.steps.items()
                if values
            },
        }


def run_cell(
    target: Target,
    answers: dict[str, str],
    concurrency: int,
    count: int,
    *,
    cell_timeout: float,
    stall_seconds: float,
) -> Cell:
    cell = Cell(target.name, concurrency, asked=count)
    stop = threading.Event()
    workers = [
        AcmeWorker(target.directory_url, target.ca_bundle, answers, stop=stop)
        for _ in range(concurrency)
    ]
    registered: list[AcmeWorker] = []
    reg_errors: list[str] = []

    def register(worker: AcmeWorker) -> None:
        try:
            worker.register()
            registered.append(worker)
        except Exception as exc:
            reg_errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=register, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if len(registered) < concurrency:
        cell.errors = concurrency - len(registered)
        cell.stalled = True
        cell.first_error = reg_errors[0] if reg_errors else "account registration hung"
        stop.set()
        return cell

    lock = threading.Lock()
    remaining = list(range(count))
    run_id = f"{random.getrandbits(32):08x}"
    last_progress = [time.monotonic()]

    def work(worker: AcmeWorker, index: int) -> None:
        while not stop.is_set():
            with lock:
                if not remaining:
                    return
                n = remaining.pop()
            name = f"i{n}.c{concurrency}.w{index}.r{run_id}.bench.test"
            try:
                result = worker.issue(name)
            except Exception as exc:
                with lock:
                    cell.errors += 1
                    if cell.first_error is None and not stop.is_set():
                        cell.first_error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            with lock:
                cell.issuances += 1
                cell.latencies.append(result.seconds)
                last_progress[0] = time.monotonic()

    started = time.monotonic()
    threads = [
        threading.Thread(target=work, args=(w, i), daemon=True) for i, w in enumerate(registered)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.1)
        now = time.monotonic()
        if now - last_progress[0] > stall_seconds:
            cell.stalled = True
            break
        if now - started > cell_timeout:
            cell.timed_out = True
            break
    stop.set()
    # After a stall, the rate is the one reached before it (up to the last completion).
    end = last_progress[0] if (cell.stalled or cell.timed_out) else time.monotonic()
    cell.seconds = max(end - started, 1e-9)
    for thread in threads:
        thread.join(HTTP_TIMEOUT + 5)
    cell.retries = sum(w.retries for w in registered)
    for worker in registered:
        for step, values in worker.steps.items():
            cell.steps.setdefault(step, []).extend(values)
    return cell


# -- targets ------------------------------------------------------------------------------------


@contextlib.contextmanager
def certyard_target(
    kind: str, work: Path, responder_port: int, dns_address: str
) -> Iterator[Target | None]:
    from tests.support import postgres
    from tests.support.server import CertyardServer, free_port

    extra = {"CERTYARD__ACME__RATE_LIMITS__ENABLED": "false", "CERTYARD__LOG__LEVEL": "warning"}
    common: dict[str, Any] = {
        "http01_port": responder_port,
        "dns_resolvers": [dns_address],
        "validation_deny": [],
        "extra_env": extra,
    }
    data_dir = work / kind
    if kind == "certyard-sqlite":
        with CertyardServer(data_dir, **common) as server:
            yield Target(kind, server.directory_url, str(server.root_pem_path))
        return
    admin_url = postgres.configured_url()
    if admin_url is None or postgres.check_reachable(admin_url) is not None:
        log(
            f"{kind}: skipped (PostgreSQL not reachable: set {postgres.ENV_VAR}, "
            "scripts/postgres-test.sh start)"
        )
        yield None
        return
    with postgres.fresh_database(admin_url) as db_url:
        if kind == "certyard-postgres":
            with CertyardServer(data_dir, database_url=db_url, **common) as server:
                yield Target(kind, server.directory_url, str(server.root_pem_path))
            return
        haproxy_bin = shutil.which("haproxy")
        if haproxy_bin is None:
            log(f"{kind}: skipped (haproxy not installed: apt-get install haproxy)")
            yield None
            return
        lb_port = free_port()
        public_url = f"https://localhost:{lb_port}"
        a = CertyardServer(data_dir, database_url=db_url, public_url=public_url, name="a", **common)
        b = CertyardServer(data_dir, database_url=db_url, public_url=public_url, name="b", **common)
        with a, b, Haproxy(haproxy_bin, data_dir, lb_port, [("a", a.port), ("b", b.port)]):
            yield Target(kind, f"{public_url}/acme/directory", str(a.root_pem_path))


@contextlib.contextmanager
def pebble_target(work: Path, responder_port: int, dns_address: str) -> Iterator[Target | None]:
    binary = shutil.which("pebble")
    if binary is None:
        log("pebble: skipped (pebble not installed: apt-get install pebble)")
        yield None
        return
    (work / "pebble").mkdir()
    pebble = Pebble(binary, work / "pebble", responder_port, dns_address).start()

    def restart() -> None:
        pebble.stop()
        pebble.start()

    try:
        yield Target("pebble", pebble.directory_url, str(pebble.ca_pem), restart=restart)
    finally:
        pebble.stop()


def versions() -> dict[str, Any]:
    def deb(pkg: str) -> str | None:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True
        )
        return out.stdout or None

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "acme": importlib.metadata.version("acme"),
        "aiohttp": importlib.metadata.version("aiohttp"),
        "haproxy": deb("haproxy"),
        "pebble": deb("pebble"),
        "postgresql": deb("postgresql"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few issuances")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--targets",
        nargs="+",
        default=["certyard-sqlite", "certyard-postgres", "certyard-haproxy", "pebble"],
    )
    parser.add_argument("--count-1", type=int, default=30, help="issuances at concurrency 1")
    parser.add_argument("--count", type=int, default=80, help="issuances at concurrency > 1")
    parser.add_argument("--cell-timeout", type=float, default=150.0)
    parser.add_argument("--stall-seconds", type=float, default=25.0)
    args = parser.parse_args()
    if args.quick:
        args.concurrency = [1, 4]
        args.count_1, args.count = 3, 8
        args.cell_timeout, args.stall_seconds = 40.0, 15.0

    from tests.support.dnsserver import TestDNSServer
    from tests.support.server import free_port

    started = dt.datetime.now(dt.UTC)
    cells: list[dict[str, Any]] = []
    skipped: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="bench-acme-"))
    dns = TestDNSServer()
    dns.start()
    try:
        with Responder(free_port()) as responder:
            for name in args.targets:
                target_cm = (
                    pebble_target(work, responder.port, dns.address)
                    if name == "pebble"
                    else certyard_target(name, work, responder.port, dns.address)
                )
                with target_cm as target:
                    if target is None:
                        skipped.append(name)
                        continue
                    for concurrency in args.concurrency:
                        count = args.count_1 if concurrency == 1 else args.count
                        log(f"{name} c={concurrency}: {count} issuances")
                        cell = run_cell(
                            target,
                            responder.answers,
                            concurrency,
                            count,
                            cell_timeout=args.cell_timeout,
                            stall_seconds=args.stall_seconds,
                        )
                        cells.append(cell.as_json())
                        log(json.dumps(cells[-1]))
                        if (cell.stalled or cell.timed_out) and target.restart is not None:
                            log(f"{name}: restarting after a stall")
                            target.restart()
    finally:
        dns.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "acme_issuance",
                "started": started.isoformat(timespec="seconds"),
                "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
                "quick": args.quick,
                "machine": versions(),
                "skipped": skipped,
                "cells": cells,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
