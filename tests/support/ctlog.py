"""A Certificate Transparency log for the suite: one Merkle tree served both as the RFC 6962 API
(``<base>/log/ct/v1/...``) and as a static-ct-api log (``<base>/tiles/checkpoint``, tiles,
issuers), signed with a deterministic ECDSA P-256 key, on 127.0.0.1.

    async with CTTestLog() as log:
        log.add_pair(["www.example.com"])     # precert + final certificate
        log.add_synthetic(1000)               # template certificates, cheap
        log.publish()                         # sign a new STH / checkpoint
        log.write_log_list(tmp_path / "logs.json")

Fault switches (attributes): ``max_get_entries`` (short get-entries answers),
``rate_limit(n, retry_after)`` (429 + Retry-After for the next n requests), ``fork(at, n)`` +
``split_view`` (a forked tree served to the clients the predicate picks), ``wrong_root``
(validly signed tree heads over a wrong root), ``bad_signature`` (tree heads signed by another
key), both limited to the requests ``fault_filter`` picks when it is set, and
``drop_partial_tiles`` (partial tiles answer 404, as after the log filled them).

Also a program for benchmarks: ``python -m tests.support.ctlog --entries 1000000
--log-list /tmp/logs.json [--grow-per-second N]`` serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import struct
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ct_monitor.checkpoint import format_checkpoint
from ct_monitor.merkle import MerkleTree, consistency_proof
from ct_monitor.static_ct import TILE_WIDTH
from ct_monitor.types import EntryType, LogDescription, TreeHead
from ct_monitor.wire import (
    HASH_SHA256,
    SIG_ECDSA,
    DigitallySigned,
    TimestampedEntry,
    encode_extra_data,
    encode_leaf_index_extension,
    encode_timestamped_entry,
    tree_head_signature_input,
)
from tests.support.ctlog_certs import (
    CertPair,
    Issuer,
    Template,
    derive_key,
    make_cert,
    make_cert_pair,
    make_issuer,
    make_template,
    spki_der,
)

BASE_TIMESTAMP_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FORK_TEMPLATE_OFFSET = 50_000_000


@dataclass(frozen=True, slots=True)
class StoredEntry:
    timestamped_entry: bytes  # RFC 6962 §3.4 TimestampedEntry, as hashed into the tree
    entry_type: EntryType
    precert_der: bytes
    chain: tuple[bytes, ...]

    @property
    def merkle_leaf(self) -> bytes:
        return b"\x00\x00" + self.timestamped_entry


class TreeState:
    """One tree and its explicitly added entries (indexes without one are synthetic)."""

    def __init__(self) -> None:
        self.tree = MerkleTree()
        self.explicit: dict[int, StoredEntry] = {}
        self.head: TreeHead | None = None

    @property
    def published_size(self) -> int:
        return self.head.tree_size if self.head else 0


class CTTestLog:
    def __init__(self, seed: bytes = b"certyard-ct-test-log", host: str = "127.0.0.1") -> None:
        self.host = host
        self.key = derive_key(seed)
        self.key_der = spki_der(self.key)
        self.log_id = hashlib.sha256(self.key_der).digest()
        self.other_key = derive_key(seed + b":impostor")
        self.issuer: Issuer = make_issuer(seed + b":issuer")
        self.template: Template = make_template(self.issuer)
        self.issuers: dict[bytes, bytes] = {
            hashlib.sha256(self.issuer.der).digest(): self.issuer.der
        }
        self.main = TreeState()
        self.forked: TreeState | None = None
        # Fault switches.
        self.max_get_entries = 1000
        self._extra_cache: dict[tuple[str, bytes, tuple[bytes, ...]], str] = {}
        self._fp_cache: dict[tuple[bytes, ...], bytes] = {}
        self.split_view: Callable[[web.Request], bool] | None = None
        self.wrong_root = False
        self.bad_signature = False
        # Restricts wrong_root / bad_signature to the requests it picks (None: everyone).
        self.fault_filter: Callable[[web.Request], bool] | None = None
        self.drop_partial_tiles = False
        self.compress_tiles = True
        self._rate_limit_left = 0
        self._retry_after: str | None = "1"
        self._rate_limit_status = 429
        # Observations for assertions.
        self.requests: Counter[str] = Counter()
        self.user_agents: set[str] = set()
        self.rate_limited_served = 0
        self._last_ts = 0
        self._serial = 0x3000
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._grower: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- URLs and log list
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def rfc6962_url(self) -> str:
        return self.base_url + "log/"

    @property
    def monitoring_url(self) -> str:
        return self.base_url + "tiles/"

    @property
    def origin(self) -> str:
        """Checkpoint origin: the submission prefix (the RFC 6962 URL) without scheme and '/'."""
        return self.rfc6962_url.split("://", 1)[1].rstrip("/")

    def description(self, kind: str = "rfc6962", **overrides: object) -> LogDescription:
        """A LogDescription of this log as the log list would give it."""
        tiled = kind == "tiled"
        fields: dict[str, object] = {
            "url": self.monitoring_url if tiled else self.rfc6962_url,
            "kind": "tiled" if tiled else "rfc6962",
            "key_der": self.key_der,
            "log_id": self.log_id,
            "mmd": 60,
            "description": f"certyard test log ({kind})",
            "operator": "certyard tests",
            "submission_url": self.rfc6962_url if tiled else "",
            "monitoring_url": self.monitoring_url if tiled else "",
        }
        fields.update(overrides)
        return LogDescription(**fields)  # type: ignore[arg-type]

    def log_list(
        self, kinds: Sequence[str] = ("rfc6962", "tiled"), state: str = "usable"
    ) -> dict[str, object]:
        """A v3 log list naming this log (``logs`` and/or ``tiled_logs``)."""
        common = {
            "key": base64.b64encode(self.key_der).decode(),
            "log_id": base64.b64encode(self.log_id).decode(),
            "mmd": 60,
            "state": {state: {"timestamp": "2026-01-01T00:00:00Z"}},
            "temporal_interval": {
                "start_inclusive": "2026-01-01T00:00:00Z",
                "end_exclusive": "2027-01-01T00:00:00Z",
            },
        }
        op: dict[str, object] = {"name": "certyard tests", "email": ["ct@example.test"]}
        if "rfc6962" in kinds:
            op["logs"] = [
                {"description": "certyard test log (RFC 6962)", "url": self.rfc6962_url, **common}
            ]
        if "tiled" in kinds:
            op["tiled_logs"] = [
                {
                    "description": "certyard test log (static-ct-api)",
                    "submission_url": self.rfc6962_url,
                    "monitoring_url": self.monitoring_url,
                    **common,
                }
            ]
        return {
            "version": "1.0",
            "log_list_timestamp": "2026-01-01T00:00:00Z",
            "operators": [op],
        }

    def write_log_list(
        self, path: Path, kinds: Sequence[str] = ("rfc6962", "tiled"), state: str = "usable"
    ) -> Path:
        path.write_text(json.dumps(self.log_list(kinds, state), indent=2))
        return path

    # ----------------------------------------------------------------- adding entries
    def _timestamp(self) -> int:
        self._last_ts = max(self._last_ts + 1, int(time.time() * 1000))
        return self._last_ts

    def _add(
        self,
        state: TreeState,
        entry_type: EntryType,
        der: bytes,
        precert: bytes,
        chain: Sequence[bytes],
        ikh: bytes = b"",
    ) -> int:
        index = state.tree.size
        te = TimestampedEntry(
            self._timestamp(), entry_type, der, ikh, encode_leaf_index_extension(index)
        )
        stored = StoredEntry(encode_timestamped_entry(te), entry_type, precert, tuple(chain))
        for c in chain:
            self.issuers[hashlib.sha256(c).digest()] = c
        state.explicit[index] = stored
        state.tree.append(hashlib.sha256(b"\x00" + stored.merkle_leaf).digest())
        return index

    def add_x509(self, cert_der: bytes, chain: Sequence[bytes] | None = None) -> int:
        """Log a final certificate; returns its index (not published until ``publish()``)."""
        return self._add(
            self.main, "x509", cert_der, b"", [self.issuer.der] if chain is None else chain
        )

    def add_precert(self, pair: CertPair, chain: Sequence[bytes] | None = None) -> int:
        """Log a precertificate entry (RFC 6962 §3.2: issuer key hash + TBS without poison)."""
        return self._add(
            self.main, "precert", pair.tbs_der, pair.precert_der,
            [pair.issuer.der] if chain is None else chain, pair.issuer.key_hash,
        )  # fmt: skip

    def make_pair(self, names: list[str], issuer: Issuer | None = None) -> CertPair:
        """A precertificate + final certificate for ``names``; the final one carries an SCT
        from this log over the precertificate (RFC 6962 §3.2)."""
        self._serial += 1
        iss = issuer or self.issuer

        def sct_list(tbs: bytes) -> bytes:
            return self._sct_list(iss.key_hash, tbs)

        return make_cert_pair(names, iss, serial=self._serial, sct_list=sct_list)

    def add_pair(self, names: list[str]) -> tuple[int, int, CertPair]:
        """Log the precertificate, then the final certificate, for ``names``."""
        pair = self.make_pair(names)
        return self.add_precert(pair), self.add_x509(pair.final_der), pair

    def add_cert(self, names: list[str]) -> int:
        """Log a plain certificate for ``names``."""
        self._serial += 1
        return self.add_x509(make_cert(names, self.issuer, serial=self._serial))

    def _synthetic_te(self, index: int, offset: int = 0) -> bytes:
        """TimestampedEntry ``index`` made from the template: unique serial and name."""
        der = self.template.patch(index + offset)
        return b"".join(
            (
                struct.pack(">QH", BASE_TIMESTAMP_MS + index, 0),
                len(der).to_bytes(3, "big"),
                der,
                b"\x00\x08\x00\x00\x05",  # CtExtensions: one leaf_index extension (uint40)
                index.to_bytes(5, "big"),
            )
        )

    def synthetic_entry(self, index: int, offset: int = 0) -> StoredEntry:
        return StoredEntry(self._synthetic_te(index, offset), "x509", b"", (self.issuer.der,))

    def add_synthetic(self, count: int) -> None:
        """Append ``count`` template entries to the main tree (a few µs each)."""
        start = self.main.tree.size
        sha = hashlib.sha256
        te = self._synthetic_te
        self.main.tree.extend(
            sha(b"\x00\x00\x00" + te(i)).digest() for i in range(start, start + count)
        )

    def entry(self, state: TreeState, index: int) -> StoredEntry:
        return state.explicit.get(index) or self.synthetic_entry(index)

    # ----------------------------------------------------------------- signing
    def _sign(self, message: bytes, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        sig = (key or self.key).sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        return DigitallySigned(HASH_SHA256, SIG_ECDSA, sig).encode()

    def _sct_list(self, issuer_key_hash: bytes, tbs: bytes) -> bytes:
        ts = self._timestamp()
        ext = b""
        signed = (
            struct.pack(">BBQH", 0, 0, ts, 1) + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
            + len(ext).to_bytes(2, "big") + ext
        )  # fmt: skip
        sct = bytes([0]) + self.log_id + ts.to_bytes(8, "big") + b"\x00\x00" + self._sign(signed)
        item = len(sct).to_bytes(2, "big") + sct
        return len(item).to_bytes(2, "big") + item

    def sign_head(
        self, size: int, root: bytes, key: ec.EllipticCurvePrivateKey | None = None
    ) -> TreeHead:
        ts = self._timestamp()
        return TreeHead(size, root, ts, self._sign(tree_head_signature_input(ts, size, root), key))

    def publish(self) -> TreeHead:
        """Sign a tree head over everything added so far (both views when forked)."""
        self.main.head = self.sign_head(self.main.tree.size, self.main.tree.root())
        if self.forked is not None:
            self.forked.head = self.sign_head(self.forked.tree.size, self.forked.tree.root())
        return self.main.head

    @property
    def size(self) -> int:
        return self.main.tree.size

    # ----------------------------------------------------------------- faults
    def rate_limit(
        self, count: int, retry_after: float | str | None = 1, status: int = 429
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (429 or 503) and this
        Retry-After (None: no Retry-After header)."""
        self._rate_limit_left = count
        self._retry_after = None if retry_after is None else str(retry_after)
        self._rate_limit_status = status

    def fork(self, at: int, extra: int) -> TreeState:
        """A second tree sharing the first ``at`` entries, then ``extra`` different ones,
        published; serve it to the requests ``split_view`` picks (a split view)."""
        if at > self.main.tree.size:
            raise ValueError("fork point beyond the tree")
        fork = TreeState()
        fork.tree.extend(bytes(self.main.tree.levels[0][i * 32 : (i + 1) * 32]) for i in range(at))
        fork.explicit = {i: e for i, e in self.main.explicit.items() if i < at}
        for i in range(at, at + extra):
            e = self.synthetic_entry(i, offset=FORK_TEMPLATE_OFFSET)
            fork.explicit[i] = e
            fork.tree.append(hashlib.sha256(b"\x00" + e.merkle_leaf).digest())
        fork.head = self.sign_head(fork.tree.size, fork.tree.root())
        self.forked = fork
        return fork

    def split_view_for_user_agent(self, substring: str) -> None:
        """Serve the fork to clients whose User-Agent contains ``substring``."""
        self.split_view = lambda request: substring in request.headers.get("User-Agent", "")

    # ----------------------------------------------------------------- HTTP
    def _state(self, request: web.Request) -> TreeState:
        if self.forked is not None and self.split_view is not None and self.split_view(request):
            return self.forked
        return self.main

    def _served_head(self, state: TreeState, request: web.Request) -> TreeHead:
        head = state.head or self.sign_head(0, hashlib.sha256(b"").digest())
        if self.fault_filter is not None and not self.fault_filter(request):
            return head
        if self.wrong_root:
            bogus = hashlib.sha256(b"wrong root" + head.root_hash).digest()
            return self.sign_head(head.tree_size, bogus)
        if self.bad_signature:
            return self.sign_head(head.tree_size, head.root_hash, key=self.other_key)
        return head

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.user_agents.add(request.headers.get("User-Agent", ""))
        kind = request.path.split("/")[2] if request.path.count("/") >= 2 else request.path
        self.requests[kind] += 1
        if self._rate_limit_left > 0:
            self._rate_limit_left -= 1
            self.rate_limited_served += 1
            headers = {"Retry-After": self._retry_after} if self._retry_after else {}
            return web.Response(status=self._rate_limit_status, headers=headers, text="busy\n")
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/log/ct/v1/get-sth", self._get_sth)
        app.router.add_get("/log/ct/v1/get-entries", self._get_entries)
        app.router.add_get("/log/ct/v1/get-sth-consistency", self._get_consistency)
        app.router.add_get("/log/ct/v1/get-proof-by-hash", self._get_proof_by_hash)
        app.router.add_get("/tiles/checkpoint", self._checkpoint)
        app.router.add_get("/tiles/tile/{path:.+}", self._tile)
        app.router.add_get("/tiles/issuer/{fp}", self._issuer)
        return app

    @staticmethod
    def _bad(msg: str) -> web.Response:
        return web.json_response({"error": msg}, status=400)

    @staticmethod
    def _ints(request: web.Request, *names: str) -> list[int] | None:
        try:
            return [int(request.query[n]) for n in names]
        except (KeyError, ValueError):
            return None

    async def _get_sth(self, request: web.Request) -> web.Response:
        head = self._served_head(self._state(request), request)
        return web.json_response(
            {
                "tree_size": head.tree_size,
                "timestamp": head.timestamp_ms,
                "sha256_root_hash": base64.b64encode(head.root_hash).decode(),
                "tree_head_signature": base64.b64encode(head.signature).decode(),
            }
        )

    async def _get_entries(self, request: web.Request) -> web.Response:
        state = self._state(request)
        args = self._ints(request, "start", "end")
        if args is None:
            return self._bad("start and end must be integers")
        start, end = args
        size = state.published_size
        if start < 0 or end < start or start >= size:
            return self._bad(f"bad range {start}..{end} for tree size {size}")
        end = min(end, size - 1, start + self.max_get_entries - 1)
        # JSON written by hand (base64 needs no escaping): the benchmark reads a million entries
        # through here, and json.dumps of a dict per entry would make the log the bottleneck.
        parts = []
        for i in range(start, end + 1):
            e = self.entry(state, i)
            leaf = base64.b64encode(e.merkle_leaf).decode()
            parts.append(f'{{"leaf_input":"{leaf}","extra_data":"{self._extra_b64(e)}"}}')
        body = '{"entries":[' + ",".join(parts) + "]}"
        return web.Response(text=body, content_type="application/json")

    def _extra_b64(self, e: StoredEntry) -> str:
        key = (e.entry_type, e.precert_der, e.chain)
        cached = self._extra_cache.get(key)
        if cached is None:
            extra = encode_extra_data(e.entry_type, e.precert_der, list(e.chain))
            cached = self._extra_cache[key] = base64.b64encode(extra).decode()
        return cached

    async def _get_consistency(self, request: web.Request) -> web.Response:
        state = self._state(request)
        args = self._ints(request, "first", "second")
        if args is None:
            return self._bad("first and second must be integers")
        first, second = args
        if not 0 < first <= second <= state.published_size:
            return self._bad(f"bad sizes {first}, {second}")
        proof = consistency_proof(state.tree.node, first, second)
        return web.json_response({"consistency": [base64.b64encode(h).decode() for h in proof]})

    async def _get_proof_by_hash(self, request: web.Request) -> web.Response:
        state = self._state(request)
        args = self._ints(request, "tree_size")
        try:
            leaf = base64.b64decode(request.query.get("hash", ""), validate=True)
        except ValueError:
            return self._bad("hash is not base64")
        if args is None or len(leaf) != 32:
            return self._bad("need hash and tree_size")
        size = args[0]
        if not 0 < size <= state.published_size:
            return self._bad(f"bad tree_size {size}")
        level0 = state.tree.levels[0]
        pos = level0.find(leaf)
        while pos >= 0 and pos % 32:
            pos = level0.find(leaf, pos + 1)
        if pos < 0 or pos // 32 >= size:
            return web.json_response({"error": "hash not found"}, status=404)
        path = state.tree.inclusion_proof(pos // 32, size)
        return web.json_response(
            {"leaf_index": pos // 32, "audit_path": [base64.b64encode(h).decode() for h in path]}
        )

    async def _checkpoint(self, request: web.Request) -> web.Response:
        head = self._served_head(self._state(request), request)
        body = format_checkpoint(self.origin, self.log_id, head)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    @staticmethod
    def _parse_tile_path(path: str) -> tuple[str, int, int] | None:
        """tile/<L>/<N>[.p/<W>] -> (L, N, W); None when malformed."""
        width = TILE_WIDTH
        if ".p/" in path:
            path, _, w = path.partition(".p/")
            if not w.isdigit() or not 1 <= int(w) < TILE_WIDTH or w.startswith("0"):
                return None
            width = int(w)
        parts = path.split("/")
        level, groups = parts[0], parts[1:]
        if not groups or not (level == "data" or level.isdigit()):
            return None
        n = 0
        for i, g in enumerate(groups):
            digits = g[1:] if i < len(groups) - 1 and g.startswith("x") else g
            if (
                (i < len(groups) - 1) != g.startswith("x")
                or len(digits) != 3
                or not digits.isdigit()
            ):
                return None
            n = n * 1000 + int(digits)
        return level, n, width

    async def _tile(self, request: web.Request) -> web.Response:
        state = self._state(request)
        parsed = self._parse_tile_path(request.match_info["path"])
        if parsed is None:
            return web.Response(status=400, text="bad tile path\n")
        level, n, width = parsed
        size = state.published_size
        items = size if level == "data" else size >> (8 * int(level))
        if n * TILE_WIDTH + width > items or (width < TILE_WIDTH and self.drop_partial_tiles):
            return web.Response(status=404, text="no such tile\n")
        first = n * TILE_WIDTH
        if level == "data":
            body = b"".join(self._tile_leaf(state, i) for i in range(first, first + width))
        else:
            lvl = state.tree.levels[8 * int(level)]
            body = bytes(lvl[first * 32 : (first + width) * 32])
        resp = web.Response(body=body, content_type="application/octet-stream")
        if level == "data" and self.compress_tiles:
            resp.enable_compression()
        return resp

    def _tile_leaf(self, state: TreeState, index: int) -> bytes:
        e = self.entry(state, index)
        out = e.timestamped_entry
        if e.entry_type == "precert":
            out += len(e.precert_der).to_bytes(3, "big") + e.precert_der
        fps = self._fp_cache.get(e.chain)
        if fps is None:
            fps = self._fp_cache[e.chain] = b"".join(hashlib.sha256(c).digest() for c in e.chain)
        return out + len(fps).to_bytes(2, "big") + fps

    async def _issuer(self, request: web.Request) -> web.Response:
        try:
            der = self.issuers.get(bytes.fromhex(request.match_info["fp"]))
        except ValueError:
            der = None
        if der is None:
            return web.Response(status=404, text="no such issuer\n")
        return web.Response(body=der, content_type="application/pkix-cert")

    # ----------------------------------------------------------------- lifecycle
    async def start(self, port: int = 0) -> CTTestLog:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._grower is not None:
            self._grower.cancel()
            self._grower = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> CTTestLog:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def grow(self, per_second: float, publish_every: float = 1.0) -> None:
        """Append synthetic entries at a steady rate, publishing every ``publish_every`` s."""

        async def run() -> None:
            owed = 0.0
            while True:
                await asyncio.sleep(publish_every)
                owed += per_second * publish_every
                n = int(owed)
                owed -= n
                self.add_synthetic(n)
                self.publish()

        self._grower = asyncio.get_running_loop().create_task(run())


async def _serve(args: argparse.Namespace) -> None:
    log = CTTestLog()
    log.compress_tiles = not args.no_gzip
    log.max_get_entries = args.max_get_entries
    t0 = time.monotonic()
    log.add_synthetic(args.entries)
    log.publish()
    await log.start(args.port)
    if args.log_list:
        log.write_log_list(Path(args.log_list), kinds=args.kinds.split(","))
    print(
        json.dumps(
            {
                "rfc6962_url": log.rfc6962_url,
                "monitoring_url": log.monitoring_url,
                "tree_size": log.size,
                "build_seconds": round(time.monotonic() - t0, 2),
            }
        ),
        flush=True,
    )
    if args.grow_per_second:
        log.grow(args.grow_per_second)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await log.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="Serve the certyard CT test log on 127.0.0.1")
    p.add_argument("--entries", type=int, default=1000)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log-list", help="write a v3 log list pointing at the log here")
    p.add_argument("--kinds", default="rfc6962,tiled")
    p.add_argument("--grow-per-second", type=float, default=0.0)
    p.add_argument("--no-gzip", action="store_true", help="serve data tiles uncompressed")
    p.add_argument("--max-get-entries", type=int, default=1000)
    asyncio.run(_serve(p.parse_args()))


if __name__ == "__main__":
    main()
