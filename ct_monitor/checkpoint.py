"""static-ct-api checkpoints: signed notes (c2sp.org/signed-note) whose body is a tlog checkpoint
(c2sp.org/tlog-checkpoint), signed with an RFC6962NoteSignature (c2sp.org/static-ct-api).

    <origin>\\n<tree size>\\n<base64 root hash>\\n\\n— <origin> <base64(key ID || signature)>\\n

RFC6962NoteSignature = uint64 timestamp || TreeHeadSignature (digitally-signed). Because the
signature covers exactly what an RFC 6962 STH covers, a checkpoint and a get-sth answer for the
same tree are interchangeable.
"""

from __future__ import annotations

import base64
import binascii

from ct_monitor.signatures import PublicKey, SignatureError, note_key_id, verify_tree_head
from ct_monitor.types import TreeHead

EM_DASH = "\u2014"
MAX_CHECKPOINT_BYTES = 1 << 16


class CheckpointError(ValueError):
    """Malformed checkpoint; the message says what is wrong."""


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{what} is not base64") from None


def parse_and_verify(data: bytes, origin: str, log_id: bytes, key: PublicKey) -> TreeHead:
    """Parse a checkpoint and verify the log's RFC6962NoteSignature on it.

    Raises CheckpointError for a malformed note and SignatureError when no signature line by
    the log verifies. Other signature lines (witnesses) are ignored, as the spec requires.
    """
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError("checkpoint larger than 64 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("checkpoint is not UTF-8") from None
    body, sep, sigs = text.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise CheckpointError("checkpoint has no signature block")
    lines = body.split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint body needs origin, tree size and root hash lines")
    if lines[0] != origin:
        raise CheckpointError(f"checkpoint origin {lines[0]!r}, expected {origin!r}")
    if len(lines) > 3:
        # static-ct-api: "A checkpoint signed with this algorithm MUST NOT include any
        # extension lines."
        raise CheckpointError("checkpoint has extension lines")
    size_text = lines[1]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError(f"bad tree size {size_text!r}")
    tree_size = int(size_text)
    root = _b64(lines[2], "root hash")
    if len(root) != 32:
        raise CheckpointError("root hash is not 32 bytes")
    # The RFC6962NoteSignature signs the TreeHeadSignature fields, not the note text: the
    # origin line is unauthenticated (static-ct-api "Checkpoints").
    want_id = note_key_id(origin, log_id)
    failure = "no signature line by the log's key"
    for line in sigs[:-1].split("\n"):
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise CheckpointError(f"malformed signature line {line[:40]!r}")
        name, _, sig_b64 = line[len(prefix) :].rpartition(" ")
        if name != origin:
            continue
        raw = _b64(sig_b64, "signature")
        if len(raw) < 4 + 8 or raw[:4] != want_id:
            continue
        timestamp = int.from_bytes(raw[4:12], "big")
        try:
            verify_tree_head(key, timestamp, tree_size, root, raw[12:])
        except SignatureError as exc:
            failure = str(exc)
            continue
        return TreeHead(tree_size, root, timestamp, raw[12:])
    raise SignatureError(f"checkpoint signature: {failure}")


def format_checkpoint(origin: str, log_id: bytes, head: TreeHead) -> bytes:
    """The checkpoint for a signed tree head (``head.signature`` = TreeHeadSignature bytes)."""
    body = f"{origin}\n{head.tree_size}\n{base64.b64encode(head.root_hash).decode()}\n"
    raw = note_key_id(origin, log_id) + head.timestamp_ms.to_bytes(8, "big") + head.signature
    return f"{body}\n{EM_DASH} {origin} {base64.b64encode(raw).decode()}\n".encode()
