"""The one SQLite efsqlite runs: a pinned build, the same in Lambda, in the tests and locally.

Python's ``sqlite3`` links whatever SQLite the interpreter was built with (3.40.1 on these
machines, with ``sqlite_stmt`` and the two-argument ``fts3_tokenizer`` compiled in; the Lambda
runtime's is not documented), so behaviour and the attack surface would depend on the host.
efsqlite runs apsw's amalgamation instead, pinned in ``pyproject.toml`` and in the layer's
``requirements.txt`` (chosen in docs/architecture.md, "The pinned SQLite build"):

- :data:`PINNED_VERSION` is the SQLite every test runs; ``tests/unit/test_engine.py`` asserts
  it and the compile options that the allow-lists rely on (:data:`REQUIRED_OPTIONS`,
  :data:`FORBIDDEN_OPTIONS`), so a build that adds ``sqlite_stmt`` or ``sqlite_dbpage``
  fails the suite instead of reaching Lambda.
- apsw runs every statement of a string, where ``sqlite3`` refused a second one.
  :func:`execute_one` restores that rule for caller SQL: it looks at the text after the
  first statement before anything runs.
- Errors are ``apsw.Error`` subclasses carrying ``result`` and ``extendedresult``;
  :func:`primary_code` and :func:`error_name` read them, whatever the subclass.

DO import SQLite through this module (``from efsqlite.core import engine``), never ``sqlite3``.
DON'T open a database file with Python's ``sqlite3`` in a process that runs the engine while
the engine may hold a lock on it: two SQLite libraries in one process keep separate POSIX
lock bookkeeping, so one's ``close()`` drops the other's locks (sqlite.org/howtocorrupt.html,
"Multiple copies of SQLite linked into the same application"). Tests that only inspect a
file between batches may.
DON'T run caller SQL through ``conn.execute``: use :func:`execute_one`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import apsw

from efsqlite.core.exceptions import EfsqliteError

Connection = apsw.Connection
Error = apsw.Error

#: The SQLite release the layer ships and the tests run.
PINNED_VERSION = "3.54.1"
#: Compile options the guards rely on: FTS5 and JSON for the app, math functions for the
#: allow-list, DBSTAT only as a name the authorizer must deny.
REQUIRED_OPTIONS = frozenset({"ENABLE_FTS5", "ENABLE_MATH_FUNCTIONS", "THREADSAFE=1"})
#: Compile options that would widen what caller SQL can reach (``sqlite_stmt`` exposes the
#: writer's own statements, ``sqlite_dbpage`` raw pages, the tokenizer a raw pointer).
FORBIDDEN_OPTIONS = frozenset(
    {"ENABLE_STMTVTAB", "ENABLE_DBPAGE_VTAB", "ENABLE_FTS3_TOKENIZER", "ENABLE_BYTECODE_VTAB"}
)


class StatementError(EfsqliteError):
    """Caller text that SQLite would accept but efsqlite refuses before it runs."""


class MultipleStatementsError(StatementError):
    """Caller text held more than one statement; nothing of it ran."""


class MissingBindingError(StatementError):
    """A named parameter (``:name``) had no value in the mapping; nothing ran."""


#: What running caller SQL raises for a reason of SQL's own (catch these, not ``Exception``).
SQL_ERRORS: tuple[type[Exception], ...] = (apsw.Error, StatementError)


def sqlite_version() -> str:
    """The SQLite release linked into this process (``3.54.1``)."""
    return str(apsw.sqlite_lib_version())


def compile_options() -> frozenset[str]:
    """The build's compile options, as ``PRAGMA compile_options`` spells them."""
    return frozenset(str(option) for option in apsw.compile_options)


def engine_info() -> dict[str, str]:
    """What ``efsqlite status`` and the reader report: the SQLite release and its binding."""
    return {"sqlite": sqlite_version(), "apsw": str(apsw.apsw_version())}


def primary_code(exc: BaseException) -> int | None:
    """The primary result code (``SQLITE_BUSY`` and so on) of an SQLite error, else None."""
    code = getattr(exc, "result", None)
    return code & 0xFF if isinstance(code, int) and code >= 0 else None


def error_name(exc: BaseException) -> str:
    """The extended result code's name (``SQLITE_CONSTRAINT_UNIQUE``), or the primary's."""
    extended = getattr(exc, "extendedresult", None)
    if isinstance(extended, int):
        name = apsw.mapping_extended_result_codes.get(extended)
        if name is None:
            name = apsw.mapping_result_codes.get(extended & 0xFF)
        if isinstance(name, str):
            return name
    return "SQLITE_ERROR"


def execute_one(
    conn: apsw.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> apsw.Cursor:
    """Prepare ``sql`` as exactly one statement and start it; iterate the cursor for rows.

    Raises :class:`MultipleStatementsError` when anything but whitespace, comments and
    semicolons follows the first statement (checked before it runs), and
    :class:`MissingBindingError` for a named parameter absent from ``params``.
    """
    return _start(conn, sql, params, _SingleStatementCheck(sql, names=False))


def column_names(
    conn: apsw.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> tuple[apsw.Cursor, list[str]]:
    """:func:`execute_one` that also returns the result's column names (none run yet).

    apsw answers ``description`` only while a statement has rows left, so the names are
    read as the statement is about to run: a SELECT with no rows still names its columns.
    """
    check = _SingleStatementCheck(sql, names=True)
    return _start(conn, sql, params, check), check.columns


def _start(
    conn: apsw.Connection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any],
    check: _SingleStatementCheck,
) -> apsw.Cursor:
    cursor = conn.cursor()
    cursor.exec_trace = check
    try:
        cursor.execute(sql, params)
    except KeyError as exc:
        raise MissingBindingError(f"no value for the named parameter :{exc.args[0]}") from None
    return cursor


class _SingleStatementCheck:
    """An exec tracer: lets the first statement run only if nothing but comments follows."""

    __slots__ = ("columns", "names", "seen", "sql")

    def __init__(self, sql: str, *, names: bool) -> None:
        self.sql = sql
        self.names = names
        self.seen = False
        self.columns: list[str] = []

    def __call__(self, cursor: apsw.Cursor, statement: str, _bindings: object) -> bool:
        if self.seen:
            # apsw hands a trailing comment over as a "statement" of its own; the first
            # call already checked that nothing else follows.
            return True
        self.seen = True
        if not self.sql.startswith(statement) or _holds_statement(self.sql[len(statement) :]):
            raise MultipleStatementsError("You can only execute one statement at a time.")
        if self.names:
            self.columns = [str(column[0]) for column in cursor.description]
        return True


def _holds_statement(tail: str) -> bool:
    """True if ``tail`` holds anything but whitespace, ``;``, ``--`` and ``/* */`` comments.

    The same scan Python's ``sqlite3`` makes after preparing (``lstrip_sql``).
    """
    i, n = 0, len(tail)
    while i < n:
        ch = tail[i]
        if ch in " \t\n\r\f\v;":
            i += 1
        elif tail.startswith("--", i):
            end = tail.find("\n", i)
            if end < 0:
                return False
            i = end + 1
        elif tail.startswith("/*", i):
            end = tail.find("*/", i + 2)
            if end < 0:
                return False
            i = end + 2
        else:
            return True
    return False
