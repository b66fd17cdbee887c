"""Private snapshots of EFS databases under ``/tmp``, refreshed with SQLite's backup API.

Each process owns a folder ``<snapshot_dir>/<owner>/`` and holds an exclusive ``flock`` on
``<snapshot_dir>/<owner>.lock`` for its whole life. A snapshot is built under a temporary
name, checked (``PRAGMA quick_check`` and the position it claims), closed, renamed to a final
name no connection has open, and only then opened (``immutable=1``: it never changes again).
Lambda keeps ``/tmp`` when it restarts an environment after a timeout, so at start-up every
folder whose owner's lock is free is deleted: a leftover file, half-written or not, is never
served. Only snapshots this process built and verified are ever opened. For the same reason
a copy is written with ``journal_mode=OFF`` and ``synchronous=OFF`` and never fsynced: after
a crash it is deleted and rebuilt, never trusted, so durability would buy nothing.

DO copy with the backup API, inside a read transaction on the source, so the copy is one
consistent state and its position is known exactly.
DON'T ``open()``, ``cp`` or ``shutil.copy`` the EFS file: a plain copy of a live database is
torn, and closing any descriptor on it drops this process's SQLite locks.
DON'T rename or unlink a file a connection has open: swap by opening the new snapshot under
its final name, then closing the old connection, then deleting the old file.
DON'T use ``immutable=1`` or ``mmap_size`` on the EFS file: only on the private snapshot.
DO bound a refresh by the request's deadline: the backup runs in steps of
:data:`BACKUP_PAGES_PER_STEP` pages with a deadline check between steps, the lock waits get
the time left as busy timeout, and ``quick_check`` runs under a progress handler. A refresh
that runs out of time is abandoned (its copy deleted): the last good snapshot is served,
marked stale, or, with none yet, ``unavailable`` (retryable). A copy cannot be resumed, so a
database whose refresh takes longer than callers' ``timeout_ms`` needs longer timeouts or
``direct`` mode (``python bench/bench_single_step.py`` times a 41 MB copy: about 50 ms here).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import apsw

from efsqlite.core import ledger
from efsqlite.core.connections import open_readonly_connection
from efsqlite.core.position import Position
from efsqlite.read.connection import (
    PROGRESS_STEPS,
    SQLITE_FAILURES,
    SQLITE_READONLY_ROLLBACK,
    QueryLimits,
    ReadConnection,
    bound_busy_timeout,
    classify,
    status_and_blocker,
)
from efsqlite.read.exceptions import BusyError, ReadError, RecoveringError

T = TypeVar("T")

_LOCK_SUFFIX = ".lock"
#: mmap window for checking a fresh copy in /tmp (SQLite caps it at its compile-time maximum).
_CHECK_MMAP_BYTES = 1 << 30
#: Pages the backup copies between two deadline checks: 1 MiB at 4 KiB pages. On a 41 MB
#: file a step took 1.4 ms and the whole copy 56 ms, against 49 ms in one single step
#: (``python bench/bench_single_step.py``, median of 5).
BACKUP_PAGES_PER_STEP = 256


class SnapshotStore:
    """This process's folder of snapshots, and the cleanup of dead processes' folders."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._counter = itertools.count(1)
        while True:
            owner = f"{os.getpid()}-{os.urandom(4).hex()}"
            lock_path = root / (owner + _LOCK_SUFFIX)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A cleaner may have taken and deleted the lock file between create and lock.
            if _same_file(fd, lock_path):
                break
            os.close(fd)
        self._lock_fd = fd
        self.folder = root / owner
        self.folder.mkdir()
        self.removed_leftovers = self.remove_leftovers()

    def remove_leftovers(self) -> list[str]:
        """Delete folders (and stray files) of owners that no longer hold their lock."""
        removed: list[str] = []
        for lock_path in self.root.glob("*" + _LOCK_SUFFIX):
            owner = lock_path.name[: -len(_LOCK_SUFFIX)]
            if self.root / owner == self.folder:
                continue
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live process's snapshots
            try:
                if _same_file(fd, lock_path):
                    _remove_tree(self.root / owner)
                    lock_path.unlink(missing_ok=True)
                    removed.append(owner)
            finally:
                os.close(fd)
        for path in self.root.iterdir():
            if path.name.endswith(_LOCK_SUFFIX) or path == self.folder:
                continue
            if path.is_dir():
                # An owner makes its folder only after it holds its lock, and only a cleaner
                # holding that lock deletes the lock file: a folder without one is dead.
                if not (self.root / (path.name + _LOCK_SUFFIX)).exists():
                    _remove_tree(path)
                    removed.append(path.name)
            else:
                # Files outside any owner folder (an older layout, a stray copy).
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def new_paths(self, db: str) -> tuple[Path, Path]:
        """A fresh (temporary, final) name pair; names are never reused."""
        n = next(self._counter)
        return self.folder / f"{db}-{n}.tmp", self.folder / f"{db}-{n}.sqlite"

    def close(self) -> None:
        _remove_tree(self.folder)
        (self.root / (self.folder.name + _LOCK_SUFFIX)).unlink(missing_ok=True)
        os.close(self._lock_fd)


def _remove_tree(path: Path) -> None:
    import shutil  # only on clean-up: keeps it off the cold start

    shutil.rmtree(path, ignore_errors=True)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


class SnapshotError(BusyError):
    """A fresh copy failed its check (torn, corrupt, or not the state it was taken from)."""


class SnapshotDeadlineError(BusyError):
    """A refresh ran out of the request's time; it was abandoned and its copy deleted."""


class _OutOfTimeError(Exception):
    """Raised between two backup steps to abort the copy at the deadline."""


def _past(deadline: float) -> bool:
    return time.monotonic() > deadline


@dataclass(slots=True)
class Snapshot:
    """One verified, immutable copy and the state it holds."""

    reader: ReadConnection
    path: Path
    position: Position
    schema_version: int


class DatabaseSnapshot:
    """The snapshot of one database, with a persistent read-only connection to its source.

    The source connection is opened once: each later staleness check is one shared lock and
    a read of the (cached) header page, not an open, a lock and a schema parse.
    """

    def __init__(
        self,
        store: SnapshotStore,
        db: str,
        source_path: Path,
        *,
        busy_timeout_ms: int,
        limits: QueryLimits,
        max_staleness_s: float,
    ) -> None:
        self.store = store
        self.db = db
        self.source_path = source_path
        self.busy_timeout_ms = busy_timeout_ms
        self.limits = limits
        self.max_staleness_s = max_staleness_s
        self.current: Snapshot | None = None
        self.last_check = -float("inf")
        self._source: apsw.Connection | None = None
        self._source_busy_ms = busy_timeout_ms
        self.refreshes = 0
        #: Why the last :meth:`ensure_fresh` served a stale snapshot (None when fresh).
        self.stale_reason: ReadError | None = None

    # -- the source -------------------------------------------------------------------------
    def _source_conn(self) -> apsw.Connection:
        if self._source is None:
            self._source = open_readonly_connection(
                self.source_path, busy_timeout_ms=self.busy_timeout_ms
            )
        return self._source

    def _drop_source(self) -> None:
        if self._source is not None:
            with contextlib.suppress(apsw.Error):
                self._source.close()
            self._source = None
            self._source_busy_ms = self.busy_timeout_ms

    def _bound_source_busy(self, deadline: float) -> apsw.Connection:
        """The source connection, its lock waits kept inside ``deadline``."""
        conn = self._source_conn()
        self._source_busy_ms = bound_busy_timeout(
            conn, deadline, self.busy_timeout_ms, self._source_busy_ms
        )
        return conn

    def source_state(self, deadline: float = math.inf) -> tuple[Position, int]:
        """(settled position, schema version) of the EFS file now. Raises :class:`ReadError`."""
        try:
            return ledger.read_state(self._bound_source_busy(deadline))
        except SQLITE_FAILURES as exc:
            self._drop_source_unless_recovering(exc)
            raise _classify_source(exc) from None

    def _drop_source_unless_recovering(self, exc: Exception) -> None:
        if getattr(exc, "extendedresult", None) != SQLITE_READONLY_ROLLBACK:
            self._drop_source()

    def command_status(
        self, command_id: str
    ) -> tuple[ledger.CommandStatus, Position, ledger.CommandStatus | None]:
        """The command's outcome, the position and, for a command not seen yet, the command
        blocking the database's group (if one is), read from the source (fresh)."""
        return self.read_source(lambda conn: status_and_blocker(conn, command_id))

    def summary(self) -> ledger.LedgerSummary:
        """The ledger's summary, read from the source (fresh): failures move no position."""
        return self.read_source(ledger.summary)

    def read_source(self, read: Callable[[apsw.Connection], T]) -> T:
        """``read(conn)`` on the source in one read transaction; typed errors as queries get.

        DON'T answer ledger questions from the copy: it refreshes only when the position or
        the schema version moves, and a failure moves neither.
        """
        conn = self._bound_source_busy(math.inf)  # the configured busy timeout again
        try:
            conn.execute("BEGIN")
            try:
                return read(conn)
            finally:
                conn.execute("COMMIT")
        except SQLITE_FAILURES as exc:
            self._drop_source_unless_recovering(exc)
            raise _classify_source(exc) from None

    # -- freshness --------------------------------------------------------------------------
    def ensure_fresh(
        self, min_position: Position | None = None, deadline: float = math.inf
    ) -> bool:
        """Refresh if the source moved; returns True when serving a stale snapshot.

        The source is checked at most every ``max_staleness_s``, and always when
        ``min_position`` is ahead of the snapshot. When the source cannot be read (a hot
        journal, a lock held too long) or the copy cannot be made in time, the last good
        snapshot is served as stale (:attr:`stale_reason` says why); without one, the typed
        error propagates. Nothing here waits past ``deadline``; when a stale snapshot could
        answer, the refresh gets only half the time left, so the query keeps the other half.
        """
        now = time.monotonic()
        current = self.current
        self.stale_reason = None
        if (
            current is not None
            and now - self.last_check < self.max_staleness_s
            and (min_position is None or current.position >= min_position)
        ):
            return False
        try:
            state = self.source_state(deadline)
            if current is None or state != (current.position, current.schema_version):
                can_serve_stale = current is not None and (
                    min_position is None or current.position >= min_position
                )
                budget = deadline
                if can_serve_stale and deadline != math.inf:
                    budget = now + max(deadline - now, 0.0) / 2
                self.refresh(budget)
        except (RecoveringError, BusyError) as exc:
            # Hot journal, lock held past the busy timeout, a copy that failed its check or
            # ran out of time: the last good snapshot is still a consistent state, so serve
            # it marked stale.
            if current is None:
                raise
            self.stale_reason = exc
            return True
        self.last_check = now
        return False

    def refresh(self, deadline: float = math.inf) -> Snapshot:
        """Copy the source into a new verified snapshot and swap it in, by ``deadline``.

        Raises :class:`SnapshotDeadlineError` (retryable) when the time runs out first.
        """
        tmp_path, final_path = self.store.new_paths(self.db)
        source = self._bound_source_busy(deadline)
        target = apsw.Connection(str(tmp_path))
        try:
            target.execute("PRAGMA journal_mode=OFF")
            target.execute("PRAGMA synchronous=OFF")
            source.execute("BEGIN")
            try:
                # The read transaction pins one state: the copy and its position agree.
                expected = ledger.read_state(source)
                _copy(source, target, deadline)
            finally:
                source.execute("COMMIT")
            # Memory-mapped reads make the check ~35% faster. Only on the private copy: a
            # mapped file on NFS turns an I/O error into SIGBUS.
            target.execute(f"PRAGMA mmap_size={_CHECK_MMAP_BYTES}")
            target.set_progress_handler(lambda: _past(deadline), PROGRESS_STEPS)
            rows = target.execute("PRAGMA quick_check").fetchall()
            target.set_progress_handler(None)
            check = rows[0][0] if rows else None
            got = ledger.read_state(target)
            if check != "ok" or got != expected:
                raise SnapshotError(
                    f"snapshot of {self.db!r} failed its check ({check!r}, {got} != {expected})"
                )
        except (_OutOfTimeError, *SQLITE_FAILURES) as exc:
            target.close()
            tmp_path.unlink(missing_ok=True)
            if isinstance(exc, _OutOfTimeError) or _past(deadline):
                raise SnapshotDeadlineError(
                    f"the snapshot copy of {self.db!r} did not finish within the request's "
                    "deadline; retry, with a longer timeout_ms for a database this big"
                ) from None
            self._drop_source_unless_recovering(exc)
            raise _classify_source(exc) from None
        except BaseException:
            target.close()
            tmp_path.unlink(missing_ok=True)
            raise
        target.close()
        os.replace(tmp_path, final_path)  # no connection has either name open
        try:
            reader = ReadConnection.open(final_path, immutable=True, limits=self.limits)
        except SQLITE_FAILURES as exc:
            final_path.unlink(missing_ok=True)
            raise _classify_source(exc) from None
        old, self.current = self.current, Snapshot(reader, final_path, *expected)
        self.refreshes += 1
        if old is not None:
            old.reader.close()
            old.path.unlink(missing_ok=True)
        return self.current

    def close(self) -> None:
        self._drop_source()
        if self.current is not None:
            self.current.reader.close()
            self.current.path.unlink(missing_ok=True)
            self.current = None


def _classify_source(exc: Exception) -> ReadError:
    """``classify`` for our own work on the source or a copy: running out of SQLite's heap
    there is the environment's trouble, not the caller's query, so it is retryable."""
    if isinstance(exc, MemoryError | apsw.NoMemError):
        return BusyError(
            "the reader ran out of SQLite heap (EFSQLITE_MAX_HEAP_MB) copying the database"
        )
    return classify(exc)


def _copy(source: apsw.Connection, target: apsw.Connection, deadline: float) -> None:
    """Back ``source`` up into ``target`` in steps, checking ``deadline`` between them."""
    backup = target.backup("main", source, "main")
    try:
        while not backup.done:
            try:
                backup.step(BACKUP_PAGES_PER_STEP)
            except (apsw.BusyError, apsw.LockedError):
                time.sleep(0.005)
            if not backup.done and _past(deadline):
                raise _OutOfTimeError
    finally:
        backup.finish()
