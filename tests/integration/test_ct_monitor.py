"""The CT monitor end to end: watch list, state, matches, alerts, verification, resume.

Storage tests run on SQLite and PostgreSQL (``db_url``). The monitor tests tail the suite's test
log (tests/support/ctlog.py: RFC 6962 API and static tiles from one Merkle tree, with fault
switches) over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.serials import serial_to_hex
from certyard import cli, ct_commands
from ct_monitor import metrics as ct_metrics
from ct_monitor.clients import open_client
from ct_monitor.config import CTSettings
from ct_monitor.loglist import load_log_list
from ct_monitor.merkle import CompactRange, leaf_hash
from ct_monitor.monitor import Monitor
from ct_monitor.state import CTStore, LogState, MatchRecord
from ct_monitor.tbs import tbs_sha256_of_certificate
from ct_monitor.watchlist import WatchListError
from notify.events import Notification
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, Issuer
from tests.support.ctlog import CTTestLog
from tests.support.ctlog_certs import CertPair, make_cert
from tests.support.server import certyard_command

NOW = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    await migrate(engine)
    yield session_factory(engine)
    await engine.dispose()


def record(
    tbs: str, index: int, *, final: bool, finding: str | None = "ct_unknown_issuance"
) -> MatchRecord:
    return MatchRecord(
        log_url="http://127.0.0.1:1/log/",
        entry_index=index,
        entry_type="x509" if final else "precert",
        names=["www.example.com", "*.example.com"],
        issuer="CN=Other CA",
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=90),
        tbs_sha256=tbs,
        cert_sha256=("c" * 64) if final else None,
        der=b"final" if final else b"precert",
        finding=finding,
        serial="01",
        notes=[],
    )


async def test_watch_list_is_normalised_and_deduplicated(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = CTStore(sessions, clock=lambda: NOW)
    assert await store.watch_add("Bücher.Example.") == ("xn--bcher-kva.example", True)
    assert await store.watch_add("xn--bcher-kva.example") == ("xn--bcher-kva.example", False)
    assert await store.watch_add(".example.com") == (".example.com", True)
    with pytest.raises(WatchListError):
        await store.watch_add("*.example.com")
    assert [i.pattern for i in await store.watch_items()] == [
        ".example.com",
        "xn--bcher-kva.example",
    ]
    assert await store.watch_remove(".EXAMPLE.com") == (".example.com", True)
    assert await store.watch_remove(".example.com") == (".example.com", False)


async def test_batch_commit_is_atomic_and_one_row_per_issuance(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = CTStore(sessions, clock=lambda: NOW)
    state = LogState("http://127.0.0.1:1/log/", "rfc6962")
    state.compact_range.extend(leaf_hash(bytes([i])) for i in range(5))
    state.tree_size_seen = 9
    # precert and final certificate of one issuance in one batch: one row, one alert id
    ids = await store.commit_batch(
        state, [record("a" * 64, 3, final=False), record("a" * 64, 4, final=True)]
    )
    assert len(ids) == 1
    [row] = await store.matches()
    assert (row.entry_type, row.entry_index, row.cert_sha256, row.der) == (
        "precert",
        3,
        "c" * 64,
        b"final",
    )
    # a later sighting (another log) adds nothing and alerts nothing
    assert await store.commit_batch(state, [record("a" * 64, 7, final=True)]) == []
    assert len(await store.matches()) == 1
    # quiet matches are stored without an alert
    assert await store.commit_batch(state, [record("b" * 64, 8, final=True, finding=None)]) == []
    assert len(await store.matches()) == 2
    loaded = await store.load_state(state.log_url, "rfc6962")
    assert loaded.position == 5 and loaded.compact_range.root() == state.compact_range.root()
    assert loaded.lag == 9
    assert [n.name for n in await store.names_seen()] == ["www.example.com"]  # no wildcard


async def test_failed_batch_leaves_nothing_behind(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = CTStore(sessions, clock=lambda: NOW)
    state = LogState("http://127.0.0.1:1/log/", "rfc6962")
    await store.save_state(state)
    state.compact_range = CompactRange()
    state.compact_range.extend(leaf_hash(b"x") for _ in range(3))
    bad = record("d" * 64, 1, final=True)
    bad = MatchRecord(**{**bad.__dict__, "entry_type": "x" * 100})  # too long for PostgreSQL
    good = record("e" * 64, 2, final=True)
    try:
        await store.commit_batch(state, [good, bad])
    except Exception:  # SQLite accepts the long value; PostgreSQL refuses it
        pass
    rows = await store.matches()
    loaded = await store.load_state(state.log_url, "rfc6962")
    if not rows:  # refused: neither the matches nor the new position were stored
        assert loaded.position == 0
    else:
        assert loaded.position == 3 and len(rows) == 2


# ------------------------------------------------------------------ the monitor on the test log


class RecordingSink:
    """A NotificationSink that keeps what it was given (the notifier itself is tested in
    notify's suite; here we assert which alerts the monitor raises)."""

    def __init__(self) -> None:
        self.events: list[Notification] = []

    async def notify(self, event: Notification) -> None:
        self.events.append(event)

    def of_kind(self, kind: str) -> list[Notification]:
        return [e for e in self.events if e.kind == kind]


WATCH = ["shop.example.net", ".example.org", "mail.example.com", ".Bücher.example"]


@dataclass
class Scenario:
    log: CTTestLog
    expected: dict[str, int]  # a name of each watched issuance -> its first index
    pair: CertPair


def populate(log: CTTestLog) -> Scenario:
    """Noise around certificates for each kind of match, a precert + final pair, and names
    that must not match."""
    expected: dict[str, int] = {}
    log.add_synthetic(300)
    expected["shop.example.net"] = log.add_cert(["shop.example.net"])  # exact
    expected["a.b.example.org"] = log.add_cert(["a.b.example.org"])  # subtree
    expected["*.example.com"] = log.add_cert(["*.example.com", "other.test"])  # wildcard
    expected["www.xn--bcher-kva.example"] = log.add_cert(["www.xn--bcher-kva.example"])  # IDNA
    for name in (
        "example.net.evil.test",
        "www.shop.example.net",
        "notexample.org",
        "a.example.com",
    ):
        log.add_cert([name])
    pre, _final, pair = log.add_pair(["pair.example.org"])
    expected["pair.example.org"] = pre
    log.add_synthetic(333)  # not a multiple of the tile width: partial tiles at the end
    log.publish()
    return Scenario(log, expected, pair)


@pytest.fixture
async def ctlog() -> AsyncIterator[CTTestLog]:
    async with CTTestLog() as log:
        yield log


def settings_for(**overrides: object) -> CTSettings:
    base: dict[str, object] = {"once_max_errors": 3, "max_backoff_seconds": 2.0}
    base.update(overrides)
    return CTSettings(**base)  # type: ignore[arg-type]


async def run_monitor(
    store: CTStore,
    log: CTTestLog,
    kinds: tuple[str, ...],
    sink: RecordingSink,
    settings: CTSettings | None = None,
    **desc: object,
) -> dict[str, str | None]:
    cfg = settings or settings_for()
    desc = {"batch_size": 64, "parallel_downloads": 3, **desc}
    clients = [open_client(log.description(kind, **desc), cfg) for kind in kinds]
    try:
        monitor = Monitor(store, clients, cfg, sink=sink)
        return await monitor.run(once=True)
    finally:
        for client in clients:
            await client.aclose()


async def watching(sessions: async_sessionmaker[AsyncSession]) -> CTStore:
    store = CTStore(sessions)
    for name in WATCH:
        await store.watch_add(name)
    return store


async def test_matches_exact_subtree_wildcard_idna_once_per_issuance(
    sessions: async_sessionmaker[AsyncSession], ctlog: CTTestLog
) -> None:
    """Both kinds of the same log (the same certificates twice): one row per issuance."""
    await check_matches(sessions, ctlog, ("rfc6962", "tiled"))


@pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
async def test_each_log_kind_alone(tmp_path: Path, ctlog: CTTestLog, kind: str) -> None:
    await check_matches(await sqlite_sessions(tmp_path), ctlog, (kind,))


async def check_matches(
    sessions: async_sessionmaker[AsyncSession], ctlog: CTTestLog, kinds: tuple[str, ...]
) -> None:
    scenario = populate(ctlog)
    store = await watching(sessions)
    sink = RecordingSink()
    results = await run_monitor(store, ctlog, kinds, sink)
    assert set(results.values()) == {None}
    rows = await store.matches()
    by_name = {row.names[0]: row for row in rows}
    assert sorted(by_name) == sorted(scenario.expected)
    for name, index in scenario.expected.items():
        assert by_name[name].entry_index == index
        assert by_name[name].finding == "ct_unknown_issuance"
    # the precertificate and the final certificate: one row (with the final DER), one alert
    pair_row = by_name["pair.example.org"]
    assert pair_row.entry_type == "precert"
    assert pair_row.der == scenario.pair.final_der
    assert pair_row.tbs_sha256 == tbs_sha256_of_certificate(scenario.pair.final_der)
    alerts = sink.of_kind("ct_unknown_issuance")
    assert len(alerts) == len(scenario.expected)
    assert len({a.idempotency_key for a in alerts}) == len(alerts)
    assert f"ct:{pair_row.tbs_sha256}" in {a.idempotency_key for a in alerts}
    # every log verified up to the signed tree size
    for state in await store.all_states():
        assert state.verified_size == state.position == ctlog.size
        assert state.lag == 0 and state.last_error is None
    names = {n.name for n in await store.names_seen()}
    assert {"shop.example.net", "pair.example.org", "other.test"} <= names
    assert "*.example.com" not in names


async def test_known_and_authorized_issuers_are_recorded_quietly(
    tmp_path: Path, ctlog: CTTestLog
) -> None:
    sessions = await sqlite_sessions(tmp_path)
    populate(ctlog)
    store = await watching(sessions)
    sink = RecordingSink()
    # the test log's issuer is authorized by SPKI hash; its certificates give no finding
    cfg = settings_for(authorized_issuers=[f"sha256:{ctlog.issuer.key_hash.hex()}"])
    await run_monitor(store, ctlog, ("rfc6962",), sink, cfg)
    assert {row.finding for row in await store.matches()} == {None}
    assert sink.events == []


async def test_authorized_by_issuer_name(tmp_path: Path, ctlog: CTTestLog) -> None:
    sessions = await sqlite_sessions(tmp_path)
    populate(ctlog)
    store = await watching(sessions)
    sink = RecordingSink()
    name = ctlog.issuer.cert.subject.rfc4514_string().replace("CN=", "cn = ")
    await run_monitor(store, ctlog, ("tiled",), sink, settings_for(authorized_issuers=[name]))
    assert {row.finding for row in await store.matches()} == {None}
    assert sink.events == []


async def sqlite_sessions(tmp_path: Path) -> async_sessionmaker[AsyncSession]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/ct.db")
    await migrate(engine)
    return session_factory(engine)


@pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
async def test_wrong_root_is_detected_and_alerted(
    tmp_path: Path, ctlog: CTTestLog, kind: str
) -> None:
    sessions = await sqlite_sessions(tmp_path)
    populate(ctlog)
    store = await watching(sessions)
    sink = RecordingSink()
    ctlog.wrong_root = True
    results = await run_monitor(store, ctlog, (kind,), sink)
    [error] = results.values()
    assert error is not None and "signed tree head says" in error
    [alert] = sink.of_kind("ct_log_misbehaviour")
    url = ctlog.description(kind).url
    assert alert.severity == "high"
    assert url in alert.subject and f"0 -> {ctlog.size}" in alert.subject
    [state] = await store.all_states()
    assert state.verified_size == 0 and state.position == 0  # nothing verified, rewound
    assert state.last_error is not None and "misbehaviour" in state.last_error


@pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
async def test_split_view_is_detected(tmp_path: Path, ctlog: CTTestLog, kind: str) -> None:
    sessions = await sqlite_sessions(tmp_path)
    populate(ctlog)
    store = await watching(sessions)
    sink = RecordingSink()
    assert set((await run_monitor(store, ctlog, (kind,), sink)).values()) == {None}
    verified = ctlog.size
    # The log now shows this monitor a fork of its tree from before what it verified.
    ctlog.fork(at=verified - 100, extra=300)
    ctlog.split_view_for_user_agent("certyard-ct")
    results = await run_monitor(store, ctlog, (kind,), sink)
    [error] = results.values()
    assert error is not None and "not consistent" in error
    [alert] = sink.of_kind("ct_log_misbehaviour")
    assert f"{verified} -> {verified + 200}" in alert.subject
    [state] = await store.all_states()
    assert state.verified_size == verified  # the verified tree head did not move
    assert "misbehaviour" in (state.last_error or "")


async def test_short_get_entries_answers(tmp_path: Path, ctlog: CTTestLog) -> None:
    sessions = await sqlite_sessions(tmp_path)
    scenario = populate(ctlog)
    store = await watching(sessions)
    ctlog.max_get_entries = 7  # the log caps every answer below the batch size
    results = await run_monitor(store, ctlog, ("rfc6962",), RecordingSink(), batch_size=50)
    assert set(results.values()) == {None}
    assert len(await store.matches()) == len(scenario.expected)
    [state] = await store.all_states()
    assert state.verified_size == ctlog.size


@pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
async def test_rate_limit_retry_after_is_honoured(
    tmp_path: Path, ctlog: CTTestLog, kind: str
) -> None:
    sessions = await sqlite_sessions(tmp_path)
    scenario = populate(ctlog)
    store = await watching(sessions)
    ctlog.rate_limit(1, retry_after=1)
    # max_retry_wait 0: the client hands every 429 to the monitor, which waits it out.
    cfg = settings_for(max_retry_wait_seconds=0.0, once_max_errors=5)
    started = time.monotonic()
    results = await run_monitor(store, ctlog, (kind,), RecordingSink(), cfg)
    assert set(results.values()) == {None}
    assert ctlog.rate_limited_served == 1
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited out
    assert len(await store.matches()) == len(scenario.expected)


async def test_resume_after_a_transient_error_misses_nothing(
    tmp_path: Path, ctlog: CTTestLog
) -> None:
    """A log that keeps refusing makes --once give up; the next run resumes from the
    committed position and finds every issuance exactly once."""
    sessions = await sqlite_sessions(tmp_path)
    scenario = populate(ctlog)
    store = await watching(sessions)
    ctlog.rate_limit(1000, retry_after=0)
    cfg = settings_for(max_retry_wait_seconds=0.0, once_max_errors=1)
    [error] = (await run_monitor(store, ctlog, ("rfc6962",), RecordingSink(), cfg)).values()
    assert error is not None
    ctlog.rate_limit(0)
    sink = RecordingSink()
    assert set((await run_monitor(store, ctlog, ("rfc6962",), sink)).values()) == {None}
    assert len(await store.matches()) == len(scenario.expected)
    assert len(sink.of_kind("ct_unknown_issuance")) == len(scenario.expected)


# ------------------------------------------------------------------ kill -9 and restart


def _positions(db: Path) -> dict[str, tuple[int, int]]:
    """{log_url: (position, verified_size)} read straight from the monitor's SQLite file."""
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
            rows = c.execute("SELECT log_url, position, verified_size FROM ct_log_state")
            return {url: (pos, ver) for url, pos, ver in rows}
    except sqlite3.OperationalError:  # not migrated yet
        return {}


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *certyard_command(), "ct", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.usefixtures("cli_logging")
async def test_kill_9_mid_run_then_restart_reports_every_certificate_once(
    tmp_path: Path, ctlog: CTTestLog, capsys: pytest.CaptureFixture[str]
) -> None:
    expected: dict[str, int] = {}
    for i in range(12):
        ctlog.add_synthetic(120)
        expected[f"host{i}.example.org"] = ctlog.add_cert([f"host{i}.example.org"])
    pre, _final, _pair = ctlog.add_pair(["pair.example.org"])
    expected["pair.example.org"] = pre
    ctlog.add_synthetic(50)
    ctlog.publish()
    log_list = ctlog.write_log_list(tmp_path / "logs.json")
    env = {
        **os.environ,
        "CERTYARD__SERVER__DATA_DIR": str(tmp_path),
        "CERTYARD__CT__LOG_LIST": str(log_list),
        "CERTYARD__CT__DEFAULT_BATCH_SIZE": "16",
        "CERTYARD__CT__DEFAULT_PARALLEL_DOWNLOADS": "2",
        "CERTYARD__LOG__LEVEL": "warning",
    }
    env.pop("CERTYARD__DATABASE__URL", None)
    db = tmp_path / "certyard.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    await migrate(engine)
    store = CTStore(session_factory(engine))
    await store.watch_add(".example.org")

    # First run, throttled so that it is surely in the middle when killed.
    slow = {**env, "CERTYARD__CT__DEFAULT_REQUESTS_PER_SECOND": "40"}
    proc = await asyncio.create_subprocess_exec(
        *certyard_command(), "ct", "run", "--once", env=slow,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            positions = _positions(db)
            if any(pos >= 400 for pos, _ in positions.values()):
                break
            assert proc.returncode is None, "ct run ended before it could be killed"
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"ct run made no progress: {_positions(db)}")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    killed_at = _positions(db)
    assert any(pos < ctlog.size for pos, _ in killed_at.values()), killed_at

    rc, _, err = await _cli(env, "run", "--once")
    assert rc == 0, err
    # `ct matches --json` in-process (in a thread: cli.main runs its own event loop).
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            if key.startswith("CERTYARD__"):
                mp.setenv(key, value)
        assert await asyncio.to_thread(cli.main, ["ct", "matches", "--json"]) == 0
        out = capsys.readouterr().out
        mp.setenv("COLUMNS", "250")  # rich: wide enough for a URL on one line
        assert await asyncio.to_thread(cli.main, ["ct", "status"]) == 0
        table = capsys.readouterr().out
    for url in (ctlog.rfc6962_url, ctlog.monitoring_url):
        [row] = [line for line in table.splitlines() if url in line]
        cells = [c.strip() for c in row.split("│")]
        assert cells[3:7] == [str(ctlog.size)] * 3 + ["0"]  # tree size, position, verified, lag
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(m["names"][0] for m in lines) == sorted(expected)  # each exactly once
    for m in lines:
        assert m["index"] == expected[m["names"][0]]
        assert m["finding"] == "ct_unknown_issuance"
        assert set(m) == {
            "log_url", "index", "entry_type", "names", "issuer", "not_after", "tbs_sha256",
            "finding",
        }  # fmt: skip
    states = await store.all_states()
    await engine.dispose()
    assert {st.log_url for st in states} == {ctlog.rfc6962_url, ctlog.monitoring_url}
    for st in states:
        assert st.verified_size == st.position == st.tree_size_seen == ctlog.size
        assert st.lag == 0 and st.last_error is None


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """cli.main() configures structlog and the logging root for the process, writing to the
    sys.stderr of that moment (pytest's capture, closed after the test): put both back."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


@pytest.mark.usefixtures("cli_logging")
def test_cli_watch_status_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ct commands in-process (the subprocess runs above cover `ct run` and
    `ct matches --json`)."""
    monkeypatch.setenv("CERTYARD__SERVER__DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CERTYARD__DATABASE__URL", raising=False)
    assert cli.main(["ct", "watch", "add", "Example.com", ".bücher.example"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "added: example.com", "added: .xn--bcher-kva.example",
    ]  # fmt: skip
    # one bad name: exit 2, one line, nothing stored
    assert cli.main(["ct", "watch", "add", "new.example.com", "bad..example.com"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "certyard: ct watch: 'bad..example.com': empty label"
    assert cli.main(["ct", "watch", "list"]) == 0
    assert capsys.readouterr().out.split() == [".xn--bcher-kva.example", "example.com"]
    assert cli.main(["ct", "watch", "remove", "EXAMPLE.com"]) == 0
    assert capsys.readouterr().out.strip() == "removed: example.com"
    assert cli.main(["ct", "status"]) == 0
    assert "no log state yet" in capsys.readouterr().out
    assert cli.main(["ct", "matches", "--json"]) == 0
    assert capsys.readouterr().out == ""
    # a log list that does not exist: exit 2 with one line
    assert cli.main(["ct", "run", "--once", "--logs", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("certyard: log list") and len(err.splitlines()) == 1


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 20
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_long_running_picks_up_new_logs_and_growth_and_stops(
    tmp_path: Path, ctlog: CTTestLog
) -> None:
    """`ct run` without --once: polls, re-reads the log list, stops on request."""
    sessions = await sqlite_sessions(tmp_path)
    populate(ctlog)
    store = await watching(sessions)
    path = ctlog.write_log_list(tmp_path / "logs.json", kinds=("rfc6962",))
    # model_copy skips validation: a refresh interval far below the allowed minimum, for speed
    cfg = settings_for(poll_seconds=0.1).model_copy(update={"log_list_refresh_seconds": 0.1})
    loglist = await load_log_list(cfg, str(path))
    stop = asyncio.Event()
    sink = RecordingSink()
    task = asyncio.create_task(ct_commands._run_forever(store, loglist, cfg, sink, stop, str(path)))

    async def verified(url: str, size: int) -> bool:
        return any(s.log_url == url and s.verified_size == size for s in await store.all_states())

    try:
        await wait_for(lambda: verified(ctlog.rfc6962_url, ctlog.size), "the RFC 6962 log")
        ctlog.add_cert(["late.example.org"])  # the log grows: picked up by polling
        ctlog.publish()
        await wait_for(lambda: verified(ctlog.rfc6962_url, ctlog.size), "the new entry")
        ctlog.write_log_list(path, kinds=("rfc6962", "tiled"))  # a new log in the list
        await wait_for(lambda: verified(ctlog.monitoring_url, ctlog.size), "the tiled log")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    names = sorted(row.names[0] for row in await store.matches())
    assert "late.example.org" in names
    assert len(sink.of_kind("ct_unknown_issuance")) == len(names)  # once each, both logs


async def test_unparsable_certificate_is_reported_fail_safe(
    tmp_path: Path, ctlog: CTTestLog
) -> None:
    sessions = await sqlite_sessions(tmp_path)
    ctlog.add_synthetic(10)
    garbage = b"\x30\x03\x02\x01\x01"  # a DER SEQUENCE, but no certificate
    index = ctlog.add_x509(garbage)
    ctlog.publish()
    store = await watching(sessions)
    sink = RecordingSink()
    assert set((await run_monitor(store, ctlog, ("rfc6962",), sink)).values()) == {None}
    [row] = await store.matches()
    assert row.entry_index == index and row.names == ["<unparsable>"]
    assert row.finding == "ct_unknown_issuance"
    assert row.notes and any("fail-safe" in n for n in row.notes)
    [alert] = sink.events
    assert alert.details["notes"] == row.notes


async def test_lag_and_errors_in_metrics(tmp_path: Path, ctlog: CTTestLog) -> None:
    sessions = await sqlite_sessions(tmp_path)
    populate(ctlog)
    store = await watching(sessions)
    ctlog.wrong_root = True
    cfg = settings_for()
    client = open_client(ctlog.description("rfc6962"), cfg)
    monitor = Monitor(store, [client], cfg)
    registry = CollectorRegistry()
    ct_metrics.register(registry, monitor)
    try:
        await monitor.run(once=True)
    finally:
        await client.aclose()
    assert monitor.lag(ctlog.rfc6962_url) == ctlog.size
    text = generate_latest(registry).decode()
    assert f'certyard_ct_log_lag_entries{{log="{ctlog.rfc6962_url}"}} {float(ctlog.size)}' in text
    assert f'certyard_ct_log_error{{log="{ctlog.rfc6962_url}"}} 1.0' in text


async def test_certificates_issued_by_certyard_are_recorded_quietly(
    tmp_path: Path, ctlog: CTTestLog
) -> None:
    """By the TBS hash certyard recorded when signing, or by serial + issuer name."""
    sessions = await sqlite_sessions(tmp_path)
    scenario = populate(ctlog)
    by_tbs = make_cert(["ours.example.org"], ctlog.issuer, serial=0xC0FFEE)
    by_serial = make_cert(["resigned.example.org"], ctlog.issuer, serial=0xBEEF)
    ctlog.add_x509(by_tbs)
    ctlog.add_x509(by_serial)
    ctlog.publish()
    pem = ctlog.issuer.cert.public_bytes(serialization.Encoding.PEM).decode()
    async with sessions.begin() as session:
        session.add(
            Issuer(
                id="iss1", role="intermediate", cert_pem=pem, key_backend="software",
                key_ref="k", created_at=NOW,
            )
        )  # fmt: skip
        await session.flush()
        for cert_id, der, tbs in (
            ("c1", by_tbs, tbs_sha256_of_certificate(by_tbs)),
            ("c2", by_serial, "0" * 64),  # e.g. the same serial re-signed: TBS differs
        ):
            cert = x509.load_der_x509_certificate(der)
            session.add(
                Certificate(
                    id=cert_id, serial=serial_to_hex(cert.serial_number),
                    issuer_id="iss1", der=der, names=[], profile="tls-server", not_before=NOW,
                    not_after=NOW, spki_sha256="0" * 64, created_at=NOW, state="issued",
                    tbs_sha256=tbs, requester="cli",
                )
            )  # fmt: skip
    store = await watching(sessions)
    sink = RecordingSink()
    await run_monitor(store, ctlog, ("rfc6962",), sink)
    findings = {row.names[0]: row.finding for row in await store.matches()}
    assert findings["ours.example.org"] is None
    assert findings["resigned.example.org"] is None
    assert findings["a.b.example.org"] == "ct_unknown_issuance"
    assert len(sink.events) == len(scenario.expected)  # the two of ours: no alert
