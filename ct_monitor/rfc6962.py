"""RFC 6962 §4 client: get-sth, get-entries, get-sth-consistency, get-proof-by-hash.

Every STH returned has had its TreeHeadSignature (§3.5) verified against the log's key; a bad
signature raises LogMisbehaviour. get-entries may answer with fewer entries than asked (§4.6
"Logs MAY honor requests where 0 <= start < tree_size and end >= tree_size by returning a
partial response"; many logs cap the batch): the caller continues from the next index.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from ct_monitor.httpclient import USER_AGENT_PRODUCT, LogHTTP
from ct_monitor.merkle import leaf_hash
from ct_monitor.signatures import SignatureError, load_log_key, verify_tree_head
from ct_monitor.types import LogDescription, LogEntry, LogError, LogMisbehaviour, TreeHead
from ct_monitor.wire import (
    WireError,
    parse_extra_data,
    parse_merkle_tree_leaf,
    to_log_entry,
    unparsable_entry,
)


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field} is not valid base64") from None


def _int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{field} is not a non-negative integer")
    return value


def parse_entry(index: int, item: Any) -> LogEntry:
    """One element of get-entries ``entries`` (leaf_input + extra_data, base64)."""
    if not isinstance(item, dict):
        raise ValueError(f"entry {index} is not an object")
    leaf_input = _b64(item.get("leaf_input"), f"entry {index} leaf_input")
    lh = leaf_hash(leaf_input)
    try:
        te = parse_merkle_tree_leaf(leaf_input)
    except WireError as exc:
        return unparsable_entry(index, lh, str(exc))
    try:
        precert, chain = parse_extra_data(
            te.entry_type, _b64(item.get("extra_data", ""), f"entry {index} extra_data")
        )
    except (WireError, ValueError) as exc:
        entry = to_log_entry(index, lh, te, b"", [])
        return dataclasses.replace(entry, parse_error=f"extra_data: {exc}")
    return to_log_entry(index, lh, te, precert, chain)


class RFC6962Client:
    """A ``LogClient`` for an RFC 6962 log (``description.url`` is the log URL)."""

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
        self.http = LogHTTP(
            description.url,
            user_agent=user_agent,
            requests_per_second=description.requests_per_second,
            timeout=timeout,
            max_retry_wait=max_retry_wait,
            connections=max(2, description.parallel_downloads * 2),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _json(self, path: str, params: dict[str, str | int] | None = None) -> dict[str, Any]:
        body = await self.http.get(path, params)
        assert body is not None  # allow_404 is False: a 404 raised LogError
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise LogError(self.url, f"{path}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise LogError(self.url, f"{path}: answer is not a JSON object")
        return data

    async def get_tree_head(self) -> TreeHead:
        """RFC 6962 §4.3 get-sth, signature verified (§3.5)."""
        data = await self._json("ct/v1/get-sth")
        try:
            size = _int(data.get("tree_size"), "tree_size")
            timestamp = _int(data.get("timestamp"), "timestamp")
            root = _b64(data.get("sha256_root_hash"), "sha256_root_hash")
            sig = _b64(data.get("tree_head_signature"), "tree_head_signature")
            if len(root) != 32:
                raise ValueError("sha256_root_hash is not 32 bytes")
        except ValueError as exc:
            raise LogError(self.url, f"get-sth: {exc}") from None
        try:
            verify_tree_head(self.key, timestamp, size, root, sig)
        except SignatureError as exc:
            raise LogMisbehaviour(self.url, f"STH signature invalid: {exc}", (size,)) from None
        return TreeHead(size, root, timestamp, sig)

    async def get_entries(self, start: int, end_inclusive: int) -> list[LogEntry]:
        """RFC 6962 §4.6 get-entries; may return fewer entries than asked, never more."""
        if start < 0 or end_inclusive < start:
            raise ValueError(f"bad entry range {start}..{end_inclusive}")
        data = await self._json("ct/v1/get-entries", {"start": start, "end": end_inclusive})
        items = data.get("entries")
        if not isinstance(items, list):
            raise LogError(self.url, "get-entries: no entries list")
        if not items:
            raise LogError(self.url, f"get-entries {start}..{end_inclusive}: no entries returned")
        items = items[: end_inclusive - start + 1]  # a log sending more than asked: ignore extra
        try:
            return [parse_entry(start + i, item) for i, item in enumerate(items)]
        except ValueError as exc:
            raise LogError(self.url, f"get-entries: {exc}") from None

    async def get_consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 6962 §4.4 get-sth-consistency (not verified here: see merkle.verify_consistency)."""
        if first < 0 or second < first:
            raise ValueError(f"bad sizes for a consistency proof: {first} -> {second}")
        if first == 0 or first == second:
            return []  # RFC 6962 §2.1.2 defines no proof for these; nothing to ask
        data = await self._json("ct/v1/get-sth-consistency", {"first": first, "second": second})
        return self._hash_list(data.get("consistency"), "get-sth-consistency")

    async def get_proof_by_hash(self, leaf_hash_: bytes, tree_size: int) -> tuple[int, list[bytes]]:
        """RFC 6962 §4.5 get-proof-by-hash: (leaf index, audit path)."""
        data = await self._json(
            "ct/v1/get-proof-by-hash",
            {"hash": base64.b64encode(leaf_hash_).decode(), "tree_size": tree_size},
        )
        try:
            index = _int(data.get("leaf_index"), "leaf_index")
        except ValueError as exc:
            raise LogError(self.url, f"get-proof-by-hash: {exc}") from None
        return index, self._hash_list(data.get("audit_path"), "get-proof-by-hash")

    def _hash_list(self, value: Any, what: str) -> list[bytes]:
        if not isinstance(value, list):
            raise LogError(self.url, f"{what}: no list of hashes")
        try:
            hashes = [_b64(v, f"{what} hash") for v in value]
        except ValueError as exc:
            raise LogError(self.url, f"{what}: {exc}") from None
        if any(len(h) != 32 for h in hashes):
            raise LogError(self.url, f"{what}: hash is not 32 bytes")
        return hashes
