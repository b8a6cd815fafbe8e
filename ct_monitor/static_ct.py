"""static-ct-api client (c2sp.org/static-ct-api, c2sp.org/tlog-tiles): checkpoint, data tiles,
hash tiles, issuers.

* ``get_tree_head``: ``<monitoring prefix>/checkpoint``, RFC6962NoteSignature verified.
* ``get_entries``: data tiles ``tile/data/<N>[.p/<W>]`` (256 entries each). A partial tile is
  only asked for at the right edge of the latest verified checkpoint; when it is gone (the
  log has since filled the tile), the full tile is read and cut to the width needed.
* ``get_consistency_proof``: built from hash tiles ``tile/<L>/<N>[.p/<W>]`` — the log serves no
  proofs, clients compute them (static-ct-api "Merkle Tree").
* Issuers: ``issuer/<sha256 hex>``, fetched once and checked against the fingerprint.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from typing import TypeVar

from ct_monitor import merkle
from ct_monitor.checkpoint import CheckpointError, parse_and_verify
from ct_monitor.httpclient import USER_AGENT_PRODUCT, LogHTTP
from ct_monitor.signatures import SignatureError, load_log_key
from ct_monitor.types import LogDescription, LogEntry, LogError, LogMisbehaviour, TreeHead
from ct_monitor.wire import (
    TileLeaf,
    WireError,
    leaf_index_from_extensions,
    parse_tile_leaves,
    to_log_entry,
)

T = TypeVar("T")
TILE_WIDTH = 256
TILE_HEIGHT = 8
MAX_TILES_PER_CALL = 16
ISSUER_CACHE = 8192  # real logs have a few thousand issuers; more than one call can need


def tile_index_path(n: int) -> str:
    """tlog-tiles index encoding: 3-digit groups, all but the last prefixed 'x'
    (1234067 -> x001/x234/067)."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int | str, n: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``; level "data" for data tiles."""
    path = f"tile/{level}/{tile_index_path(n)}"
    return path if width == TILE_WIDTH else f"{path}.p/{width}"


async def _all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """gather() that lets every request finish before raising the first failure, so no
    request is left running (and no exception unretrieved) behind the caller's back."""
    out: list[T] = []
    for r in await asyncio.gather(*coros, return_exceptions=True):
        if isinstance(r, BaseException):
            raise r
        out.append(r)
    return out


class StaticCTClient:
    """A ``LogClient`` for a tiled log (``description.url`` is the monitoring prefix)."""

    def __init__(
        self,
        description: LogDescription,
        *,
        user_agent: str = USER_AGENT_PRODUCT,
        timeout: float = 30.0,
        max_retry_wait: float = 60.0,
    ) -> None:
        self.description = description
        self.url = description.url
        self.key = load_log_key(description.key_der)
        self.origin = description.origin
        self.http = LogHTTP(
            description.url,
            user_agent=user_agent,
            requests_per_second=description.requests_per_second,
            timeout=timeout,
            max_retry_wait=max_retry_wait,
            connections=max(2, description.parallel_downloads * 2),
        )
        self.tree_size = 0  # size of the latest verified checkpoint
        self._issuers: OrderedDict[bytes, bytes] = OrderedDict()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get_tree_head(self) -> TreeHead:
        body = await self.http.get("checkpoint")
        assert body is not None
        try:
            head = parse_and_verify(body, self.origin, self.description.log_id, self.key)
        except CheckpointError as exc:
            raise LogError(self.url, f"checkpoint: {exc}") from None
        except SignatureError as exc:
            raise LogMisbehaviour(self.url, str(exc)) from None
        self.tree_size = max(self.tree_size, head.tree_size)
        return head

    async def _tile(self, level: int | str, n: int, width: int) -> bytes:
        """A tile of ``width`` items; a partial one falls back to the full tile (spec: "SHOULD
        fetch the full tile ... as a fallback in case the partial tile is not available")."""
        item = 32 if level != "data" else 0
        if width < TILE_WIDTH:
            body = await self.http.get(tile_path(level, n, width), allow_404=True)
            if body is not None:
                return body
        body = await self.http.get(tile_path(level, n))
        assert body is not None
        if item and width < TILE_WIDTH:
            return body[: width * item]
        return body

    async def get_entries(self, start: int, end_inclusive: int) -> list[LogEntry]:
        if start < 0 or end_inclusive < start:
            raise ValueError(f"bad entry range {start}..{end_inclusive}")
        if end_inclusive >= self.tree_size:
            await self.get_tree_head()
        end = min(end_inclusive + 1, self.tree_size)
        if start >= end:
            raise LogError(self.url, f"entry {start} is beyond the checkpoint size {end}")
        first_tile = start // TILE_WIDTH
        last_tile = min((end - 1) // TILE_WIDTH, first_tile + MAX_TILES_PER_CALL - 1)
        size = self.tree_size
        bodies = await _all(
            self._tile("data", n, min(TILE_WIDTH, size - n * TILE_WIDTH))
            for n in range(first_tile, last_tile + 1)
        )
        wanted: list[tuple[int, TileLeaf]] = []
        for n, body in zip(range(first_tile, last_tile + 1), bodies, strict=True):
            base = n * TILE_WIDTH
            width = min(TILE_WIDTH, size - base)
            try:
                leaves = parse_tile_leaves(body)
            except WireError as exc:
                raise LogError(self.url, f"data tile {n}: {exc}") from None
            if len(leaves) < width:
                raise LogError(self.url, f"data tile {n}: {len(leaves)} entries, need {width}")
            for i in range(max(start, base) - base, min(end, base + width) - base):
                wanted.append((base + i, leaves[i]))
        # Issuers are few and shared by many entries: fetch the unknown ones once, up front.
        missing = {fp for _, leaf in wanted for fp in leaf.chain_fingerprints} - set(self._issuers)
        await _all(self._issuer(fp) for fp in missing)
        return [self._entry(index, leaf) for index, leaf in wanted]

    def _entry(self, index: int, leaf: TileLeaf) -> LogEntry:
        lh = merkle.leaf_hash(leaf.merkle_leaf)
        issuers = self._issuers
        chain = [issuers.get(fp) or b"" for fp in leaf.chain_fingerprints]
        entry = to_log_entry(index, lh, leaf.entry, leaf.pre_certificate, chain)
        try:
            claimed = leaf_index_from_extensions(leaf.entry.extensions)
        except WireError as exc:
            claimed = None
            problem = str(exc)
        else:
            problem = "" if claimed == index else f"leaf_index extension says {claimed}"
        if problem:
            # static-ct-api "SCT Extension": the leaf_index MUST be the entry's index.
            entry = replace(entry, parse_error=problem)
        return entry

    async def _issuer(self, fingerprint: bytes) -> bytes:
        der = self._issuers.get(fingerprint)
        if der is not None:
            self._issuers.move_to_end(fingerprint)
            return der
        body = await self.http.get(f"issuer/{fingerprint.hex()}")
        assert body is not None
        if hashlib.sha256(body).digest() != fingerprint:
            raise LogError(self.url, f"issuer {fingerprint.hex()} does not hash to its name")
        self._issuers[fingerprint] = body
        if len(self._issuers) > ISSUER_CACHE:
            self._issuers.popitem(last=False)
        return body

    async def get_consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 6962 §2.1.2 proof between two sizes, computed from hash tiles of tree ``second``."""
        if first < 0 or second < first:
            raise ValueError(f"bad sizes for a consistency proof: {first} -> {second}")
        if first == 0 or first == second:
            return []
        if second > self.tree_size:
            await self.get_tree_head()
            if second > self.tree_size:
                raise LogError(self.url, f"tree size {second} beyond the checkpoint")
        # Pass 1 records which complete subtrees the proof needs; then the tiles holding them
        # are fetched in parallel; pass 2 builds the proof from those hashes.
        needed: set[tuple[int, int]] = set()

        def record(level: int, index: int) -> bytes:
            needed.add((level, index))
            return b"\x00" * 32

        merkle.consistency_proof(record, first, second)
        tiles: dict[tuple[int, int], bytes] = {}
        keys = {
            (lvl // TILE_HEIGHT, (idx << (lvl % TILE_HEIGHT)) // TILE_WIDTH) for lvl, idx in needed
        }

        async def fetch(tl: int, tn: int) -> None:
            nodes_at_level = second >> (TILE_HEIGHT * tl)
            width = min(TILE_WIDTH, nodes_at_level - tn * TILE_WIDTH)
            body = await self._tile(tl, tn, width)
            if len(body) != width * 32:
                raise LogError(self.url, f"hash tile {tl}/{tn}: {len(body)} B, not {width * 32}")
            tiles[(tl, tn)] = body

        await _all(fetch(tl, tn) for tl, tn in keys)

        def node(level: int, index: int) -> bytes:
            tl, sub = divmod(level, TILE_HEIGHT)
            first_item = index << sub  # index of the first tile-level hash under this node
            tn, off = divmod(first_item, TILE_WIDTH)
            body = tiles[(tl, tn)]
            hashes = [body[(off + i) * 32 : (off + i + 1) * 32] for i in range(1 << sub)]
            return merkle.root_from_leaf_hashes(hashes)

        return merkle.consistency_proof(node, first, second)
