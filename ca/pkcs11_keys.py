"""The PKCS#11 key backend: CA keys generated on, and used inside, an HSM token (python-pkcs11).

Citations: "base" is the PKCS#11 v2.40 Base Specification, "mech" the v2.40 Current Mechanisms
Specification (v3.0 keeps both texts).

Private keys are generated on the token, sensitive and non-extractable (base §4.9), and every
signature is computed there; only public keys and CKA_IDs are held in memory.

Threads. PKCS#11 calls block, so they run on a dedicated thread pool, never on the event loop.
Each worker thread opens its own session, so no session is ever used by two calls at once; the
user login happens once, on an "anchor" session, and holds for every session of the process
(base §5.6, C_Login). python-pkcs11 calls ``C_Initialize(NULL_PTR)``, which tells the module
that the application will not call it from several threads at once (base §5.4, C_Initialize;
SoftHSM2 then turns its own locking off), so calls into the module are serialized by ``_Gate``
unless ``Pkcs11Config.parallel`` says the module is thread-safe regardless.

Losing the token. A call failing with an error that means the device, token, login or session is
gone marks the connection lost and raises ``CAError("unavailable")``; the next call (or
``health()``) reconnects: reopen the token and log in again, and if that fails, ``C_Finalize``
+ ``C_Initialize`` the module (base §5.4) - SoftHSM2 only sees a token again after that.
Signing is idempotent, so a sign that hits a lost session reconnects and retries once at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pkcs11
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import MGF
from pkcs11.util.ec import encode_named_curve_parameters

from ca.errors import CAError
from ca.keys import (
    PSS_SALT_LENGTH,
    SCHEME_PKCS1V15,
    SCHEME_PSS,
    BackendHealth,
    GeneratedKey,
    algorithm_of,
    check_scheme,
    curve_for,
    rsa_bits_for,
    signature_hash,
    spki_der,
)
from certyard.metrics import hsm_timer

log = structlog.get_logger("certyard.pkcs11")
T = TypeVar("T")

ID_REF = "pkcs11:id="
SPKI_REF = "pkcs11:spki-sha256="
_CKA_ID_BYTES = 16
_COMBINED_ECDSA = {"sha256": Mechanism.ECDSA_SHA256, "sha384": Mechanism.ECDSA_SHA384}
_CURVES_BY_PARAMS: dict[bytes, ec.EllipticCurve] = {
    encode_named_curve_parameters(curve.name): curve for curve in (ec.SECP256R1(), ec.SECP384R1())
}
# Errors meaning the device, token, login or session went away (base §5.1.1-5.1.3).
# A vanished object handle counts too: SoftHSM2 reports a token whose storage disappeared so.
_LOST = (
    p11.DeviceError, p11.DeviceRemoved, p11.TokenNotPresent, p11.TokenNotRecognised,
    p11.SessionHandleInvalid, p11.SessionClosed, p11.GeneralError, p11.UserNotLoggedIn,
    p11.NoSuchToken, p11.ObjectHandleInvalid, p11.KeyHandleInvalid, p11.SlotIDInvalid,
)  # fmt: skip
# A wrong PIN is not retried: repeated failed logins lock the token (base §5.6, C_Login).
_BAD_PIN = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinExpired, p11.PinLocked,
            p11.UserPinNotInitialized)  # fmt: skip


class _Invisible(p11.UserNotLoggedIn):  # a private key hidden, its public half not: logged out?
    pass


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the token is. ``pin`` is read by the caller from an owner-only file; ``env`` is put
    into ``os.environ`` before the module is initialized (SoftHSM2 reads SOFTHSM2_CONF then)."""

    module: str
    token_label: str
    pin: str = field(repr=False)
    sessions: int = 4
    env: dict[str, str] = field(default_factory=dict)
    call_timeout: float = 10.0  # seconds a call (including a reconnect) may take
    retry_interval: float = 1.0  # at most one reconnect attempt per interval while lost
    parallel: bool = False  # only for modules that are thread-safe despite C_Initialize(NULL)

    def __post_init__(self) -> None:
        if not self.pin or not self.token_label or self.sessions < 1:
            raise CAError("malformed", "PKCS#11 needs a token label, a PIN and sessions >= 1")
        if self.call_timeout <= 0 or self.retry_interval < 0:
            raise CAError("malformed", "PKCS#11 timeouts must be positive")


class _Gate:
    """A readers-writer lock with writer preference: token calls share it (or hold it alone
    when serialized); closing sessions and C_Finalize/C_Initialize hold it alone (base §5.4:
    C_Finalize while other threads are inside the module is undefined)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writer and not self._readers)
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Module:
    """One PKCS#11 library in this process (C_Initialize is process-wide, base §5.4), shared by
    every backend that names it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.gate = _Gate()
        self._env: dict[str, str] | None = None
        self._lib: Any = None

    def library(self, env: dict[str, str], *, fresh: bool) -> Any:
        """The initialized library; ``fresh`` forces C_Finalize + C_Initialize. Caller holds
        the gate exclusively."""
        os.environ.update(env)
        if self._lib is not None and (fresh or env != self._env):
            with suppress(p11.PKCS11Error):
                self._lib.finalize()
        self._env = dict(env)
        self._lib = pkcs11.lib(self.path)  # loads once; C_Initialize when not initialized
        return self._lib


_modules: dict[str, _Module] = {}
_modules_lock = threading.Lock()


def _module(path: str) -> _Module:
    real = os.path.realpath(path)  # one dlopen handle, so one registry entry per file
    with _modules_lock:
        return _modules.setdefault(real, _Module(real))


@dataclass
class _Worker:
    """A worker thread's own session and the private-key handles it has found."""

    session: Any
    keys: dict[bytes, Any] = field(default_factory=dict)


class _Connection:
    """A logged-in token: the anchor session that holds the login, plus one session per worker
    thread, opened on first use."""

    def __init__(self, token: Any, anchor: Any) -> None:
        self.token = token
        self.anchor = anchor
        self.mechanisms: set[Any] = set(token.slot.get_mechanisms())
        self.closed = False
        self.workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()

    def worker(self) -> _Worker:
        ident = threading.get_ident()
        with self._lock:
            found = self.workers.get(ident)
        if found is None:
            found = _Worker(self.token.open(rw=True))  # logged in through the anchor
            with self._lock:
                self.workers[ident] = found
        return found

    def private_key(self, worker: _Worker, ckaid: bytes) -> Any:
        key = worker.keys.get(ckaid)
        if key is None:
            try:
                key = worker.session.get_key(ObjectClass.PRIVATE_KEY, id=ckaid)
            except p11.NoSuchKey:
                self.token.slot.get_token()  # C_GetTokenInfo: raises if the token is gone
                public = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: ckaid}
                if list(worker.session.get_objects(public)):
                    # Private objects are invisible without a login (base §4.4, CKA_PRIVATE):
                    # another backend of this process may have logged the process out.
                    raise _Invisible(f"private key {_ref(ckaid)} is not visible") from None
                raise CAError("internal", f"key {_ref(ckaid)} is not on the token") from None
            worker.keys[ckaid] = key
        return key

    def close(self) -> None:
        """Close every session (the anchor last: that logs out, base §5.6). Gate held."""
        self.closed = True
        for session in [w.session for w in self.workers.values()] + [self.anchor]:
            with suppress(p11.PKCS11Error):
                session.close()
        self.workers.clear()


@dataclass(frozen=True)
class _Key:
    ckaid: bytes
    algorithm: str
    public_key: PublicKeyTypes


class Pkcs11KeyBackend:
    """CA keys on a PKCS#11 token; see the module docstring for threads and recovery."""

    name: str = "pkcs11"

    def __init__(self, config: Pkcs11Config) -> None:
        self._config = config
        self._module = _module(config.module)
        self._executor = ThreadPoolExecutor(config.sessions, thread_name_prefix="pkcs11")
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()  # guards the connection state below
        self._reconnecting = threading.Lock()
        self._conn: _Connection | None = None
        self._stale: list[_Connection] = []
        self._problem = "not connected yet"
        self._fatal: str | None = None
        self._last_attempt = -float("inf")
        self._closed = False

    # --- the KeyBackend interface ------------------------------------------------------------

    async def generate(self, label: str, algorithm: str) -> GeneratedKey:
        curve, bits = curve_for(algorithm), rsa_bits_for(algorithm)
        ckaid = secrets.token_bytes(_CKA_ID_BYTES)

        def op(conn: _Connection, worker: _Worker) -> PublicKeyTypes:
            session = worker.session
            if list(session.get_objects({Attribute.LABEL: label})):
                raise CAError("conflict", f"a key labelled {label!r} already exists")
            common = {Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.ID: ckaid}
            # base §4.9: the private half never leaves the token and can only sign.
            private = common | {
                Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True, Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            }  # fmt: skip
            public = common | {Attribute.VERIFY: True, Attribute.ENCRYPT: False}
            if curve is not None:  # mech §2.3.5, named-curve OID
                public[Attribute.EC_PARAMS] = encode_named_curve_parameters(curve.name)
                key_type, mechanism = KeyType.EC, Mechanism.EC_KEY_PAIR_GEN
            else:  # mech §2.1.4; BR §6.1.6: e = 65537
                public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
                key_type, mechanism = KeyType.RSA, Mechanism.RSA_PKCS_KEY_PAIR_GEN
            pub, _ = session.generate_keypair(
                key_type, bits, store=True, id=ckaid, label=label, mechanism=mechanism,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template=public, private_template=private,
            )  # fmt: skip
            return _public_key_of(pub)

        # Not retried: a generation that failed half-way may have created objects.
        with hsm_timer(self.name, "generate"):  # docs/metrics.md
            public_key = await self._call(op, retry=False)
        key_ref = _ref(ckaid)
        self._keys[key_ref] = _Key(ckaid, algorithm, public_key)
        return GeneratedKey(key_ref=key_ref, key_blob=None, public_key=public_key)

    async def load(self, key_ref: str, key_blob: bytes | None) -> None:
        if key_blob is not None:
            raise CAError("internal", f"{key_ref!r}: a PKCS#11 key has no stored blob")
        kind, value = _parse_ref(key_ref)

        def op(conn: _Connection, worker: _Worker) -> tuple[bytes, PublicKeyTypes]:
            if kind == "spki":
                ckaid, public_key = _find_by_spki(worker.session, value)
            else:
                public = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: value}
                found = list(worker.session.get_objects(public))
                if len(found) != 1:
                    raise CAError("not_found", f"no single public key {key_ref} on the token")
                ckaid, public_key = value, _public_key_of(found[0])
            conn.private_key(worker, ckaid)  # the private half must be there too
            return ckaid, public_key

        with hsm_timer(self.name, "load"):
            ckaid, public_key = await self._call(op)
        key = _Key(ckaid, algorithm_of(public_key), public_key)
        self._keys[key_ref] = key
        self._keys[_ref(ckaid)] = key

    async def find_by_public_key(self, public_key: PublicKeyTypes) -> str:
        """Load the token key whose public half is ``public_key`` (e.g. an issuer certificate's)
        and return its canonical reference ``pkcs11:id=<hex CKA_ID>``."""
        spki_ref = SPKI_REF + hashlib.sha256(spki_der(public_key)).hexdigest()
        await self.load(spki_ref, None)
        return _ref(self._key(spki_ref).ckaid)

    def public_key(self, key_ref: str) -> PublicKeyTypes:
        return self._key(key_ref).public_key

    async def sign(self, key_ref: str, data: bytes, *, scheme: str = SCHEME_PKCS1V15) -> bytes:
        key = self._key(key_ref)
        check_scheme(key.algorithm, scheme)
        digest = signature_hash(key.algorithm)

        def op(conn: _Connection, worker: _Worker) -> bytes:
            private = conn.private_key(worker, key.ckaid)
            if isinstance(key.public_key, ec.EllipticCurvePublicKey):
                combined = _COMBINED_ECDSA[digest.name]
                if combined in conn.mechanisms:
                    return bytes(private.sign(data, mechanism=combined))
                # mech §2.3.6: CKM_ECDSA signs a hash computed by the caller (SoftHSM2 2.6
                # has no CKM_ECDSA_SHA256/384).
                hasher = hashes.Hash(digest)
                hasher.update(data)
                return bytes(private.sign(hasher.finalize(), mechanism=Mechanism.ECDSA))
            if scheme == SCHEME_PSS:  # mech §2.1.17, RFC 4055 §3.1
                return bytes(private.sign(
                    data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                    mechanism_param=(Mechanism.SHA256, MGF.SHA256, PSS_SALT_LENGTH),
                ))  # fmt: skip
            return bytes(private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))  # mech §2.1.14

        with hsm_timer(self.name, "sign"):
            signature = await self._call(op)
        if isinstance(key.public_key, ec.EllipticCurvePublicKey):
            return _ecdsa_der(signature, key.public_key.curve)
        return signature

    async def destroy(self, key_ref: str) -> None:
        kind, value = _parse_ref(key_ref)
        ckaid = value if kind == "id" else self._key(key_ref).ckaid

        def op(conn: _Connection, worker: _Worker) -> None:
            for obj in list(worker.session.get_objects({Attribute.ID: ckaid})):
                obj.destroy()
            worker.keys.pop(ckaid, None)

        for ref in [ref for ref, key in self._keys.items() if key.ckaid == ckaid]:
            del self._keys[ref]
        await self._call(op)

    async def health(self) -> BackendHealth:
        """C_GetTokenInfo, and CKA_SIGN read through each loaded key's handle. No test signature:
        BR §6.1.7 keeps CA keys for certificates, CRLs and OCSP."""
        ckaids = {key.ckaid for key in self._keys.values()}

        def op(conn: _Connection, worker: _Worker) -> str:
            conn.token.slot.get_token()
            for ckaid in ckaids:
                if not conn.private_key(worker, ckaid)[Attribute.SIGN]:
                    raise CAError("internal", f"key {_ref(ckaid)} may not sign")
            return (
                f"token {self._config.token_label!r} reachable, {len(ckaids)} key(s) usable, "
                f"{len(conn.workers)} session(s) open"
            )

        try:
            return BackendHealth(ok=True, detail=await self._call(op))
        except CAError as exc:
            return BackendHealth(ok=False, detail=exc.detail)

    async def close(self) -> None:
        """Close all sessions (logging out) and stop the worker threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = [*self._stale, *([self._conn] if self._conn else [])]
            self._conn, self._stale = None, []

        def shut() -> None:
            with self._module.gate.exclusive():
                for conn in conns:
                    conn.close()

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, shut)
            await asyncio.wait_for(future, self._config.call_timeout)
        except TimeoutError:
            log.warning("pkcs11_close_timeout", token_label=self._config.token_label)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- calls, loss and reconnection ----------------------------------------------------------

    def _key(self, key_ref: str) -> _Key:
        if key_ref not in self._keys:
            raise CAError("not_found", f"key {key_ref!r} is not loaded")
        return self._keys[key_ref]

    async def _call(self, op: Callable[[_Connection, _Worker], T], *, retry: bool = True) -> T:
        if self._closed:
            raise CAError("unavailable", "the PKCS#11 key backend is closed")
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run, op, retry)
        try:
            return await asyncio.wait_for(future, self._config.call_timeout)
        except TimeoutError:
            problem = f"no answer within {self._config.call_timeout:g}s"
            with self._lock:
                self._stale += [self._conn] if self._conn else []
                self._conn, self._problem = None, problem
            raise _unavailable(problem) from None

    def _run(self, op: Callable[[_Connection, _Worker], T], retry: bool) -> T:
        """On a worker thread: run ``op`` on this thread's session; on a lost connection mark
        it, and (``retry``) reconnect and run once more."""
        for attempt in range(2 if retry else 1):
            # The retry reconnects at once: the connection just failed under this very call.
            conn = self._connection(throttle=attempt == 0)
            gate = self._module.gate
            try:
                with gate.shared() if self._config.parallel else gate.exclusive():
                    if conn.closed:
                        raise p11.SessionClosed()  # replaced while we waited for the gate
                    return op(conn, conn.worker())
            except p11.PKCS11Error as exc:
                if not _is_lost(exc):
                    raise CAError("internal", f"PKCS#11: {_describe(exc)}", exc) from exc
                self._lost(conn, exc)
                if attempt == 1 or not retry:
                    if isinstance(exc, _Invisible):  # still after a fresh login: it is gone
                        raise CAError("internal", str(exc), exc) from exc
                    raise _unavailable(_describe(exc), exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _lost(self, conn: _Connection, exc: p11.PKCS11Error) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
                self._stale.append(conn)
                self._problem = _describe(exc)
                log.warning(
                    "pkcs11_lost", token_label=self._config.token_label, error=self._problem
                )

    def _connection(self, *, throttle: bool) -> _Connection:
        with self._lock:
            if self._closed:
                raise CAError("unavailable", "the PKCS#11 key backend is closed")
            if self._fatal is not None:
                raise CAError("internal", self._fatal)
            if self._conn is not None:
                return self._conn
        with self._reconnecting:
            with self._lock:
                if self._conn is not None:  # another worker reconnected meanwhile
                    return self._conn
                since = time.monotonic() - self._last_attempt
                if throttle and since < self._config.retry_interval:
                    raise _unavailable(self._problem)
                self._last_attempt = time.monotonic()
                stale, self._stale = self._stale, []
            conn = self._reconnect(stale)
            with self._lock:
                self._conn, self._problem = conn, ""
            log.info("pkcs11_token_connected", token_label=self._config.token_label)
            return conn

    def _reconnect(self, stale: list[_Connection]) -> _Connection:
        with self._module.gate.exclusive():
            for old in stale:
                old.close()
            try:
                return self._open(fresh=False)
            except p11.PKCS11Error as exc:
                self._check_pin(exc)
            try:  # base §5.4: C_Finalize + C_Initialize, the module rescans its slots
                return self._open(fresh=True)
            except p11.PKCS11Error as exc:
                self._check_pin(exc)
                with self._lock:
                    self._problem = _describe(exc)
                raise _unavailable(self._problem, exc) from exc

    def _open(self, *, fresh: bool) -> _Connection:
        lib = self._module.library(self._config.env, fresh=fresh)
        token = lib.get_token(token_label=self._config.token_label)
        try:
            anchor = token.open(rw=True, user_pin=self._config.pin)
        except p11.UserAlreadyLoggedIn:
            # Another backend of this process holds the login, which all sessions share
            # (base §5.6). python-pkcs11 drops the failed session's handle; C_Finalize frees it.
            anchor = token.open(rw=True)
        try:
            return _Connection(token, anchor)
        except p11.PKCS11Error:
            with suppress(p11.PKCS11Error):
                anchor.close()
            raise

    def _check_pin(self, exc: p11.PKCS11Error) -> None:
        if isinstance(exc, _BAD_PIN):
            with self._lock:
                self._fatal = (
                    f"login to PKCS#11 token {self._config.token_label!r} refused "
                    f"({type(exc).__name__}); not retrying: fix the PIN and restart"
                )
            raise CAError("internal", self._fatal, exc) from exc


def _ref(ckaid: bytes) -> str:
    return ID_REF + ckaid.hex()


def _unavailable(problem: str, cause: BaseException | None = None) -> CAError:
    return CAError("unavailable", f"the CA key token is unavailable: {problem}", cause)


def _is_lost(exc: p11.PKCS11Error) -> bool:
    # A bare PKCS11Error is a code python-pkcs11 has no class for, e.g. CKR_CRYPTOKI_NOT_INITIALIZED
    # after a failed re-initialization, or the module failing to load.
    return isinstance(exc, _LOST) or type(exc) is p11.PKCS11Error


def _describe(exc: p11.PKCS11Error) -> str:  # python-pkcs11 messages never hold PINs
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _parse_ref(key_ref: str) -> tuple[str, bytes]:
    for kind, prefix, length in (("id", ID_REF, None), ("spki", SPKI_REF, 32)):
        if key_ref.startswith(prefix):
            with suppress(ValueError):
                value = bytes.fromhex(key_ref[len(prefix) :])
                if value and length in (None, len(value)):
                    return kind, value
    raise CAError("internal", f"{key_ref!r} is not a PKCS#11 key reference")


def _find_by_spki(session: Any, spki_sha256: bytes) -> tuple[bytes, PublicKeyTypes]:
    for obj in list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})):
        with suppress(CAError):
            public_key = _public_key_of(obj)
            if hashlib.sha256(spki_der(public_key)).digest() == spki_sha256:
                return bytes(obj[Attribute.ID]), public_key
    raise CAError("not_found", f"no key with SPKI SHA-256 {spki_sha256.hex()} on the token")


def _public_key_of(obj: Any) -> PublicKeyTypes:
    """The public key from a token object's attributes (mech §2.3.3 EC, §2.1.2 RSA)."""
    key_type = obj[Attribute.KEY_TYPE]
    if key_type == KeyType.EC:
        curve = _CURVES_BY_PARAMS.get(bytes(obj[Attribute.EC_PARAMS]))
        if curve is None:
            raise CAError("internal", "token key is on an unsupported curve")
        point = _ec_point(bytes(obj[Attribute.EC_POINT]), (curve.key_size + 7) // 8)
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    if key_type == KeyType.RSA:
        modulus = int.from_bytes(obj[Attribute.MODULUS], "big")
        exponent = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    raise CAError("internal", f"token key type {key_type!r} is not supported")


def _ec_point(value: bytes, size: int) -> bytes:
    """CKA_EC_POINT is the DER OCTET STRING of the uncompressed X9.62 point (mech §2.3.3);
    some modules return the bare point, which is accepted too."""
    point_length = 1 + 2 * size  # 65 or 97 octets: X.690 §8.1.3.4 short length form
    if len(value) == point_length:
        return value
    if value[:2] == bytes([0x04, point_length]) and len(value) == 2 + point_length:
        return value[2:]
    raise CAError("internal", "token returned a malformed CKA_EC_POINT")


def _ecdsa_der(raw: bytes, curve: ec.EllipticCurve) -> bytes:
    """PKCS#11 returns r || s, each the size of the order (mech §2.3.1); certificates carry
    DER ECDSA-Sig-Value (RFC 3279 §2.2.3, RFC 5758 §3.2)."""
    size = (curve.key_size + 7) // 8
    if len(raw) != 2 * size:
        raise CAError("internal", f"token returned a {len(raw)}-octet ECDSA signature")
    r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
    return encode_dss_signature(r, s)
