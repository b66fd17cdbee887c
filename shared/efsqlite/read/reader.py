"""The reader: one entry for both event shapes, and the snapshot and direct read modes.

One core (:meth:`Reader.invoke`) answers a direct Lambda invoke payload; the Function URL
transport (:mod:`efsqlite.read.http`) maps payload format 2.0 events onto it. Requests are
checked in :mod:`efsqlite.read.requests`, settings in :mod:`efsqlite.read.settings`. Every
answer is a result or ``{"error": {"type", "message", "retryable"}}``: nothing raises out of
:meth:`Reader.handle`.

This module is on the reader's cold start, so it imports no pydantic, boto3 or powertools:
settings are a stdlib dataclass with their own checks, logging is stdlib JSON lines.

DO compare positions as ``Position`` objects (SQS sequence numbers reach 128 bits).
DO bound every wait by the request's timeout and the Lambda's remaining time: the wait for
``min_position``, the lock waits, the snapshot refresh and the query itself.
DON'T import ``efsqlite.write`` (pydantic: about 250 ms of cold start); the import contracts
in ``pyproject.toml`` (``[tool.importlinter]``) refuse it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from efsqlite.core.connections import database_path, set_hard_heap_limit
from efsqlite.core.position import Position
from efsqlite.read import http
from efsqlite.read.answers import DatabaseStatusAnswer, QueryResult, StatusAnswer
from efsqlite.read.connection import SQLITE_FAILURES, ReadConnection, Rows, classify
from efsqlite.read.exceptions import (
    BusyError,
    DatabaseNotFoundError,
    InternalError,
    NotYetAtPositionError,
    ReadError,
    RecoveringError,
)
from efsqlite.read.queries import QueryRegistry, load_queries
from efsqlite.read.requests import (
    DatabaseStatusRequest,
    QueryRequest,
    StatusRequest,
    parse_request,
)
from efsqlite.read.settings import ReaderSettings
from efsqlite.read.snapshot import DatabaseSnapshot, SnapshotDeadlineError, SnapshotStore

LOGGER_NAME = "efsqlite.read.reader"

#: Time kept back from the Lambda's remaining time to build and return the answer.
ANSWER_MARGIN_MS = 250
#: Databases kept open (and snapshotted) per environment; the least recently used goes first.
MAX_OPEN_DATABASES = 16
_FIRST_POLL_S = 0.005
_MAX_POLL_S = 0.1
OpenT = TypeVar("OpenT", DatabaseSnapshot, ReadConnection)
T = TypeVar("T")


# -- the reader ------------------------------------------------------------------------------
class Reader:
    """Answers read requests. One instance per execution environment (module scope)."""

    def __init__(
        self,
        settings: ReaderSettings,
        *,
        queries: QueryRegistry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.queries = queries if queries is not None else load_queries(settings.queries)
        self.limits = settings.query_limits()
        #: SQLite's hard heap limit in force (bytes): a query needing more gets too_large.
        self.heap_limit = set_hard_heap_limit(settings.max_heap_mb * 1024 * 1024)
        self._sleep = sleep
        self._store: SnapshotStore | None = None
        self._snapshots: dict[str, DatabaseSnapshot] = {}
        self._direct: dict[str, ReadConnection] = {}

    # -- entry points -----------------------------------------------------------------------
    def handle(self, event: object, context: object = None) -> dict[str, Any]:
        """The Lambda entry: a Function URL event or a direct-invoke payload. Never raises."""
        is_url = http.is_function_url(event)
        try:
            if is_url:
                return self.handle_http(cast(dict[str, Any], event), context)
            return self.invoke(event, context)
        except Exception as exc:  # a bug: answer, log, and keep the environment alive
            _log("error", {"message": "reader bug", "error": repr(exc)[:500]}, exc_info=True)
            body = InternalError("internal error; see the reader's logs").body()
            return http.response(body) if is_url else body

    def invoke(
        self, payload: object, context: object = None, *, escaped: bool = False
    ) -> dict[str, Any]:
        """Answer one direct-invoke payload with a result or a typed error body."""
        started = time.monotonic()
        try:
            request = parse_request(payload, self.settings, self.queries)
            if isinstance(request, StatusRequest):
                return self.status(request)
            if isinstance(request, DatabaseStatusRequest):
                return self.database_status(request)
            deadline = started + request.timeout_ms / 1000
            deadline = min(deadline, _lambda_deadline(context, started))
            return self.query(request, deadline, escaped=escaped)
        except OSError as exc:
            # The snapshot folder: not writable, full, or gone. Another environment may do.
            error: ReadError = BusyError(f"the reader's local storage failed: {exc}")
            _log("warning", {"message": "read failed", "type": error.error_type, "error": str(exc)})
            return error.body()
        except ReadError as exc:
            if exc.retryable or isinstance(exc, InternalError):
                _log(
                    "warning", {"message": "read failed", "type": exc.error_type, "error": str(exc)}
                )
            return exc.body()

    def handle_http(self, event: dict[str, Any], context: object = None) -> dict[str, Any]:
        """Function URL (payload format 2.0): ``POST /query``, ``GET /commands/{id}?db=``."""
        try:
            payload, escaped = http.route(event)
            answer = self.invoke(payload, context, escaped=escaped)
        except ReadError as exc:
            answer = exc.body()
        return http.response(answer)

    # -- queries ----------------------------------------------------------------------------
    def query(
        self, request: QueryRequest, deadline: float, *, escaped: bool = False
    ) -> dict[str, Any]:
        """Run a checked query in the configured mode; raises :class:`ReadError`."""
        max_bytes = self.settings.max_response_bytes
        if self.settings.read_mode == "direct":
            return self._query_direct(request, deadline, max_bytes, escaped)
        return self._query_snapshot(request, deadline, max_bytes, escaped)

    def _query_snapshot(
        self, request: QueryRequest, deadline: float, max_bytes: int, escaped: bool
    ) -> dict[str, Any]:
        snap = self._snapshot(request.db)
        poll = _FIRST_POLL_S
        while True:
            stale = snap.ensure_fresh(request.min_position, deadline)
            current = snap.current
            assert current is not None
            if request.min_position is None or current.position >= request.min_position:
                break
            poll = self._wait(
                deadline,
                poll,
                current.position,
                request.min_position,
                source_unreadable=snap.stale_reason if stale else None,
            )
        result = _run(current.reader, request, deadline, max_bytes, escaped)
        return _answer(result, current.position, current.schema_version, stale=stale)

    def _query_direct(
        self, request: QueryRequest, deadline: float, max_bytes: int, escaped: bool
    ) -> dict[str, Any]:
        poll = _FIRST_POLL_S
        while True:
            conn = self._direct_conn(request.db)
            try:
                conn.begin(deadline)
                try:
                    position, version = conn.state()
                    if request.min_position is None or position >= request.min_position:
                        result = _run(conn, request, deadline, max_bytes, escaped)
                        return _answer(result, position, version, stale=False)
                finally:
                    conn.end()
            except (*SQLITE_FAILURES, ReadError) as exc:
                error = classify(exc)
                if isinstance(error, BusyError):
                    self._drop_direct(request.db)  # reopen rather than trust the handle
                raise error from None
            poll = self._wait(deadline, poll, position, request.min_position)

    def _wait(
        self,
        deadline: float,
        poll: float,
        position: Position,
        wanted: Position,
        *,
        source_unreadable: ReadError | None = None,
    ) -> float:
        """Sleep before the next look at the position, or give up at the deadline.

        ``source_unreadable`` is why the last look served a stale snapshot, if it did.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if isinstance(source_unreadable, SnapshotDeadlineError):
                raise BusyError(
                    f"a fresh copy of the database did not finish in time; the last good copy "
                    f"is at position {position!s}, not yet {wanted}; "
                    "retry, with a longer timeout_ms",
                    position=str(position),
                )
            if source_unreadable is not None:
                raise RecoveringError(
                    f"the database cannot be read right now (a hot journal or a held lock); "
                    f"the last good copy is at position {position!s}, "
                    f"not yet {wanted}",
                    position=str(position),
                )
            raise NotYetAtPositionError(
                f"the writer has settled position {position!s}, not yet {wanted}; retry later",
                position=str(position),
            )
        self._sleep(min(poll, remaining))
        return min(poll * 2, _MAX_POLL_S)

    # -- command status ---------------------------------------------------------------------
    def status(self, request: StatusRequest) -> dict[str, Any]:
        """The outcome of one command, read from the source database (not the snapshot)."""
        stale = False
        held_by = None
        if self.settings.read_mode == "snapshot":
            snap = self._snapshot(request.db)
            try:
                found, position, held_by = snap.command_status(request.command_id)
            except (RecoveringError, BusyError):
                if snap.current is None:
                    raise
                found = snap.current.reader.command_status(request.command_id)
                position, stale = snap.current.position, True
        else:
            found, position, held_by = self._read_direct(
                request.db, lambda conn: conn.status_and_blocker(request.command_id)
            )
        return StatusAnswer(request.db, found, position, stale=stale, blocked_by=held_by).to_json()

    def database_status(self, request: DatabaseStatusRequest) -> dict[str, Any]:
        """The ledger's summary of one database, read from the source (not the snapshot)."""
        if self.settings.read_mode == "snapshot":
            found = self._snapshot(request.db).summary()
        else:
            found = self._read_direct(request.db, ReadConnection.summary)
        return DatabaseStatusAnswer(request.db, found).to_json()

    def _read_direct(self, db: str, read: Callable[[ReadConnection], T]) -> T:
        """``read(conn)`` on the database's direct connection in one read transaction."""
        conn = self._direct_conn(db)
        try:
            conn.begin()
            try:
                return read(conn)
            finally:
                conn.end()
        except SQLITE_FAILURES as exc:
            raise classify(exc) from None

    # -- per-database state -----------------------------------------------------------------
    def _source_path(self, db: str) -> Path:
        path = database_path(self.settings.data_dir, db)
        if not path.is_file():
            raise DatabaseNotFoundError(f"no database named {db!r}")
        return path

    def _cached(self, cache: dict[str, OpenT], db: str, open_: Callable[[Path], OpenT]) -> OpenT:
        """``db``'s entry in ``cache``, opened on first use; the cache is kept in recency order."""
        entry = cache.pop(db, None)
        if entry is None:
            self._evict()
            entry = open_(self._source_path(db))
        cache[db] = entry  # (re)inserted last: dict order is recency
        return entry

    def _snapshot(self, db: str) -> DatabaseSnapshot:
        return self._cached(self._snapshots, db, lambda path: self._new_snapshot(db, path))

    def _new_snapshot(self, db: str, path: Path) -> DatabaseSnapshot:
        if self._store is None:
            self._store = SnapshotStore(self.settings.snapshot_dir)
        return DatabaseSnapshot(
            self._store,
            db,
            path,
            busy_timeout_ms=self.settings.busy_timeout_ms,
            limits=self.limits,
            max_staleness_s=self.settings.max_staleness_ms / 1000,
            patching=self.settings.snapshot_patch,
        )

    def _direct_conn(self, db: str) -> ReadConnection:
        return self._cached(self._direct, db, self._open_direct)

    def _open_direct(self, path: Path) -> ReadConnection:
        try:
            return ReadConnection.open(
                path, busy_timeout_ms=self.settings.busy_timeout_ms, limits=self.limits
            )
        except SQLITE_FAILURES as exc:
            raise classify(exc) from None

    def _evict(self) -> None:
        """Close the least recently used database when MAX_OPEN_DATABASES are open.

        Bounds file descriptors and, in snapshot mode, the space taken in ``/tmp``.
        """
        while len(self._direct) >= MAX_OPEN_DATABASES:
            self._drop_direct(next(iter(self._direct)))
        while len(self._snapshots) >= MAX_OPEN_DATABASES:
            self._snapshots.pop(next(iter(self._snapshots))).close()

    def _drop_direct(self, db: str) -> None:
        conn = self._direct.pop(db, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close every connection and delete this process's snapshots."""
        for db in list(self._direct):
            self._drop_direct(db)
        for snap in self._snapshots.values():
            snap.close()
        self._snapshots.clear()
        if self._store is not None:
            self._store.close()
            self._store = None


# -- helpers ----------------------------------------------------------------------------------
def _run(
    conn: ReadConnection, request: QueryRequest, deadline: float, max_bytes: int, escaped: bool
) -> Rows:
    """Run the request's query on ``conn`` (in a read transaction the caller holds)."""
    return conn.query(
        request.sql,
        request.params,
        max_rows=request.max_rows,
        max_bytes=max_bytes,
        deadline=deadline,
        escaped=escaped,
    )


def _answer(rows: Rows, position: Position, version: int, *, stale: bool) -> dict[str, Any]:
    """The JSON query answer every entry shape returns."""
    return QueryResult(
        rows.columns, rows.rows, position, version, truncated=rows.truncated, stale=stale
    ).to_json()


def _log(level: str, fields: dict[str, Any], *, exc_info: bool = False) -> None:
    """One JSON log line. ``logging`` is imported on first use: it is off the cold start."""
    import logging

    getattr(logging.getLogger(LOGGER_NAME), level)(json.dumps(fields), exc_info=exc_info)


def _lambda_deadline(context: object, started: float) -> float:
    """The monotonic time by which the answer must be built, from the Lambda context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return math.inf
    try:
        left_ms = float(remaining())
    except Exception:
        return math.inf
    return started + max(left_ms - ANSWER_MARGIN_MS, 1.0) / 1000
