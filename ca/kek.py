"""Key-encryption keys (KEKs) for the software key backend's envelope encryption.

Each software CA key is encrypted under its own random data key; the data key is *wrapped* by a
KEK and stored next to the ciphertext (``ca/software_keys.py``). A KEK comes from:

* :class:`FileKek` - 32 random bytes, base64url text, in a file only its owner can read;
* :class:`EnvKek` - the same text in an environment variable (``CERTYARD_KEK``);
* :class:`TokenKek` - an AES-256 key generated on a PKCS#11 token, which never leaves it.

File and environment KEKs wrap with AES Key Wrap with Padding (RFC 5649) through cryptography;
the token KEK wraps on the token with ``CKM_AES_KEY_WRAP`` (RFC 3394; PKCS#11 v2.40 mech §2.14).
``kek_id`` is stored with every blob so that a process with another KEK fails clearly. It is not
secret: the source kind plus, for raw keys, the first 64 bits of the key's SHA-256.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from ca.errors import CAError, CAErrorKind
from ca.pkcs11_keys import Pkcs11Config
from ca.pkcs11_keys import _module as _pkcs11_module  # the module registry and its call gate

DEFAULT_KEK_VARIABLE = "CERTYARD_KEK"
DEFAULT_TOKEN_KEK_LABEL = "certyard-kek"  # noqa: S105 - an object label, not a secret
KEK_BYTES = 32  # AES-256
DATA_KEY_BYTES = 32  # the data keys software_keys wraps: AES-256 (GCM)
_KEY_TEXT = re.compile(rb"[A-Za-z0-9_-]{43}=?")  # base64url of 32 octets (RFC 4648 §5)
_MAX_KEY_FILE = 4096


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys. Failures are ``CAError``: ``internal`` when a wrapped key does
    not unwrap (wrong KEK, damaged blob), ``unavailable`` when the key store cannot be reached."""

    kek_id: str

    async def wrap(self, data_key: bytes) -> bytes: ...

    async def unwrap(self, wrapped: bytes) -> bytes: ...


class _AesKek:
    """A KEK held in process memory: RFC 5649 key wrap (the integrity check of §3 tells a wrong
    KEK or a damaged wrapped key from a good one)."""

    def __init__(self, kek_id: str, key: bytes) -> None:
        self.kek_id = kek_id
        self._key = key

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.kek_id!r})"

    async def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap_with_padding(self._key, data_key)

    async def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap_with_padding(self._key, wrapped)
        except (InvalidUnwrap, ValueError) as exc:
            raise CAError(
                "internal",
                f"KEK {self.kek_id} cannot unwrap the data key: wrong KEK or damaged blob",
                exc,
            ) from exc


class FileKek(_AesKek):
    """A KEK in ``path``: 32 bytes, base64url. The file must be a regular file owned by this
    process's user with no group or other permission bits; ``create_if_missing`` creates it
    (mode 0600, directories 0700) so that racing processes all end up with the same key."""

    def __init__(self, path: Path, *, create_if_missing: bool = False) -> None:
        if create_if_missing and not path.exists():
            text = base64.urlsafe_b64encode(secrets.token_bytes(KEK_BYTES)).rstrip(b"=")
            create_private_file(path, text + b"\n")
        self.path = path
        key = _read_key_file(path)
        super().__init__("file:" + _fingerprint(key), key)


class EnvKek(_AesKek):
    """A KEK in the environment variable ``variable``: 32 bytes, base64url."""

    def __init__(self, variable: str = DEFAULT_KEK_VARIABLE) -> None:
        value = os.environ.get(variable, "")
        if not value.strip():
            raise CAError(
                "malformed",
                f"environment variable {variable} is not set or empty; it "
                f"must hold a base64url-encoded {KEK_BYTES}-byte key",
            )
        key = _decode_key(value.encode(), f"environment variable {variable}")
        super().__init__("env:" + _fingerprint(key), key)


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _decode_key(text: bytes, where: str) -> bytes:
    """The key in ``text`` (base64url, padding optional); the error never quotes the text."""
    text = text.strip()
    if _KEY_TEXT.fullmatch(text) is None:
        raise CAError(
            "malformed",
            f"{where} does not hold a base64url-encoded {KEK_BYTES}-byte key "
            "(43 characters of A-Z a-z 0-9 - _)",
        )
    return base64.urlsafe_b64decode(text.rstrip(b"=") + b"=")


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CAError("malformed", f"cannot open KEK file {path}: {exc.strerror}", exc) from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())  # of what was opened: no check-then-open race
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            raise CAError("malformed", f"KEK file {path} is not a regular file")
        if mode & 0o077:
            raise CAError(
                "malformed",
                f"KEK file {path} has mode {mode:04o}: it must be readable "
                "by its owner only (chmod 600)",
            )
        if info.st_uid != os.geteuid():
            raise CAError(
                "malformed",
                f"KEK file {path} belongs to uid {info.st_uid}, not to "
                f"this process's uid {os.geteuid()}",
            )
        content = file.read(_MAX_KEY_FILE)
    return _decode_key(content, f"KEK file {path}")


# --- owner-only files (shared with software_keys.load_or_create_passphrase) -------------------


def create_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` holding ``content`` with mode 0600 unless it exists (then leave it alone).

    The content goes to a temporary file (mkstemp: O_CREAT|O_EXCL, mode 0600), is fsynced, and is
    hard-linked into place; ``os.link`` fails if the name exists, so of racing processes exactly
    one wins, nobody ever reads a half-written file, and the losers read the winner's content.
    Missing directories are created 0700.
    """
    make_private_dirs(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp_name, path)
    finally:
        os.unlink(tmp_name)
    fsync_dir(path.parent)


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700 (existing ones untouched)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for new_dir in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new_dir.mkdir(mode=0o700)
            new_dir.chmod(0o700)  # mkdir's mode is filtered by the umask


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the token KEK ------------------------------------------------------------------------------

# mech §2.14.3: CKM_AES_KEY_WRAP is RFC 3394. Data keys are 32 octets, a multiple of the 64-bit
# block, so no padding is needed - and CKM_AES_KEY_WRAP_PAD is ambiguous: SoftHSM2 2.6 implements
# RFC 5649 under it, PKCS#11 v3.x defines it as PKCS#7 padding + RFC 3394 and names RFC 5649
# CKM_AES_KEY_WRAP_KWP (softhsmv2 issue #726).
_TOKEN_WRAP = Mechanism.AES_KEY_WRAP
_TOKEN_WRAPPED_BYTES = DATA_KEY_BYTES + 8  # RFC 3394 §2.2.1: n + 1 64-bit blocks
_CKA_ID_BYTES = 16
# An unwrap whose RFC 3394 integrity check fails: SoftHSM2 2.6 answers CKR_GENERAL_ERROR.
_NOT_UNWRAPPED = (p11.GeneralError, p11.WrappedKeyInvalid, p11.WrappedKeyLenRange)
# The device, token or session went away (base §5.1); a bare PKCS11Error is a code python-pkcs11
# has no class for, or the module failing to load.
_LOST = (
    p11.DeviceError, p11.DeviceRemoved, p11.TokenNotPresent, p11.TokenNotRecognised,
    p11.SessionHandleInvalid, p11.SessionClosed, p11.GeneralError, p11.UserNotLoggedIn,
    p11.NoSuchToken, p11.SlotIDInvalid,
)  # fmt: skip
_BAD_PIN = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinExpired, p11.PinLocked,
            p11.UserPinNotInitialized)  # fmt: skip


class TokenKek:
    """An AES-256 KEK generated on a PKCS#11 token (``CKA_TOKEN``, ``CKA_PRIVATE``,
    ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``, only ``CKA_WRAP``/``CKA_UNWRAP``: base §4.9),
    found by ``label`` on later starts; data keys are wrapped and unwrapped on the token.

    Each operation is one ``asyncio.to_thread`` call that opens a session, works and closes it,
    holding the *same* per-module gate as :class:`ca.pkcs11_keys.Pkcs11KeyBackend` exclusively:
    python-pkcs11's ``C_Initialize(NULL_PTR)`` means one call into the module at a time (base
    §5.4). It logs in only when the key is not visible without (base §5.6: a backend of this
    process may hold the login already), so its logout never cuts off a backend. Use the same
    ``Pkcs11Config`` as any backend on that module: another ``env`` re-initializes the module.

    If two processes create the key at once, the token ends up with two keys of that label:
    ``wrap`` uses the one with the lowest ``CKA_ID`` and ``unwrap`` tries each, so every blob
    stays readable.
    """

    def __init__(self, config: Pkcs11Config, label: str = DEFAULT_TOKEN_KEK_LABEL) -> None:
        if not label:
            raise CAError("malformed", "the token KEK needs a label")
        self.kek_id = "pkcs11:" + label
        self.label = label
        self._config = config
        self._fatal: str | None = None

    def __repr__(self) -> str:
        return f"TokenKek({self.kek_id!r}, token={self._config.token_label!r})"

    async def wrap(self, data_key: bytes) -> bytes:
        if len(data_key) != DATA_KEY_BYTES:
            raise CAError("internal", f"the token KEK wraps {DATA_KEY_BYTES}-byte data keys only")

        def op(session: Any, keys: list[Any]) -> bytes:
            # A session object (gone with the session), extractable so it can be wrapped.
            plain = session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: data_key, Attribute.TOKEN: False, Attribute.PRIVATE: True,
                Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
            })  # fmt: skip
            try:
                return bytes(keys[0].wrap_key(plain, mechanism=_TOKEN_WRAP))
            finally:
                plain.destroy()

        return await self._run(op, create=True)

    async def unwrap(self, wrapped: bytes) -> bytes:
        if len(wrapped) != _TOKEN_WRAPPED_BYTES:
            raise CAError(
                "internal",
                f"KEK {self.kek_id} cannot unwrap the data key: it is "
                f"{len(wrapped)} bytes, not {_TOKEN_WRAPPED_BYTES} (damaged blob?)",
            )

        def op(session: Any, keys: list[Any]) -> bytes:
            for kek in keys:
                try:
                    plain = kek.unwrap_key(
                        ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, wrapped,
                        mechanism=_TOKEN_WRAP, capabilities=MechanismFlag(0),
                        template={Attribute.TOKEN: False, Attribute.PRIVATE: True,
                                  Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
                    )  # fmt: skip
                except _NOT_UNWRAPPED:
                    continue
                try:
                    return bytes(plain[Attribute.VALUE])
                finally:
                    plain.destroy()
            session.token.slot.get_token()  # C_GetTokenInfo: raises if the token itself is gone
            raise CAError(
                "internal",
                f"KEK {self.kek_id} cannot unwrap the data key: wrong KEK or damaged blob",
            )

        return await self._run(op, create=False)

    async def _run(self, op: Callable[[Any, list[Any]], bytes], *, create: bool) -> bytes:
        if self._fatal is not None:
            raise CAError("internal", self._fatal)
        call = asyncio.to_thread(self._call, op, create)
        try:
            return await asyncio.wait_for(call, self._config.call_timeout)
        except TimeoutError:
            raise CAError(
                "unavailable",
                f"PKCS#11 token {self._config.token_label!r}: no answer "
                f"within {self._config.call_timeout:g}s",
            ) from None

    def _call(self, op: Callable[[Any, list[Any]], bytes], create: bool) -> bytes:
        """On a worker thread, with the module to ourselves for the whole session."""
        module = _pkcs11_module(self._config.module)
        with module.gate.exclusive():
            session: Any = None
            try:
                token = module.library(self._config.env, fresh=False).get_token(
                    token_label=self._config.token_label
                )
                session = token.open(rw=True)
                keys = self._find(session)
                if not keys:  # not logged in yet, or no key yet
                    session.close()
                    session = None  # closed: the finally below must not close it again
                    session = self._login(token)
                    keys = self._find(session)
                    if not keys and create:
                        self._generate(session)
                        keys = self._find(session)
                    if not keys:
                        raise CAError(
                            "internal",
                            f"no AES key labelled {self.label!r} on "
                            f"PKCS#11 token {self._config.token_label!r}",
                        )
                return op(session, keys)
            except p11.PKCS11Error as exc:
                lost = isinstance(exc, _LOST) or type(exc) is p11.PKCS11Error
                kind: CAErrorKind = "unavailable" if lost else "internal"
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                where = f"PKCS#11 token {self._config.token_label!r}"
                raise CAError(kind, f"{where}: {detail}", exc) from exc
            finally:
                if session is not None:
                    with contextlib.suppress(p11.PKCS11Error):
                        session.close()  # logs out only if this session logged in

    def _login(self, token: Any) -> Any:
        try:
            return token.open(rw=True, user_pin=self._config.pin)
        except p11.UserAlreadyLoggedIn:
            # Logged in by a backend, and the key is not there yet. python-pkcs11 drops the
            # session whose C_Login failed (C_Finalize frees it): once, when the key is created.
            return token.open(rw=True)
        except _BAD_PIN as exc:
            # base §5.6: repeated failed logins may lock the token, so never try again.
            self._fatal = (
                f"login to PKCS#11 token {self._config.token_label!r} refused "
                f"({type(exc).__name__}); fix the PIN and restart"
            )
            raise CAError("internal", self._fatal, exc) from exc

    def _find(self, session: Any) -> list[Any]:
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.LABEL: self.label}  # fmt: skip
        keys = sorted(session.get_objects(template), key=lambda key: bytes(key[Attribute.ID]))
        for key in keys:
            if (
                key[Attribute.EXTRACTABLE]
                or not key[Attribute.SENSITIVE]
                or not key[Attribute.PRIVATE]
            ):
                raise CAError(
                    "internal",
                    f"token key {self.label!r} is extractable, not "
                    "sensitive or not private: refusing it as a KEK",
                )
        return keys

    def _generate(self, session: Any) -> None:
        session.generate_key(
            KeyType.AES, KEK_BYTES * 8, id=secrets.token_bytes(_CKA_ID_BYTES), label=self.label,
            store=True, capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            template={  # base §4.9: never readable, never wrapped out; mech §2.14: AES-256
                Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False, Attribute.WRAP: True, Attribute.UNWRAP: True,
                Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.SIGN: False,
                Attribute.VERIFY: False, Attribute.DERIVE: False,
            },
        )  # fmt: skip
