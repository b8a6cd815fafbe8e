"""Two ``certyard serve`` processes on one PostgreSQL database behave as one ACME server.

Both advertise the same public URL (as they would behind a load balancer). The test client is
certbot's ``acme`` library; a requests transport adapter plays the load balancer and sends each
request to the next instance in turn, so every nonce one instance hands out is spent at the
other, and the account, order, authorizations and challenges created through one instance are
read and advanced through the other.
"""

from __future__ import annotations

import datetime as dt
import http.server
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
import requests
from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from requests.adapters import HTTPAdapter

from tests.support import postgres
from tests.support.dnsserver import TestDNSServer
from tests.support.jws_client import sign_jws
from tests.support.server import CertyardServer, free_port

pytestmark = pytest.mark.postgres

NAMES = ["two.example.test", "www.two.example.test"]


@dataclass
class Cluster:
    a: CertyardServer
    b: CertyardServer
    public_url: str

    @property
    def root_pem(self) -> Path:
        return self.a.root_pem_path


@pytest.fixture(scope="module")
def dns() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    postgres_admin_url: str, dns: TestDNSServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("two-instances")
    port_a, port_b, http01_port = free_port(), free_port(), free_port()
    public_url = f"https://localhost:{port_a}"
    common: dict[str, Any] = {
        "public_url": public_url,
        "http01_port": http01_port,
        "dns_resolvers": [dns.address],
        "validation_deny": [],
    }
    with postgres.fresh_database(postgres_admin_url) as db_url:
        # One after the other: the first creates the CA in the database and the passphrase
        # file in the shared data dir, the second loads both.
        a = CertyardServer(data_dir, database_url=db_url, port=port_a, name="a", **common)
        b = CertyardServer(data_dir, database_url=db_url, port=port_b, name="b", **common)
        with a, b:
            yield Cluster(a, b, public_url)


class Balancer(HTTPAdapter):
    """Sends each request for ``public_url`` to the next backend in turn (round robin)."""

    def __init__(self, public_url: str, backends: list[str]) -> None:
        super().__init__()
        self.public_url = public_url
        self.backends = backends
        self.turn = 0
        self.sent: list[tuple[str, str, str]] = []  # (method, backend, path)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        assert request.url is not None and request.url.startswith(self.public_url), request.url
        backend = self.backends[self.turn % len(self.backends)]
        self.turn += 1
        path = request.url[len(self.public_url) :]
        request.url = backend + path
        self.sent.append((str(request.method), backend, path))
        return super().send(request, *args, **kwargs)


class StrictNetwork(client.ClientNetwork):
    """ClientNetwork without its silent retry on badNonce: a rejected nonce fails the test."""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._post_once(*args, **kwargs)


@dataclass
class Responder:
    """An http-01 responder on 127.0.0.1 (what certyard's validation connects to)."""

    port: int
    answers: dict[str, str] = field(default_factory=dict)
    server: http.server.ThreadingHTTPServer | None = None

    def __enter__(self) -> Responder:
        answers = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = answers.get(self.path)
                self.send_response(200 if body is not None else 404)
                data = (body or "not found").encode()
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def problem_type(response: requests.Response) -> str:
    assert response.headers.get("Content-Type", "").startswith("application/problem+json")
    kind: str = response.json()["type"]
    return kind


def test_nonce_from_one_instance_is_spent_at_the_other(cluster: Cluster) -> None:
    verify = str(cluster.root_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    new_account = f"{cluster.public_url}/acme/new-account"

    def register(base: str, nonce: str) -> requests.Response:
        body = sign_jws(key, {"termsOfServiceAgreed": True}, url=new_account, nonce=nonce)
        return requests.post(
            f"{base}/acme/new-account",
            data=body,
            headers={"Content-Type": "application/jose+json"},
            verify=verify,
            timeout=30,
        )

    head = requests.head(f"{cluster.a.base_url}/acme/new-nonce", verify=verify, timeout=30)
    assert head.status_code == 200
    nonce = head.headers["Replay-Nonce"]

    at_b = register(cluster.b.base_url, nonce)
    assert at_b.status_code == 201, at_b.text
    assert at_b.headers["Location"].startswith(f"{cluster.public_url}/acme/")

    again_at_a = register(cluster.a.base_url, nonce)
    assert again_at_a.status_code == 400, again_at_a.text
    assert problem_type(again_at_a) == "urn:ietf:params:acme:error:badNonce"
    # The rejection carries a fresh nonce, usable at the other instance.
    fresh = again_at_a.headers["Replay-Nonce"]
    assert register(cluster.b.base_url, fresh).status_code == 200


def test_issuance_alternating_between_instances(cluster: Cluster) -> None:
    account_key = ec.generate_private_key(ec.SECP256R1())
    net = StrictNetwork(
        key=jose.JWKEC(key=account_key),
        alg=jose.ES256,
        verify_ssl=str(cluster.root_pem),  # type: ignore[arg-type]  # requests takes a CA path
        user_agent="certyard-two-instances-test",
        timeout=30,
    )
    balancer = Balancer(cluster.public_url, [cluster.a.base_url, cluster.b.base_url])
    net.session.mount("https://", balancer)

    directory = client.ClientV2.get_directory(f"{cluster.public_url}/acme/directory", net)
    acme = client.ClientV2(directory, net)
    regr = acme.new_account(
        messages.NewRegistration.from_data(email="test@example.com", terms_of_service_agreed=True)
    )
    net.account = regr

    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = cert_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    csr_pem = crypto_util.make_csr(key_pem, NAMES)

    with Responder(cluster.a.http01_port) as responder:
        order = acme.new_order(csr_pem)
        for authz in order.authorizations:
            challb = next(
                c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            response, validation = challb.response_and_validation(net.key)
            responder.answers["/" + challb.chall.path.lstrip("/")] = validation
            acme.answer_challenge(challb, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=60)
        order = acme.poll_and_finalize(order, deadline)

    chain = [
        x509.load_pem_x509_certificate(block.encode() + b"-----END CERTIFICATE-----\n")
        for block in order.fullchain_pem.split("-----END CERTIFICATE-----")[:-1]
    ]
    assert len(chain) >= 2
    leaf = chain[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    for child, parent in itertools.pairwise(chain):
        child.verify_directly_issued_by(parent)
    root = x509.load_pem_x509_certificate(cluster.root_pem.read_bytes())
    chain[-1].verify_directly_issued_by(root)

    # Both instances served POSTs, strictly alternating.
    posts = [backend for method, backend, _ in balancer.sent if method == "POST"]
    assert {cluster.a.base_url, cluster.b.base_url} <= set(posts)
    served = [backend for _, backend, _ in balancer.sent]
    assert all(x != y for x, y in itertools.pairwise(served))
