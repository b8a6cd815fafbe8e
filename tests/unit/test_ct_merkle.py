"""Merkle hashing, compact range and proofs against the certificate-transparency reference
vectors (google/certificate-transparency cpp/merkletree/merkle_tree_test.cc)."""

from __future__ import annotations

import pytest

from ct_monitor.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    ProofError,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# The reference tree's eight leaf inputs (kInputs).
INPUTS = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip

# kSHA256Roots: the root after adding leaves 1..8.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# kSHA256Paths (the reference uses 1-based leaf numbers; these are 0-based indexes).
PATHS = [
    (0, 8, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, _h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (1, 5, _h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
]  # fmt: skip

# kSHA256Proofs.
PROOFS = [
    (1, 1, []),
    (1, 8, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, _h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, _h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
]  # fmt: skip

LEAVES = [leaf_hash(d) for d in INPUTS]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert CompactRange().root() == EMPTY_ROOT
    assert MerkleTree().root() == EMPTY_ROOT


def test_roots_for_sizes_1_to_8_match_reference_vectors() -> None:
    cr = CompactRange()
    tree = MerkleTree()
    for i, h in enumerate(LEAVES):
        cr.append(h)
        tree.append(h)
        assert cr.root() == ROOTS[i], f"compact range root at size {i + 1}"
        assert tree.root() == ROOTS[i]
        assert root_from_leaf_hashes(LEAVES[: i + 1]) == ROOTS[i]
    for size in range(1, 9):
        assert tree.root(size) == ROOTS[size - 1], "historical root"


def test_compact_range_survives_a_round_trip_through_json() -> None:
    cr = CompactRange()
    cr.extend(LEAVES[:5])
    again = CompactRange.from_json(cr.to_json())
    again.extend(LEAVES[5:])
    assert again.size == 8 and again.root() == ROOTS[7]
    with pytest.raises(ValueError):
        CompactRange(5, [EMPTY_ROOT])  # size 5 needs two subtree hashes


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_inclusion_proofs_match_reference_and_verify(
    index: int, size: int, path: list[bytes]
) -> None:
    tree = MerkleTree()
    tree.extend(LEAVES)
    assert tree.inclusion_proof(index, size) == path
    verify_inclusion(index, size, LEAVES[index], path, ROOTS[size - 1])
    with pytest.raises(ProofError):
        verify_inclusion(index ^ 1, size, LEAVES[index], path, ROOTS[size - 1])
    with pytest.raises(ProofError):
        verify_inclusion(index, size, LEAVES[index], path[:-1], ROOTS[size - 1])
    with pytest.raises(ProofError):
        verify_inclusion(index, size, LEAVES[index], [*path, EMPTY_ROOT], ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), PROOFS)
def test_consistency_proofs_match_reference_and_verify(
    first: int, second: int, proof: list[bytes]
) -> None:
    tree = MerkleTree()
    tree.extend(LEAVES)
    if first < second:
        assert tree.consistency_proof(first, second) == proof
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], proof)
    if not proof:
        return
    bad_cases = [
        (first, second, ROOTS[first - 1], EMPTY_ROOT, proof),  # wrong new root
        (first, second, EMPTY_ROOT, ROOTS[second - 1], proof),  # wrong old root
        (first, second, ROOTS[second - 1], ROOTS[first - 1], proof),  # swapped
        (first, second * 2, ROOTS[first - 1], ROOTS[second - 1], proof),  # wrong size
        (first, second, ROOTS[first - 1], ROOTS[second - 1], []),
        (first, second, ROOTS[first - 1], ROOTS[second - 1], proof[:-1]),
        (first, second, ROOTS[first - 1], ROOTS[second - 1], [*proof, proof[-1]]),
        (first, second, ROOTS[first - 1], ROOTS[second - 1], [EMPTY_ROOT, *proof]),
    ]
    for j in range(len(proof)):
        wrong = list(proof)
        wrong[j] = EMPTY_ROOT
        bad_cases.append((first, second, ROOTS[first - 1], ROOTS[second - 1], wrong))
    for args in bad_cases:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_every_proof_of_a_larger_tree_verifies() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(70)]
    tree = MerkleTree()
    tree.extend(leaves)
    for second in range(1, 71):
        root2 = root_from_leaf_hashes(leaves[:second])
        assert tree.root(second) == root2
        for first in range(1, second + 1):
            root1 = tree.root(first)
            proof = tree.consistency_proof(first, second) if first < second else []
            verify_consistency(first, second, root1, root2, proof)
        for index in range(0, second, 7):
            path = tree.inclusion_proof(index, second)
            verify_inclusion(index, second, leaves[index], path, root2)


def test_consistency_edge_cases() -> None:
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    with pytest.raises(ProofError):
        verify_consistency(2, 1, ROOTS[1], ROOTS[0], [])
    with pytest.raises(ProofError):
        verify_consistency(1, 1, ROOTS[0], ROOTS[1], [])
    with pytest.raises(ProofError):
        verify_inclusion(8, 8, LEAVES[0], [], ROOTS[7])


def test_bulk_extend_and_single_appends_build_the_same_tree() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(1000)]
    bulk, single = MerkleTree(), MerkleTree()
    bulk.extend(leaves[:300])
    bulk.append(leaves[300])
    bulk.extend(leaves[301:])
    for h in leaves:
        single.append(h)
    assert bulk.levels == single.levels
    cr = CompactRange()
    for size in (1, 255, 256, 257, 999, 1000):
        cr = CompactRange()
        cr.extend(leaves[:size])
        assert cr.root() == bulk.root(size) == root_from_leaf_hashes(leaves[:size])
