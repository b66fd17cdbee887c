"""Private snapshots of EFS databases under ``/tmp``, refreshed by copying only changed pages.

Each process owns a folder ``<snapshot_dir>/<owner>/`` and holds an exclusive ``flock`` on
``<snapshot_dir>/<owner>.lock`` for its whole life. Lambda keeps ``/tmp`` when it restarts
an environment after a timeout, so at start-up every folder whose owner's lock is free is
deleted: a leftover file, half-written, half-patched or whole, is never served. Only copies
this process made and checked are ever opened, ``immutable=1`` (they never change again).
Copies are written with plain ``pwrite`` and never fsynced: after a crash they are deleted,
never trusted, so durability would buy nothing.

A refresh runs inside one read transaction on the source (the shared lock pins one state)
and reads pages through the file SQLite itself opened (:class:`~efsqlite.core.pagevfs.RawFile`):

- **Patch** (the usual case). The writer logs the pages each commit wrote
  (:mod:`efsqlite.core.pagelog`). The previous copy, closed and kept as the *spare*
  (``<db>-N.spare``), is renamed to a temporary name, given the pages changed since it was
  current (read from the source, one read per run of adjacent pages, each checked against
  the CRC-32 the log recorded, or copied from the current copy on local disk), cut or
  grown to the source's size, checked (header and position), renamed and swapped in. The
  old current copy becomes the next spare. EFS reads are proportional to what changed.
- **Full copy** (the first refresh, patching off, or any doubt: a gap in the log, another
  log segment, a page that fails its CRC). Every page, one read per
  :data:`COPY_CHUNK_BYTES`, into a new file checked with ``PRAGMA quick_check``; with
  patching on, each chunk also goes to a twin that becomes the spare.

DO read the source's pages only inside the read transaction, through the connection's own
file handle: the pages, the page log and the position are then one consistent state.
DON'T ``open()``, ``cp`` or ``shutil.copy`` the EFS file: a plain copy of a live database is
torn, and closing any descriptor on it drops this process's SQLite locks.
DON'T use SQLite's backup API for the copy: it reads one page per round trip (262,144 for
1 GB) and rewrites the copy's change counter and schema cookie, so a copy would no longer
be the source byte for byte and could not be patched.
DON'T rename or unlink a file a connection has open: swap by opening the new snapshot under
its final name, then closing the old connection, and only then rename it to the spare.
DON'T use ``immutable=1`` or ``mmap_size`` on the EFS file: only on the private snapshot.
DO bound a refresh by the request's deadline: the reads are checked against the deadline
between chunks and runs, the lock waits get the time left as busy timeout, and
``quick_check`` runs under a progress handler. A refresh that runs out of time is abandoned
(its copy, and a half-patched spare, deleted): the last good snapshot is served, marked
stale, or, with none yet, ``unavailable`` (retryable).
DO budget ``/tmp``: with patching the current copy and the spare take twice the database's
size, and a full copy briefly three times (``EFSQLITE_SNAPSHOT_PATCH=false`` keeps one copy).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import apsw

from efsqlite.core import ledger, pagelog
from efsqlite.core.connections import open_source_connection, readonly_uri
from efsqlite.core.pagelog import ChainError
from efsqlite.core.pagevfs import RawFile, header_page_size, header_u32
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
#: A previous snapshot, closed, kept for the next refresh to patch.
_SPARE_SUFFIX = ".spare"
#: mmap window for checking a fresh copy in /tmp (SQLite caps it at its compile-time maximum).
_CHECK_MMAP_BYTES = 1 << 30
#: Bytes one read of the source copies, with a deadline check between two reads: on EFS
#: every read is a round trip, so a full copy makes one per MiB, not one per page.
COPY_CHUNK_BYTES = 1 << 20
#: Changed pages this close together are read in one go, the pages between included: EFS
#: meters at least 32 KiB per read, so the bytes between cost nothing and a round trip does.
COALESCE_BYTES = 32 * 1024
_MAX_PAGE_SIZE = 65536


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


@dataclass(frozen=True, slots=True)
class Header:
    """What the source's database header says, read raw under the read transaction."""

    counter: int
    page_size: int
    page_count: int
    page1: bytes

    @classmethod
    def read(cls, raw: RawFile) -> Header:
        # One read covers page 1 at any page size: EFS meters at least 32 KiB per read
        # anyway, and a second round trip would cost more than the bytes.
        head = raw.read(min(_MAX_PAGE_SIZE, raw.size()), 0)
        page_size = header_page_size(head)
        page1 = head[:page_size]
        counter = header_u32(page1, 24)
        page_count = header_u32(page1, 28)
        if header_u32(page1, 92) != counter or page_count == 0:
            # The in-header size is stale (an old SQLite wrote the file): trust the file.
            page_count = raw.size() // page_size
        return cls(counter, page_size, page_count, page1)


@dataclass(frozen=True, slots=True)
class Image:
    """The source state a snapshot file holds byte for byte, and where the log stood."""

    counter: int
    page_size: int
    page_count: int
    #: The page log segment the state belongs to; None when the log does not reach it.
    segment: bytes | None
    log_inode: int
    log_offset: int


def _image(header: Header, entries: list[pagelog.Entry], inode: int) -> Image:
    last = entries[-1] if entries else None
    if (
        last is not None
        and last.counter == header.counter
        and last.page_size == header.page_size
        and last.page_count == header.page_count
        and last.page1_crc == zlib.crc32(header.page1)
    ):
        return Image(
            header.counter, header.page_size, header.page_count, last.segment, inode, last.end
        )
    return Image(header.counter, header.page_size, header.page_count, None, 0, 0)


@dataclass(slots=True)
class Snapshot:
    """One verified, immutable copy and the state it holds."""

    reader: ReadConnection
    path: Path
    position: Position
    schema_version: int
    image: Image


@dataclass(slots=True)
class _Spare:
    """The previous snapshot, closed, kept to be patched by the next refresh."""

    path: Path
    image: Image
    #: What changed from the spare's state to the current snapshot's.
    delta: pagelog.Chain


@dataclass(slots=True)
class _Build:
    """A copy being made (under ``path``) and what the refresh learnt making it."""

    path: Path
    final_path: Path
    image: Image | None
    patched: bool
    delta: pagelog.Chain | None = None
    #: A full copy's twin (patching on): the next refresh's spare.
    twin: Path | None = None
    pages_read: int = 0
    read_bytes: int = 0


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
        patching: bool = True,
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
        self._raw: RawFile | None = None
        self._source_busy_ms = busy_timeout_ms
        self.patching = patching
        self.log_path = pagelog.sidecar_path(source_path)
        self.spare: _Spare | None = None
        self.refreshes = 0
        #: Refreshes done by patching the spare copy (the rest copied the whole file).
        self.patches = 0
        #: Why the last refresh that copied the whole file could not patch.
        self.last_full_copy_reason: str | None = None
        #: The last refresh's build: patched or not, pages and bytes read from the source.
        self.last_refresh: _Build | None = None
        #: Why the last :meth:`ensure_fresh` served a stale snapshot (None when fresh).
        self.stale_reason: ReadError | None = None

    # -- the source -------------------------------------------------------------------------
    def _source_conn(self) -> apsw.Connection:
        if self._source is None:
            self._source, self._raw = open_source_connection(
                self.source_path, busy_timeout_ms=self.busy_timeout_ms
            )
        return self._source

    def _drop_source(self) -> None:
        if self._source is not None:
            with contextlib.suppress(apsw.Error):
                self._source.close()
            self._source = None
            self._raw = None
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
        """Bring the snapshot to the source's state by ``deadline``: patch it with the pages
        changed since (:meth:`_patch`), or copy the whole file when the page log cannot say.

        Raises :class:`SnapshotDeadlineError` (retryable) when the time runs out first.
        """
        source = self._bound_source_busy(deadline)
        raw = self._raw
        if raw is None:  # opened with the connection; gone only after _drop_source
            raise SnapshotError(f"the source of {self.db!r} has no file handle")
        build: _Build | None = None
        try:
            source.execute("BEGIN")
            try:
                # The read transaction pins one state: the pages, the log and the position
                # agree, and no commit can finish (nor log an entry) until it ends.
                expected = ledger.read_state(source)
                header = Header.read(raw)
                entries, inode = self._read_log()
                if self.patching and self.current is not None:
                    try:
                        build = self._patch(raw, header, entries, deadline)
                    except ChainError as why:
                        self.last_full_copy_reason = str(why)
                else:
                    self.last_full_copy_reason = (
                        "no snapshot yet" if self.patching else "patching is off"
                    )
                if build is None:
                    build = self._full_copy(raw, header, deadline)
                build.image = _image(header, entries, inode)
            finally:
                source.execute("COMMIT")
            self._check(build, expected, deadline)
        except (_OutOfTimeError, *SQLITE_FAILURES, OSError) as exc:
            if build is not None:
                build.path.unlink(missing_ok=True)
            self._drop_spare_if_used(build)
            if isinstance(exc, _OutOfTimeError) or _past(deadline):
                raise SnapshotDeadlineError(
                    f"the snapshot copy of {self.db!r} did not finish within the request's "
                    "deadline; retry, with a longer timeout_ms for a database this big"
                ) from None
            if isinstance(exc, OSError):
                raise SnapshotError(
                    f"the snapshot of {self.db!r} could not be written: {exc}"
                ) from None
            self._drop_source_unless_recovering(exc)
            raise _classify_source(exc) from None
        except BaseException:
            if build is not None:
                build.path.unlink(missing_ok=True)
            self._drop_spare_if_used(build)
            raise
        return self._swap(build, expected)

    def _read_log(self) -> tuple[list[pagelog.Entry], int]:
        """The page log's entries, only its tail when the current snapshot says where.

        A log that cannot be read is no log: the refresh copies the whole file.
        """
        if not self.patching:
            return [], 0
        current = self.current
        image = current.image if current is not None else None
        try:
            if image is None or image.segment is None:
                return pagelog.read_log(self.log_path)
            return pagelog.read_log(self.log_path, inode=image.log_inode, offset=image.log_offset)
        except OSError as exc:
            self.last_full_copy_reason = f"the page log cannot be read: {exc}"
            return [], 0

    def _patch(
        self, raw: RawFile, header: Header, entries: list[pagelog.Entry], deadline: float
    ) -> _Build:
        """Patch the spare copy to the source's state, reading only the pages that changed.

        The spare holds an older state (``T``) and the current snapshot a newer one (``S``),
        both of one log segment. Pages written between ``S`` and the source's ``C`` are read
        from the source, in one read per run; pages written between ``T`` and ``S`` only are
        copied from the current snapshot on local disk. Raises :class:`ChainError` when the
        log cannot say what changed (the caller copies the whole file).
        """
        current = self.current
        assert current is not None
        image = current.image
        if image.segment is None:
            raise ChainError("the current snapshot is not in the page log")
        if header.page_size != image.page_size:
            raise ChainError("the page size changed")
        recent = pagelog.plan_chain(
            entries,
            segment=image.segment,
            start_counter=image.counter,
            start_page_count=image.page_count,
            end_counter=header.counter,
        )
        if recent.page_size != header.page_size or recent.page_count != header.page_count:
            raise ChainError("the page log's last entry does not describe the file")
        if recent.last is None or recent.last.page1_crc != zlib.crc32(header.page1):
            raise ChainError("page 1 differs from the page log's last entry")
        spare = self.spare
        if spare is None or spare.image.segment != image.segment:
            raise ChainError("no spare copy of this log segment to patch")
        tmp_path, final_path = self.store.new_paths(self.db)
        os.replace(spare.path, tmp_path)  # closed, and never served again under this name
        self.spare = None
        build = _Build(tmp_path, final_path, None, patched=True)
        try:
            self._apply(build, current.path, spare.delta, recent, raw, header, deadline)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        build.delta = recent
        return build

    def _apply(
        self,
        build: _Build,
        current_path: Path,
        older: pagelog.Chain,
        recent: pagelog.Chain,
        raw: RawFile,
        header: Header,
        deadline: float,
    ) -> None:
        """Turn the spare (at ``T``) into the source's state ``C``; see :meth:`_patch`.

        ``older`` is what changed from ``T`` to the current snapshot's ``S``, ``recent``
        from ``S`` to ``C``. Pages above either low water that neither wrote read back as
        zeros in the source (the file shrank, then grew), so the spare is first cut there.
        """
        size = header.page_size
        low_water = min(older.low_water, recent.low_water)
        unchanged_since_s = min(recent.low_water, recent.page_count)
        local = [p for p in older.pages if p not in recent.pages and p <= unchanged_since_s]
        fd = os.open(build.path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size > low_water * size:
                os.ftruncate(fd, low_water * size)
            if local:
                _copy_local_pages(current_path, fd, local, size)
            build.read_bytes = _copy_source_pages(raw, fd, recent.pages, size, deadline)
            build.pages_read = len(recent.pages)
            os.ftruncate(fd, header.page_count * size)
        finally:
            os.close(fd)

    def _full_copy(self, raw: RawFile, header: Header, deadline: float) -> _Build:
        """Copy every page of the source, :data:`COPY_CHUNK_BYTES` per read.

        With patching on, each chunk also goes to a twin file, the next refresh's spare.
        """
        self._drop_spare()
        tmp_path, final_path = self.store.new_paths(self.db)
        build = _Build(tmp_path, final_path, None, patched=False)
        twin_path = self.store.new_paths(self.db)[0] if self.patching else None
        fds: list[int] = []
        try:
            for path in (tmp_path, twin_path):
                if path is not None:
                    fds.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            total = header.page_count * header.page_size
            # Pages past the file's end (never written) read back as zeros.
            build.read_bytes = _copy_range(raw, fds, 0, min(total, raw.size()), deadline)
            build.pages_read = header.page_count
            for fd in fds:
                os.ftruncate(fd, total)
        except BaseException:
            for path in (tmp_path, twin_path):
                if path is not None:
                    path.unlink(missing_ok=True)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        build.twin = twin_path
        return build

    def _check(self, build: _Build, expected: tuple[Position, int], deadline: float) -> None:
        """Open the new copy and check it holds the state it was taken in.

        A full copy also passes ``PRAGMA quick_check`` (a torn or corrupt copy); a patched
        one is checked by its header and position, which a wrong page 1 or ledger breaks: a
        full check reads every page, the cost patching exists to avoid.
        """
        target = apsw.Connection(
            readonly_uri(build.path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        )
        try:
            check: object = "ok"
            if not build.patched:
                # Memory-mapped reads make the check ~35% faster. Only on the private copy:
                # a mapped file on NFS turns an I/O error into SIGBUS.
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
        except apsw.InterruptError:
            raise _OutOfTimeError from None
        finally:
            target.close()

    def _swap(self, build: _Build, expected: tuple[Position, int]) -> Snapshot:
        os.replace(build.path, build.final_path)  # no connection has either name open
        try:
            reader = ReadConnection.open(build.final_path, immutable=True, limits=self.limits)
        except SQLITE_FAILURES as exc:
            build.final_path.unlink(missing_ok=True)
            raise _classify_source(exc) from None
        assert build.image is not None
        old, self.current = self.current, Snapshot(reader, build.final_path, *expected, build.image)
        self.refreshes += 1
        if build.patched:
            self.patches += 1
        self.last_refresh = build
        if old is not None:
            old.reader.close()
            if build.patched and build.delta is not None:
                # The old copy becomes the spare the next refresh patches.
                spare_path = old.path.with_suffix(_SPARE_SUFFIX)
                os.replace(old.path, spare_path)  # its connection is closed
                self.spare = _Spare(spare_path, old.image, build.delta)
            else:
                old.path.unlink(missing_ok=True)
        if build.twin is not None:
            spare_path = build.twin.with_suffix(_SPARE_SUFFIX)
            os.replace(build.twin, spare_path)
            image = build.image
            self.spare = _Spare(spare_path, image, pagelog.Chain.empty(image.page_count))
        return self.current

    def _drop_spare(self) -> None:
        if self.spare is not None:
            self.spare.path.unlink(missing_ok=True)
            self.spare = None

    def _drop_spare_if_used(self, build: _Build | None) -> None:
        """A failed refresh's spare is gone: half-patched (deleted with the build), or the
        twin of a copy that failed its check."""
        if build is not None and build.twin is not None:
            build.twin.unlink(missing_ok=True)

    def close(self) -> None:
        self._drop_source()
        self._drop_spare()
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


def _copy_range(raw: RawFile, fds: list[int], start: int, end: int, deadline: float) -> int:
    """Copy bytes ``[start, end)`` of the source into each of ``fds``; returns bytes read."""
    offset = start
    while offset < end:
        amount = min(COPY_CHUNK_BYTES, end - offset)
        data = raw.read(amount, offset)
        for fd in fds:
            os.pwrite(fd, data, offset)
        offset += amount
        if offset < end and _past(deadline):
            raise _OutOfTimeError
    return end - start


def _copy_source_pages(
    raw: RawFile, fd: int, pages: dict[int, int], page_size: int, deadline: float
) -> int:
    """Copy ``pages`` from the source, each checked against the CRC-32 its log entry
    recorded. Runs less than :data:`COALESCE_BYTES` apart are read in one ``pread`` (at most
    :data:`COPY_CHUNK_BYTES`); the pages between are the source's too, and are written."""
    read = 0
    gap = max(COALESCE_BYTES // page_size - 1, 0)
    per_read = max(COPY_CHUNK_BYTES // page_size, 1)
    for first, count in _coalesced(pagelog.runs_of(pages), gap):
        for start in range(first, first + count, per_read):
            n = min(per_read, first + count - start)
            data = raw.read(n * page_size, (start - 1) * page_size)
            for i in range(n):
                crc = pages.get(start + i)
                page = data[i * page_size : (i + 1) * page_size]
                if crc is not None and zlib.crc32(page) != crc:
                    raise ChainError(f"page {start + i} differs from its page log entry")
            os.pwrite(fd, data, (start - 1) * page_size)
            read += len(data)
            if _past(deadline):
                raise _OutOfTimeError
    return read


def _coalesced(runs: tuple[tuple[int, int], ...], gap: int) -> list[tuple[int, int]]:
    """``runs`` with those at most ``gap`` pages apart merged (the pages between included)."""
    merged: list[tuple[int, int]] = []
    for first, count in runs:
        if merged and first - (merged[-1][0] + merged[-1][1]) <= gap:
            merged[-1] = (merged[-1][0], first + count - merged[-1][0])
        else:
            merged.append((first, count))
    return merged


def _copy_local_pages(path: Path, fd: int, pages: list[int], page_size: int) -> None:
    """Copy ``pages`` from another local snapshot file (opened immutable: no locks to drop)."""
    src = os.open(path, os.O_RDONLY)
    try:
        for first, count in pagelog.runs_of(pages):
            offset, end = (first - 1) * page_size, (first - 1 + count) * page_size
            while offset < end:
                amount = min(COPY_CHUNK_BYTES, end - offset)
                os.pwrite(fd, os.pread(src, amount, offset), offset)
                offset += amount
    finally:
        os.close(src)
