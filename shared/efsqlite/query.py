"""The hardened read-only connection every reader query runs on.

``mode=ro`` alone is not read-only in fact: SQLite still lets ``ATTACH`` create a file,
``VACUUM INTO`` create one anywhere, and ``PRAGMA query_only=0`` undo itself. So a reader
connection stacks five guards:

1. ``mode=ro`` in the URI: SQLite never opens the file for writing and never creates it.
2. ``PRAGMA query_only=1`` and ``PRAGMA temp_store=MEMORY`` (no temp files), set before 3.
3. An authorizer **allow-list**: SELECT, READ, RECURSIVE, functions except a deny-list, and a
   few PRAGMAs that only read. Everything else, including ATTACH (which ``VACUUM INTO``
   reaches) and transactions, is denied at prepare time.
4. ``setlimit``: no attached databases, bounded string/blob length (``randomblob(2e9)`` fails
   at once) and SQL length.
5. A deadline checked by the progress handler: a runaway query is interrupted.

DO run caller SQL only through :meth:`ReadConnection.query`.
DON'T run internal statements with caller-known text: the statement cache is keyed by SQL
text and an internal statement is authorized once, so internal SQL carries a secret token.
DON'T leave a cursor half-read: its statement would keep the shared lock on the file.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from efsqlite import ledger
from efsqlite.connections import readonly_uri
from efsqlite.read_errors import (
    BusyError,
    InvalidRequestError,
    NotAllowedError,
    QueryTimeoutError,
    ReadError,
    RecoveringError,
    SqlError,
    TooLargeError,
)
from efsqlite.types import SqlParams

#: Extended result code of a read-only open that finds a hot journal it may not roll back.
SQLITE_READONLY_ROLLBACK = 776
#: SQL text longer than this is refused before SQLite sees it.
MAX_SQL_CHARS = 100_000
#: SQLite VM instructions between two deadline checks (a few microseconds of work).
PROGRESS_STEPS = 1000
#: JSON overhead of the answer's envelope (keys, position, flags), counted against the cap.
ENVELOPE_BYTES = 256

_OK = sqlite3.SQLITE_OK
_DENY = sqlite3.SQLITE_DENY
_ALWAYS_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
#: Functions that reach outside the database (or are CLI-only helpers that would).
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"}
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


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """SQLite limits applied through ``setlimit`` on every reader connection."""

    #: Longest string or blob a query may produce or read (bytes).
    max_length: int = 5_000_000
    max_sql_length: int = MAX_SQL_CHARS
    max_variables: int = 10_000
    max_compound_select: int = 100


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Columns and JSON-ready rows of one query, and whether a cap cut the rows short."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


#: What a ``sqlite3`` call raises for a bad file. Python raises ``UnicodeDecodeError`` instead
#: of ``sqlite3.DatabaseError`` when SQLite's message quotes bytes of a damaged schema that are
#: not UTF-8 (found by the fault suite's byte flips).
SQLITE_FAILURES = (sqlite3.Error, UnicodeDecodeError)


def classify(exc: Exception) -> ReadError:
    """Map an exception from ``sqlite3`` to the typed error the caller gets."""
    if isinstance(exc, ReadError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return BusyError("the database is unavailable right now: its file is damaged")
    if isinstance(exc, OverflowError):
        return InvalidRequestError(f"parameter out of range: {exc}")
    if isinstance(exc, sqlite3.ProgrammingError):
        text = str(exc)
        if "one statement" in text:
            return NotAllowedError("only one SQL statement per request is allowed")
        return InvalidRequestError(f"bad parameters: {text}")
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return SqlError(f"{type(exc).__name__}: {exc}")
    primary = code & 0xFF
    if code == SQLITE_READONLY_ROLLBACK:
        return RecoveringError(
            "the database has a hot journal from an interrupted write; it is readable again "
            "after the writer's next run"
        )
    text = str(exc)
    # VACUUM has no authorizer action of its own: it is refused at run time, inside a read
    # transaction ("cannot VACUUM ...") or at its internal ATTACH ("not authorized").
    if primary in (sqlite3.SQLITE_AUTH, sqlite3.SQLITE_READONLY) or text.startswith(
        ("not authorized", "cannot VACUUM")
    ):
        return NotAllowedError(f"the reader only reads: {exc}")
    if primary == sqlite3.SQLITE_INTERRUPT:
        return QueryTimeoutError("the query ran past its deadline and was interrupted")
    if primary == sqlite3.SQLITE_TOOBIG:
        return TooLargeError(f"a value is larger than the reader's limit: {exc}")
    if primary == sqlite3.SQLITE_RANGE:
        return InvalidRequestError(f"bad parameters: {exc}")
    if primary in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_FULL,
    ):
        return BusyError(f"the database is unavailable right now: {exc}")
    return SqlError(str(exc))


def _json_value(value: object) -> object:
    """A JSON-safe form of one SQLite value: blobs as ``{"$blob": base64}``, inf as text."""
    if isinstance(value, bytes):
        return {"$blob": binascii.b2a_base64(value, newline=False).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class ReadConnection:
    """A hardened ``mode=ro`` connection; see the module docstring for the guards."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._internal = False
        self._deadline = math.inf
        # Internal statements carry this token, so caller SQL can never hit their cache entry.
        token = os.urandom(8).hex()
        self._begin_sql = f"BEGIN /* efsqlite {token} */"
        self._commit_sql = f"COMMIT /* efsqlite {token} */"
        self._position_sql = (
            f"SELECT value FROM {ledger.STATE_TABLE} WHERE key = 'position' /* efsqlite {token} */"
        )
        self._version_sql = f"PRAGMA user_version /* efsqlite {token} */"

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        immutable: bool = False,
        busy_timeout_ms: int = 5000,
        limits: QueryLimits | None = None,
    ) -> ReadConnection:
        """Open ``path`` read-only with every guard in place. Raises ``sqlite3.Error``."""
        limits = limits or QueryLimits()
        conn = sqlite3.connect(
            readonly_uri(path, immutable=immutable),
            uri=True,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=128,
        )
        try:
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_length)
            conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, limits.max_sql_length)
            conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limits.max_variables)
            conn.setlimit(sqlite3.SQLITE_LIMIT_COMPOUND_SELECT, limits.max_compound_select)
            conn.setlimit(sqlite3.SQLITE_LIMIT_WORKER_THREADS, 0)
            reader = cls(conn, path)
            conn.set_authorizer(reader._authorize)
            conn.set_progress_handler(reader._progress, PROGRESS_STEPS)
        except BaseException:
            conn.close()
            raise
        return reader

    # -- guards -----------------------------------------------------------------------------
    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action in _ALWAYS_ALLOWED:
            return _OK
        if action == sqlite3.SQLITE_FUNCTION:
            return _DENY if arg2 in _DENIED_FUNCTIONS else _OK
        if action == sqlite3.SQLITE_PRAGMA:
            if arg1 in _INTROSPECTION_PRAGMAS or (arg1 in _READ_PRAGMAS and arg2 is None):
                return _OK
            return _DENY
        if action == sqlite3.SQLITE_TRANSACTION and self._internal:
            return _OK
        return _DENY

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    # -- internal reads (ledger, position) --------------------------------------------------
    def _run_internal(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._internal = True
        self._deadline = math.inf
        try:
            return self.conn.execute(sql, params).fetchall()
        finally:
            self._internal = False

    def begin(self) -> None:
        """Open a read transaction: what follows sees one consistent state of the file."""
        self._run_internal(self._begin_sql)

    def end(self) -> None:
        """End the read transaction (if any), releasing the shared lock."""
        if self.conn.in_transaction:
            self._run_internal(self._commit_sql)

    def state(self) -> tuple[str, int]:
        """(stored position, schema version) as this connection sees it; call inside begin()."""
        (version,) = self._run_internal(self._version_sql)[0]
        try:
            rows = self._run_internal(self._position_sql)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            rows = []
        position = str(rows[0][0]) if rows else ledger.ZERO_POSITION
        return position, int(version)

    def command_status(self, command_id: str) -> ledger.CommandStatus:
        """The ledger's answer for ``command_id`` (reads only; the authorizer allows it)."""
        self._deadline = math.inf
        return command_status_or_unknown(self.conn, command_id)

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
    ) -> QueryResult:
        """Run one caller statement under the deadline, the row cap and the byte cap.

        ``escaped`` counts the extra bytes of JSON-in-JSON (a Function URL body), so the
        final answer, not just the rows, stays under the cap. Raises :class:`ReadError`.
        """
        cursor: sqlite3.Cursor | None = None
        self._deadline = deadline
        try:
            cursor = self.conn.execute(sql, params)
            description = cursor.description
            columns = [str(d[0]) for d in description] if description else []
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
            return QueryResult(columns, rows, truncated)
        except (sqlite3.Error, UnicodeDecodeError, OverflowError) as exc:
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


def command_status_or_unknown(conn: sqlite3.Connection, command_id: str) -> ledger.CommandStatus:
    """``ledger.command_status``, or "unknown" when the writer has not created the ledger yet."""
    try:
        return ledger.command_status(conn, command_id)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return ledger.CommandStatus(id=command_id, state="unknown")
