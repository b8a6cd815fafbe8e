"""Merkle tree hashing and proofs (RFC 6962 §2.1, verification algorithms from RFC 9162 §2.1).

* ``leaf_hash`` / ``node_hash``: RFC 6962 §2.1 with the 0x00 / 0x01 domain separation prefixes.
* ``CompactRange``: the right-edge subtree roots of a tree of ``size`` leaves (one per set bit of
  ``size``, largest first), as certspotter keeps it: appending a leaf and computing the root are
  O(log n), and the whole state is at most 64 hashes, so it can be stored per log.
* ``verify_consistency`` / ``verify_inclusion``: RFC 9162 §2.1.4.2 and §2.1.3.2.
* ``MerkleTree``: an in-memory append-only tree with proofs (used by the suite's test log).

Hand-written rather than taken from a library: no maintained Python package implements the
RFC 9162 verification algorithms, and the code is short enough to check against the RFC text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 §2.1: MTH({}) = SHA-256()


class ProofError(ValueError):
    """A proof failed to verify or is malformed."""


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (RFC 6962 §2.1), for n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, straight from the RFC 6962 §2.1 definition (reference/tests)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = _largest_power_of_two_below(n)
    return node_hash(root_from_leaf_hashes(hashes[:k]), root_from_leaf_hashes(hashes[k:]))


class CompactRange:
    """Subtree roots covering leaves [0, size): one hash per set bit of ``size``, largest first."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        hs = list(hashes)
        if size < 0 or len(hs) != size.bit_count():
            raise ValueError(f"compact range of size {size} needs {size.bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hs):
            raise ValueError("compact range hashes must be 32 bytes")
        self.size = size
        self.hashes = hs

    def append(self, leaf_hash_: bytes) -> None:
        """Append one leaf hash; merges the equal-sized subtrees on the right edge."""
        new = leaf_hash_
        s = self.size
        while s & 1:
            new = node_hash(self.hashes.pop(), new)
            s >>= 1
        self.hashes.append(new)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of the first ``size`` leaves: fold the subtree roots from the right."""
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def to_json(self) -> dict[str, object]:
        """Storable form: {"size": n, "hashes": [hex, ...]}."""
        return {"size": self.size, "hashes": [h.hex() for h in self.hashes]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CompactRange:
        size = data.get("size")
        hashes = data.get("hashes")
        if not isinstance(size, int) or not isinstance(hashes, list):
            raise ValueError("compact range JSON needs an integer size and a list of hashes")
        return cls(size, [bytes.fromhex(str(h)) for h in hashes])


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise ProofError unless ``leaf`` (a leaf hash) is at ``index``."""
    if index >= tree_size or index < 0:
        raise ProofError(f"leaf index {index} outside tree of size {tree_size}")
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise ProofError unless tree ``second`` extends tree ``first``."""
    if first < 0 or second < first:
        raise ProofError(f"bad sizes for a consistency proof: {first} -> {second}")
    if first == second:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("different roots for the same tree size")
        return
    if first == 0:
        # Every tree extends the empty tree; RFC 6962 §2.1.2 defines no proof for it.
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    # Step 1: if first is an exact power of 2, prepend first_hash.
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != first_root:
        raise ProofError(f"consistency proof does not match the root of tree size {first}")
    if sr != second_root:
        raise ProofError(f"consistency proof does not match the root of tree size {second}")


class MerkleTree:
    """Append-only tree keeping every complete subtree hash, one bytearray per level.

    Level L holds the roots of the complete subtrees of 2**L leaves, 32 bytes each, so a tree of
    a million leaves costs about 64 MB and any historical root or proof is O(log² n).
    """

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]

    @property
    def size(self) -> int:
        return len(self.levels[0]) // HASH_SIZE

    def node(self, level: int, index: int) -> bytes:
        """Root of the complete subtree of 2**level leaves starting at leaf index << level."""
        off = index * HASH_SIZE
        return bytes(self.levels[level][off : off + HASH_SIZE])

    def append(self, leaf_hash_: bytes) -> None:
        self.levels[0] += leaf_hash_
        index = self.size - 1
        level = 0
        h = leaf_hash_
        while index & 1:
            h = node_hash(self.node(level, index - 1), h)
            level += 1
            index >>= 1
            if len(self.levels) <= level:
                self.levels.append(bytearray())
            self.levels[level] += h

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, then complete each level above in one pass (bulk build)."""
        self.levels[0] += b"".join(leaf_hashes)
        level = 0
        while len(self.levels[level]) >= 2 * HASH_SIZE:
            if len(self.levels) <= level + 1:
                self.levels.append(bytearray())
            below, above = memoryview(self.levels[level]), self.levels[level + 1]
            have, want = len(above) // HASH_SIZE, len(below) // (2 * HASH_SIZE)
            sha256 = hashlib.sha256
            parts = []
            for i in range(have, want):
                h = sha256(b"\x01")
                h.update(below[2 * HASH_SIZE * i : 2 * HASH_SIZE * (i + 1)])
                parts.append(h.digest())
            above += b"".join(parts)
            del below
            level += 1

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) (requires end <= size)."""
        return subtree_hash(self.node, start, end)

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"tree has only {self.size} leaves, asked for {size}")
        return self.subtree_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no inclusion proof for leaf {index} in tree size {size}")
        return inclusion_proof(self.node, index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if not 0 < first <= second <= self.size:
            raise ValueError(f"no consistency proof for sizes {first} -> {second}")
        return consistency_proof(self.node, first, second)


# Proof construction over any source of complete-subtree hashes: ``node(level, index)`` returns
# the root of leaves [index << level, (index + 1) << level). MerkleTree passes its stored levels;
# the static-ct-api client passes hashes read from tiles.
NodeSource = Callable[[int, int], bytes]


def subtree_hash(node: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) (RFC 6962 §2.1) from complete subtrees, O(log n) node lookups."""
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _largest_power_of_two_below(n)
    return node_hash(subtree_hash(node, start, start + k), subtree_hash(node, start + k, end))


def inclusion_proof(node: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]), sibling nearest the leaf first."""
    proof: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            proof.append(subtree_hash(node, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(node, start, start + k))
            start += k
            m -= k
    proof.reverse()
    return proof


def consistency_proof(node: NodeSource, first: int, second: int) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(m, D[n]) = SUBPROOF(m, D[n], true); [] for m = 0 or m = n."""
    if first <= 0 or first >= second:
        return []
    return _subproof(node, first, 0, second, True)


def _subproof(node: NodeSource, m: int, start: int, end: int, complete: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if complete else [subtree_hash(node, start, end)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof(node, m, start, start + k, complete), subtree_hash(node, start + k, end)]
    return [*_subproof(node, m - k, start + k, end, False), subtree_hash(node, start, start + k)]
