"""The pinned SQLite build: its version, the compile options the guards rely on, and the
one-statement rule :func:`efsqlite.core.engine.execute_one` restores on top of apsw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from efsqlite.core import engine

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_is_the_pinned_sqlite_release() -> None:
    # GIVEN the engine this process runs
    # WHEN it is asked for its release
    # THEN it is the pinned one, whatever SQLite Python's own sqlite3 links
    assert engine.sqlite_version() == engine.PINNED_VERSION
    assert apsw.sqlite_lib_version() == engine.PINNED_VERSION
    assert engine.engine_info()["sqlite"] == engine.PINNED_VERSION


def test_the_layer_and_the_package_pin_the_same_build() -> None:
    # GIVEN the project's dependencies and the layer's requirements
    pyproject = (ROOT / "pyproject.toml").read_text()
    layer = (ROOT / "shared" / "requirements.txt").read_text().splitlines()
    # WHEN the apsw pins are read from both
    pin = f"apsw=={engine.engine_info()['apsw']}"
    # THEN both name exactly the build the tests run
    assert f'"{pin}"' in pyproject
    assert pin in layer


def test_compile_options_hold_what_the_guards_rely_on() -> None:
    # GIVEN the build's compile options
    options = engine.compile_options()
    # THEN what the allow-lists need is there, and nothing that widens what SQL can reach
    assert options >= engine.REQUIRED_OPTIONS
    assert not engine.FORBIDDEN_OPTIONS & options
    # AND no option name slipped past the check by a prefix (ENABLE_STMTVTAB=1 and the like)
    assert not [o for o in options if o.split("=")[0] in engine.FORBIDDEN_OPTIONS]


@pytest.mark.parametrize("name", ["sqlite_stmt", "sqlite_dbpage", "bytecode"])
def test_introspection_tables_are_not_compiled_in(name: str) -> None:
    # GIVEN a connection of the engine, with no authorizer at all
    conn = apsw.Connection(":memory:")
    # WHEN a virtual table that exposes statements or raw pages is named
    # THEN SQLite does not know it
    with pytest.raises(apsw.SQLError, match="no such table"):
        conn.execute(f"SELECT * FROM {name}").fetchall()


def test_the_tokenizer_pointer_form_is_off() -> None:
    # GIVEN a connection of the engine
    conn = apsw.Connection(":memory:")
    # WHEN the FTS3 tokenizer function is asked for a tokenizer's pointer
    (value,) = conn.execute("SELECT fts3_tokenizer('simple')").fetchall()[0]
    # THEN it hands out nothing (the two-argument form could register a raw pointer)
    assert value is None
    assert conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, -1) == 0


def test_python_sqlite3_is_never_imported_by_the_engine() -> None:
    # GIVEN a fresh interpreter
    code = (
        "import sys, json; sys.path[:0] = ['shared'];"
        "import efsqlite.write.writer, efsqlite.read.reader;"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('apsw', 'sqlite3', '_sqlite3'))))"
    )
    # WHEN the writer and the reader are imported
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    # THEN only the pinned build is loaded: two SQLite libraries in one process would keep
    # separate POSIX lock bookkeeping
    assert json.loads(done.stdout) == ["apsw"]


@pytest.fixture
def conn() -> apsw.Connection:
    db = apsw.Connection(":memory:")
    db.execute("CREATE TABLE t (a)")
    return db


def _count(db: apsw.Connection) -> int:
    (n,) = db.execute("SELECT count(*) FROM t").fetchall()[0]
    return int(n)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
        "INSERT INTO t VALUES (1); -- note\n INSERT INTO t VALUES (2)",
        "INSERT INTO t VALUES (1) /* x */ ; ; /* y */ DELETE FROM t",
        "INSERT INTO t VALUES (1);SELECT 1",
    ],
)
def test_a_second_statement_is_refused_before_the_first_runs(
    conn: apsw.Connection, sql: str
) -> None:
    # GIVEN caller text holding two statements
    # WHEN it is run as one
    with pytest.raises(engine.MultipleStatementsError):
        list(engine.execute_one(conn, sql))
    # THEN not even the first ran
    assert _count(conn) == 0


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1);",
        "INSERT INTO t VALUES (1);;  ;",
        "INSERT INTO t VALUES (1); -- a trailing comment",
        "INSERT INTO t VALUES (1); /* a block comment */ ",
        "INSERT INTO t VALUES (1); /* never closed",
        "/* a leading comment */ INSERT INTO t VALUES (1)",
    ],
)
def test_one_statement_with_trailing_comments_runs_once(conn: apsw.Connection, sql: str) -> None:
    # GIVEN one statement with comments or semicolons around it
    # WHEN it is run
    list(engine.execute_one(conn, sql))
    # THEN it ran exactly once
    assert _count(conn) == 1


def test_a_missing_named_parameter_is_a_typed_error(conn: apsw.Connection) -> None:
    # GIVEN a statement with two named parameters and a mapping that has one
    # WHEN it is run
    with pytest.raises(engine.MissingBindingError, match=":b"):
        list(engine.execute_one(conn, "INSERT INTO t VALUES (:a || :b)", {"a": 1}))
    # THEN nothing ran
    assert _count(conn) == 0


def test_column_names_come_back_for_a_result_without_rows(conn: apsw.Connection) -> None:
    # GIVEN an empty table
    # WHEN a SELECT that finds nothing runs
    cursor, columns = engine.column_names(conn, "SELECT a, a + 1 AS b FROM t")
    # THEN its columns are named all the same (apsw's description is gone once it is done)
    assert columns == ["a", "b"]
    assert list(cursor) == []


def test_error_names_and_codes_come_from_the_result_codes(conn: apsw.Connection) -> None:
    # GIVEN a unique index and a row
    conn.execute("CREATE UNIQUE INDEX ta ON t (a); INSERT INTO t VALUES (1)")
    # WHEN a duplicate is inserted
    with pytest.raises(apsw.ConstraintError) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    # THEN the primary code and the extended name are read off the error
    assert engine.primary_code(caught.value) == apsw.SQLITE_CONSTRAINT
    assert engine.error_name(caught.value) == "SQLITE_CONSTRAINT_UNIQUE"
    assert engine.primary_code(ValueError("not SQLite")) is None


def test_a_handlers_execute_reports_rows_changed_and_the_last_rowid(conn: apsw.Connection) -> None:
    # GIVEN a named command's context on a table with two rows
    from efsqlite.write.commands import CommandContext

    conn.execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
    ctx = CommandContext(conn, "main", "c-1", 1)
    # WHEN the handler updates both, then inserts one
    updated = ctx.execute("UPDATE t SET a = a + 10")
    inserted = ctx.execute("INSERT INTO t VALUES (?)", (3,))
    missed = ctx.execute("UPDATE t SET a = 0 WHERE a = ?", (99,))
    # THEN it reads the counts a DB-API cursor would have given (handlers test rowcount == 0)
    assert (updated.rowcount, inserted.rowcount, missed.rowcount) == (2, 1, 0)
    assert inserted.lastrowid == 3
    # AND a second statement in the same text is refused before anything runs
    with pytest.raises(engine.MultipleStatementsError):
        ctx.execute("DELETE FROM t; DELETE FROM t")
    assert _count(conn) == 3
