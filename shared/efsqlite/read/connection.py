"""The hardened read-only connection every reader query runs on.

``mode=ro`` alone is not read-only in fact: SQLite still lets ``ATTACH`` create a file,
``VACUUM INTO`` create one anywhere, and ``PRAGMA query_only=0`` undo itself. So a reader
connection stacks five guards:

1. ``mode=ro`` in the URI: SQLite never opens the file for writing and never creates it.
2. ``PRAGMA query_only=1`` and ``PRAGMA temp_store=MEMORY`` (no temp files), set before 3.
3. An authorizer **allow-list** (:mod:`efsqlite.core.sqlpolicy`), for caller SQL: SELECT and
   RECURSIVE; the listed functions; READ of the database's own tables and views, the schema
   table, ``json_each``/``json_tree`` and the ``pragma_*`` tables of the PRAGMAs below;
   "UPDATE" of the schema table only (a virtual table's constructor declares its columns that
   way; SQLite itself refuses a real write there: "may not be modified"); a few PRAGMAs that
   only read. Everything else, including ATTACH (which ``VACUUM INTO`` reaches), transactions,
   ``sqlite_stmt``, ``dbstat`` and ``fts3_tokenizer``, is denied at prepare time.
4. ``limit()``: no attached databases, bounded string/blob length (``randomblob(2e9)`` fails
   at once) and SQL length; and SQLite's process-wide hard heap limit
   (``connections.set_hard_heap_limit``): a query that needs more memory fails with ``too_large``.
5. A deadline checked by the progress handler: a runaway query is interrupted. It bounds the
   busy wait too. It cannot stop a single VM step, so the functions that loop inside one
   (``LIKE``/``GLOB``, two-argument ``trim``, ``instr``, ``replace``: 28 to 33 s, 7.9 s, 0.17 s and
   0.67 s on the pinned 3.54.1 with operands under the length limit) are replaced by bounded
   ones (:mod:`efsqlite.core.singlestep`). ``printf('%.*c', 2147483647, 'x')``, 3.6 s in one step
   on 3.40.1, is refused at once as too big since the engine was pinned.

DO run caller SQL only through :meth:`ReadConnection.query`, which prepares it as
``sqlpolicy.caller_sql(text)``: the statement cache is keyed by SQL text and a statement is
authorized once, when prepared, so a caller sending the text of one of our statements
(``BEGIN``) still gets a statement of its own, prepared under the caller checks.
DON'T give an internal statement the caller prefix; internal statements run with the caller
checks off (``_internal``), so their text must never come from a caller.
DON'T leave a cursor half-read: its statement would keep the shared lock on the file.
DON'T allow a READ because a name is missing from a deny-list: unknown names are denied.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from efsqlite.core import engine, ledger, singlestep, sqlpolicy
from efsqlite.core.connections import readonly_uri
from efsqlite.core.position import Position
from efsqlite.core.types import SqlParams
from efsqlite.read.exceptions import (
    BusyError,
    InvalidRequestError,
    NotAllowedError,
    QueryTimeoutError,
    ReadError,
    RecoveringError,
    SqlError,
    TooLargeError,
)

#: Extended result code of a read-only open that finds a hot journal it may not roll back.
SQLITE_READONLY_ROLLBACK = apsw.SQLITE_READONLY_ROLLBACK
#: SQL text longer than this is refused before SQLite sees it.

#: SQLite VM instructions between two deadline checks (a few microseconds of work).
PROGRESS_STEPS = 1000
#: JSON overhead of the answer's envelope (keys, position, flags), counted against the cap.
ENVELOPE_BYTES = 256

_OK = apsw.SQLITE_OK
_DENY = apsw.SQLITE_DENY
_READ = apsw.SQLITE_READ
_FUNCTION = apsw.SQLITE_FUNCTION
_PRAGMA = apsw.SQLITE_PRAGMA
_UPDATE = apsw.SQLITE_UPDATE
_SELECTS = {apsw.SQLITE_SELECT, apsw.SQLITE_RECURSIVE}
#: PRAGMAs that only read when given no value (``PRAGMA user_version``, not ``= 5``).
_READ_PRAGMAS = {
    "application_id",
    "data_version",
    "encoding",
    "freelist_count",
    "page_count",
    "page_size",
    "schema_version",
    "user_version",
}
#: PRAGMAs whose argument names a table or index: they only ever read.
_INTROSPECTION_PRAGMAS = {
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "table_info",
    "table_xinfo",
}
#: Names caller SQL may read in any database: the schema table, the JSON table-valued
#: functions, and the ``pragma_<name>`` tables of the allowed PRAGMAs (the PRAGMA they run
#: is checked again by the PRAGMA rule).
_ALWAYS_READABLE: frozenset[str] = (
    sqlpolicy.SCHEMA_TABLES
    | sqlpolicy.TABLE_FUNCTIONS
    | {f"pragma_{name}" for name in _READ_PRAGMAS | _INTROSPECTION_PRAGMAS}
)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What every reader connection enforces: ``setlimit`` values and the function list."""

    #: Longest string or blob a query may produce or read (bytes).
    max_length: int = 5_000_000
    #: Caller SQL is at most MAX_SQL_CHARS; the prefix of ``caller_sql`` comes on top.
    max_sql_length: int = sqlpolicy.MAX_SQL_CHARS + len(sqlpolicy.CALLER_SQL_PREFIX)
    max_variables: int = 10_000
    max_compound_select: int = 100
    #: Functions caller SQL may call (lower case): ``sqlpolicy.function_allow_list(extra)``.
    functions: frozenset[str] = sqlpolicy.BUILTIN_FUNCTIONS


@dataclass(frozen=True, slots=True)
class Rows:
    """Columns and JSON-ready rows of one query, and whether a cap cut the rows short.

    The reader adds the position and schema version to make the answer
    (:class:`efsqlite.read.answers.QueryResult`).
    """

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


#: What an engine call raises for a bad file or value: ``apsw.Error``, ``UnicodeDecodeError``
#: for TEXT that is not UTF-8 (a value a command stored, or a damaged schema: the fault
#: suite's byte flips), ``MemoryError`` when Python itself runs short.
SQLITE_FAILURES = (apsw.Error, UnicodeDecodeError, MemoryError)
#: What running caller SQL can raise besides: a lone surrogate (``UnicodeEncodeError``), an
#: int beyond 64 bits (``OverflowError``), a NUL in the text (``ValueError``), more than one
#: statement or a missing named parameter (``engine.StatementError``), a value of a type
#: SQLite has no binding for (``TypeError``).
_CALLER_FAILURES = (
    *SQLITE_FAILURES,
    engine.StatementError,
    UnicodeEncodeError,
    OverflowError,
    ValueError,
    TypeError,
)


def classify(exc: Exception) -> ReadError:
    """Map an exception from the engine to the typed error the caller gets."""
    if isinstance(exc, ReadError):
        return exc
    if isinstance(exc, MemoryError | apsw.NoMemError):
        return TooLargeError(
            "the query needs more memory than the reader allows (EFSQLITE_MAX_HEAP_MB)"
        )
    if isinstance(exc, UnicodeEncodeError):
        return InvalidRequestError("the SQL or a parameter is not valid Unicode (a lone surrogate)")
    if isinstance(exc, UnicodeDecodeError):
        return SqlError(
            "text that is not valid UTF-8: a value (select CAST(value AS BLOB) or hex(value)) "
            "or a damaged schema"
        )
    if isinstance(exc, OverflowError):
        return InvalidRequestError(f"parameter out of range: {exc}")
    if isinstance(exc, engine.MultipleStatementsError):
        return NotAllowedError("only one SQL statement per request is allowed")
    if isinstance(exc, engine.StatementError | apsw.BindingsError | TypeError):
        return InvalidRequestError(f"bad parameters: {exc}")
    if isinstance(exc, ValueError) and "null character" in str(exc):
        return InvalidRequestError("the SQL text contains a NUL character")
    primary = engine.primary_code(exc)
    if not isinstance(exc, apsw.Error) or primary is None:
        return SqlError(f"{type(exc).__name__}: {exc}")
    if getattr(exc, "extendedresult", None) == SQLITE_READONLY_ROLLBACK:
        return RecoveringError(
            "the database has a hot journal from an interrupted write; it is readable again "
            "after the writer's next run"
        )
    text = str(exc)
    # VACUUM has no authorizer action of its own: it is refused at run time, inside a read
    # transaction ("cannot VACUUM ...") or at its internal ATTACH ("not authorized"). A write
    # to the schema table, whose "UPDATE" the authorizer allows for virtual tables, is refused
    # by SQLite itself ("table sqlite_master may not be modified").
    if (
        primary in (apsw.SQLITE_AUTH, apsw.SQLITE_READONLY)
        or text.startswith(("not authorized", "cannot VACUUM"))
        or text.endswith("may not be modified")
    ):
        return NotAllowedError(f"the reader only reads: {exc}")
    if primary == apsw.SQLITE_INTERRUPT:
        return QueryTimeoutError("the query ran past its deadline and was interrupted")
    if primary == apsw.SQLITE_TOOBIG:
        return TooLargeError(f"a value is larger than the reader's limit: {exc}")
    if primary == apsw.SQLITE_RANGE:
        return InvalidRequestError(f"bad parameters: {exc}")
    if primary in (
        apsw.SQLITE_BUSY,
        apsw.SQLITE_LOCKED,
        apsw.SQLITE_IOERR,
        apsw.SQLITE_CANTOPEN,
        apsw.SQLITE_PROTOCOL,
        apsw.SQLITE_CORRUPT,
        apsw.SQLITE_NOTADB,
        apsw.SQLITE_FULL,
    ):
        return BusyError(f"the database is unavailable right now: {exc}")
    return SqlError(str(exc))


def busy_ms_until(deadline: float, busy_timeout_ms: int) -> int:
    """The busy timeout that keeps a lock wait inside ``deadline`` (0 when it has passed)."""
    if deadline == math.inf:
        return busy_timeout_ms
    left_ms = int((deadline - time.monotonic()) * 1000)
    return max(0, min(busy_timeout_ms, left_ms))


def bound_busy_timeout(
    conn: apsw.Connection, deadline: float, busy_timeout_ms: int, current_ms: int
) -> int:
    """Give ``conn`` the busy timeout that keeps lock waits inside ``deadline``; returns it.

    ``current_ms`` is the timeout the connection has now: the PRAGMA runs only on a change.
    """
    wanted = busy_ms_until(deadline, busy_timeout_ms)
    if wanted != current_ms:
        conn.execute(f"PRAGMA busy_timeout={wanted}")
    return wanted


def _json_value(value: object) -> object:
    """A JSON-safe form of one SQLite value: blobs as ``{"$blob": base64}``, inf as text."""
    if isinstance(value, bytes):
        return {"$blob": binascii.b2a_base64(value, newline=False).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class ReadConnection:
    """A hardened ``mode=ro`` connection; see the module docstring for the guards."""

    def __init__(
        self,
        conn: apsw.Connection,
        path: Path,
        *,
        functions: frozenset[str] = sqlpolicy.BUILTIN_FUNCTIONS,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.conn = conn
        self.path = path
        self.functions = functions
        self.busy_timeout_ms = busy_timeout_ms
        self._busy_ms = busy_timeout_ms
        self._internal = False
        self._deadline = math.inf
        self._schema_cookie: int | None = None
        self._readable: frozenset[str] = _ALWAYS_READABLE

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        immutable: bool = False,
        busy_timeout_ms: int = 5000,
        limits: QueryLimits | None = None,
    ) -> ReadConnection:
        """Open ``path`` read-only with every guard in place. Raises ``apsw.Error``.

        An immutable file's schema never changes, so its names are read once, here; a live
        file's are re-read by :meth:`begin` whenever its schema cookie moves.
        """
        limits = limits or QueryLimits()
        conn = apsw.Connection(
            readonly_uri(path, immutable=immutable),
            flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
            statementcachesize=128,
        )
        try:
            conn.set_busy_timeout(busy_timeout_ms)
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, limits.max_length)
            conn.limit(apsw.SQLITE_LIMIT_SQL_LENGTH, limits.max_sql_length)
            conn.limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER, limits.max_variables)
            conn.limit(apsw.SQLITE_LIMIT_COMPOUND_SELECT, limits.max_compound_select)
            conn.limit(apsw.SQLITE_LIMIT_WORKER_THREADS, 0)
            singlestep.install(conn)  # after the limits: it reads them
            reader = cls(conn, path, functions=limits.functions, busy_timeout_ms=busy_timeout_ms)
            conn.set_authorizer(reader._authorize)
            conn.set_progress_handler(reader._progress, PROGRESS_STEPS)
            if immutable:
                with reader._internal_mode():
                    reader._load_schema()
        except BaseException:
            conn.close()
            raise
        return reader

    # -- guards -----------------------------------------------------------------------------
    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if self._internal:
            return _OK
        if action == _READ:
            return _OK if sqlpolicy.reads_allowed(arg1, arg2, self._readable) else _DENY
        if action in _SELECTS:
            return _OK
        if action == _FUNCTION:
            return _OK if arg2 is not None and arg2.lower() in self.functions else _DENY
        if action == _PRAGMA:
            name = (arg1 or "").lower()
            if name in _INTROSPECTION_PRAGMAS or (name in _READ_PRAGMAS and arg2 is None):
                return _OK
            return _DENY
        if action == _UPDATE:
            # A virtual table's constructor declares its columns as an "update" of the schema
            # table; SQLite refuses a real write there by itself (see classify).
            return _OK if arg1 is not None and arg1.lower() in sqlpolicy.SCHEMA_TABLES else _DENY
        return _DENY  # TRANSACTION (ours run internal), ATTACH, writes, DDL, anything new

    def _progress(self) -> bool:
        return time.monotonic() > self._deadline

    # -- internal reads (ledger, position) --------------------------------------------------
    @contextlib.contextmanager
    def _internal_mode(self) -> Iterator[None]:
        self._internal = True
        self._deadline = math.inf
        try:
            yield
        finally:
            self._internal = False

    def _run_internal(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._internal_mode():
            return self.conn.execute(sql, params).fetchall()

    def _load_schema(self) -> None:
        """Re-read the names caller SQL may read, if the schema cookie moved (internal)."""
        cookie = sqlpolicy.schema_cookie(self.conn)
        if cookie != self._schema_cookie:
            self._readable = _ALWAYS_READABLE | sqlpolicy.read_schema_names(self.conn)
            self._schema_cookie = cookie

    def _bound_busy(self, deadline: float) -> None:
        """Keep a wait for the writer's lock inside ``deadline`` (internal)."""
        self._busy_ms = bound_busy_timeout(self.conn, deadline, self.busy_timeout_ms, self._busy_ms)

    def begin(self, deadline: float = math.inf) -> None:
        """Open a read transaction: what follows sees one consistent state of the file.

        Waits for the writer's lock until ``deadline`` at most, and refreshes the names
        caller SQL may read when the schema changed.
        """
        with self._internal_mode():
            self._bound_busy(deadline)
            self.conn.execute("BEGIN")
            try:
                self._load_schema()
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    self.conn.execute("COMMIT")  # never leave the shared lock held
                raise

    def end(self) -> None:
        """End the read transaction (if any), releasing the shared lock."""
        if self.conn.in_transaction:
            self._run_internal("COMMIT")

    def state(self) -> tuple[Position, int]:
        """(settled position, schema version) as this connection sees it; call inside begin()."""
        with self._internal_mode():
            return ledger.read_state(self.conn)

    def command_status(self, command_id: str) -> ledger.CommandStatus:
        """The ledger's answer for ``command_id`` (our own statements, run internal)."""
        with self._internal_mode():
            return command_status_or_unknown(self.conn, command_id)

    def status_and_blocker(
        self, command_id: str
    ) -> tuple[ledger.CommandStatus, Position, ledger.CommandStatus | None]:
        """:func:`status_and_blocker` on this connection; call inside begin()."""
        with self._internal_mode():
            return status_and_blocker(self.conn, command_id)

    def summary(self) -> ledger.LedgerSummary:
        """The ledger's :class:`~efsqlite.core.ledger.LedgerSummary`; call inside begin()."""
        with self._internal_mode():
            return ledger.summary(self.conn)

    # -- caller queries ---------------------------------------------------------------------
    def query(
        self,
        sql: str,
        params: SqlParams,
        *,
        max_rows: int,
        max_bytes: int,
        deadline: float,
        escaped: bool = False,
    ) -> Rows:
        """Run one caller statement under the deadline, the row cap and the byte cap.

        ``escaped`` counts the extra bytes of JSON-in-JSON (a Function URL body), so the
        final answer, not just the rows, stays under the cap. Raises :class:`ReadError`.
        """
        cursor: apsw.Cursor | None = None
        self._deadline = deadline
        try:
            cursor, columns = engine.column_names(self.conn, sqlpolicy.caller_sql(sql), params)
            budget = max_bytes - ENVELOPE_BYTES - _measure(json.dumps(columns), escaped)
            rows: list[list[Any]] = []
            truncated = False
            for row in cursor:
                if len(rows) >= max_rows:
                    truncated = True
                    break
                values = [_json_value(v) for v in row]
                budget -= _measure(json.dumps(values), escaped) + 1
                if budget < 0:
                    if not rows:
                        raise TooLargeError(
                            f"the first row alone exceeds the {max_bytes}-byte answer cap"
                        )
                    truncated = True
                    break
                rows.append(values)
            return Rows(columns, rows, truncated)
        except _CALLER_FAILURES as exc:
            raise classify(exc) from None
        finally:
            self._deadline = math.inf
            if cursor is not None:
                cursor.close()

    def close(self) -> None:
        self.conn.close()


def _measure(text: str, escaped: bool) -> int:
    # json.dumps output is ASCII, so len() is its size in bytes; embedding it as a JSON
    # string escapes every quote and backslash once more.
    if escaped:
        return len(text) + text.count('"') + text.count("\\")
    return len(text)


def status_and_blocker(
    conn: apsw.Connection, command_id: str
) -> tuple[ledger.CommandStatus, Position, ledger.CommandStatus | None]:
    """A command's status, the settled position, and, when the command is not seen yet, the
    pending command holding its database's FIFO group (so "why is mine not applied?" is one
    answer). Read in the caller's transaction."""
    status = command_status_or_unknown(conn, command_id)
    position = ledger.read_position(conn)
    held_by = ledger.blocker(conn) if status.state == "unknown" else None
    return status, position, held_by


def command_status_or_unknown(conn: apsw.Connection, command_id: str) -> ledger.CommandStatus:
    """``ledger.command_status``, or "unknown" when the writer has not created the ledger yet."""
    try:
        return ledger.command_status(conn, command_id)
    except apsw.SQLError as exc:
        if "no such table" not in str(exc):
            raise
        return ledger.CommandStatus(id=command_id, state="unknown")
