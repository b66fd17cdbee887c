"""The hardened query path on real files written by the real Writer, in both read modes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from efsqlite.read.reader import Reader

from tests.support.reader_db import (
    ACCOUNTS,
    TOTAL,
    make_reader,
    make_writer,
    seed_accounts,
    tree_digest,
    write,
)

MODES = ["snapshot", "direct"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    write(
        writer,
        [("INSERT INTO blobs (id, data) VALUES (?, randomblob(?))", [i, 600]) for i in range(5)],
    )
    writer.close()
    return tmp_path


@pytest.fixture(params=MODES)
def reader(request: pytest.FixtureRequest, root: Path) -> Iterator[Reader]:
    r = make_reader(root, read_mode=request.param)
    yield r
    r.close()


def ask(reader: Reader, sql: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"db": "main", "sql": sql, **extra}
    if params is not None:
        payload["params"] = params
    return reader.handle(payload)


def error_type(answer: dict[str, Any]) -> str | None:
    return answer["error"]["type"] if "error" in answer else None


def hostile(target: Path) -> list[str]:
    return [
        f"ATTACH DATABASE '{target / 'evil.db'}' AS evil",
        f"VACUUM INTO '{target / 'copy.db'}'",
        "VACUUM",
        "PRAGMA query_only=0",
        "PRAGMA query_only = OFF",
        "PRAGMA user_version=99",
        "PRAGMA journal_mode=WAL",
        "PRAGMA writable_schema=1",
        "PRAGMA main.locking_mode=EXCLUSIVE",
        "SELECT load_extension('/tmp/libevil.so')",
        "SELECT 1; DELETE FROM accounts",
        "SELECT 1; ATTACH 'x.db' AS x",
        "ATTACH 'relative-evil.db' AS evil",
        "ATTACH ':memory:' AS m",
        "CREATE TABLE t (x)",
        "CREATE TEMP TABLE t (x)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE INDEX i ON accounts(balance)",
        "DROP TABLE accounts",
        "ALTER TABLE accounts ADD COLUMN y",
        "INSERT INTO accounts (id, name, balance) VALUES (99, 'x', 1)",
        "REPLACE INTO accounts (id, name, balance) VALUES (1, 'x', 1)",
        "UPDATE accounts SET balance = 0",
        "DELETE FROM accounts",
        "WITH x AS (SELECT 1) DELETE FROM accounts",
        "DELETE FROM _efsqlite_commands",
        "BEGIN",
        "BEGIN IMMEDIATE",
        "COMMIT",
        "SAVEPOINT s",
        "ANALYZE",
        "REINDEX",
        "DETACH main",
    ]


@pytest.mark.parametrize("mode", MODES)
def test_hostile_statements_are_refused_and_change_nothing(root: Path, mode: str) -> None:
    # GIVEN a warmed reader (its snapshot, if any, exists) and a digest of every file
    reader = make_reader(root, read_mode=mode)
    assert error_type(ask(reader, "SELECT 1")) is None
    target = root / "attack"
    target.mkdir()
    before = tree_digest(root)
    cwd_before = sorted(os.listdir(Path.cwd()))
    # WHEN each hostile statement is sent
    answers = {sql: ask(reader, sql) for sql in hostile(target)}
    # THEN every one is refused as not_allowed, non-retryable
    wrong = {sql: a for sql, a in answers.items() if error_type(a) != "NotAllowed"}
    assert wrong == {}
    assert all(a["error"]["retryable"] is False for a in answers.values())
    # AND no file was created or changed anywhere (data, snapshots, attack target, cwd)
    assert tree_digest(root) == before
    assert not any(target.iterdir())
    assert sorted(os.listdir(Path.cwd())) == cwd_before
    # AND the database still answers with its data
    assert ask(reader, "SELECT sum(balance) FROM accounts")["rows"] == [[TOTAL]]
    reader.close()


def test_read_pragmas_are_allowed(reader: Reader) -> None:
    # GIVEN a read-only introspection PRAGMA  WHEN asked  THEN it answers
    answer = ask(reader, "PRAGMA table_info(accounts)")
    assert [row[1] for row in answer["rows"]] == ["id", "name", "balance"]
    assert ask(reader, "PRAGMA user_version")["rows"] == [[1]]


def test_answer_shape_and_values(reader: Reader) -> None:
    # GIVEN a point query  WHEN asked with positional and named params  THEN the contract shape
    answer = ask(reader, "SELECT id, name, balance FROM accounts WHERE id = ?", [3])
    assert answer == {
        "columns": ["id", "name", "balance"],
        "rows": [[3, "acct-3", 1000]],
        "position": answer["position"],
        "schema_version": 1,
        "truncated": False,
        "stale": False,
    }
    assert answer["position"].isdigit() and int(answer["position"]) > 2**64
    named = ask(reader, "SELECT name FROM accounts WHERE id = :id", {"id": 4})
    assert named["rows"] == [["acct-4"]]
    # AND blobs come back as base64 objects, infinities as text
    blob = ask(reader, "SELECT data FROM blobs WHERE id = 0")["rows"][0][0]
    assert set(blob) == {"$blob"}
    assert ask(reader, "SELECT 1e999, -1e999")["rows"] == [["inf", "-inf"]]


def test_row_cap_truncates(reader: Reader) -> None:
    # GIVEN more rows than max_rows  WHEN asked  THEN max_rows rows and truncated
    answer = ask(reader, "SELECT id FROM accounts ORDER BY id", max_rows=3)
    assert answer["rows"] == [[0], [1], [2]]
    assert answer["truncated"] is True
    full = ask(reader, "SELECT id FROM accounts ORDER BY id", max_rows=ACCOUNTS)
    assert len(full["rows"]) == ACCOUNTS and full["truncated"] is False


@pytest.mark.parametrize("mode", MODES)
def test_byte_cap_truncates_then_refuses(root: Path, mode: str) -> None:
    # GIVEN a 3000-byte answer cap and 600-byte blobs (about 800 bytes as base64)
    reader = make_reader(root, read_mode=mode, max_response_bytes=3000)
    # WHEN all blobs are asked for  THEN the answer stops at the cap, marked truncated
    answer = ask(reader, "SELECT data FROM blobs ORDER BY id")
    assert 0 < len(answer["rows"]) < 5
    assert answer["truncated"] is True
    # WHEN one row alone is over the cap  THEN too_large
    assert error_type(ask(reader, "SELECT zeroblob(2500)")) == "TooLarge"
    # WHEN a value is over SQLite's length limit  THEN too_large at once
    assert error_type(ask(reader, "SELECT randomblob(2e9)")) == "TooLarge"
    assert error_type(ask(reader, "SELECT length(zeroblob(100000))")) == "TooLarge"
    reader.close()


def test_runaway_queries_stop_at_the_deadline(reader: Reader) -> None:
    # GIVEN a recursive CTE that never ends  WHEN asked with a short timeout  THEN timeout
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    answer = ask(reader, runaway, timeout_ms=100)
    assert error_type(answer) == "QueryTimeout"
    assert answer["error"]["retryable"] is False
    # AND a cross join grinding away stops too
    grind = "SELECT count(*) FROM " + ", ".join(f"accounts a{i}" for i in range(8))
    assert error_type(ask(reader, grind, timeout_ms=50)) == "QueryTimeout"
    # AND randomblob(2e9) is refused by the length limit
    assert error_type(ask(reader, "SELECT randomblob(2e9)", timeout_ms=100)) == "TooLarge"
    # AND the connection still serves the next query
    assert ask(reader, "SELECT count(*) FROM accounts")["rows"] == [[ACCOUNTS]]


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        ("SELECT ?", [], "InvalidRequest"),
        ("SELECT ?", [1, 2], "InvalidRequest"),
        ("SELECT :a", {"b": 1}, "InvalidRequest"),
        ("SELECT ?", [2**70], "InvalidRequest"),
        ("SELECT ?", [[1]], "InvalidRequest"),
        ("SELECT ?", [{"a": 1}], "InvalidRequest"),
        ("SELECT :a", {"a": [1]}, "InvalidRequest"),
        ("SELECT ?", "1", "InvalidRequest"),
        ("SELECT ?", 1, "InvalidRequest"),
        ("SELEC 1", None, "SQLError"),
        ("SELECT nope FROM accounts", None, "SQLError"),
        ("SELECT * FROM no_such_table", None, "SQLError"),
    ],
)
def test_bad_params_and_sql(reader: Reader, sql: str, params: Any, expected: str) -> None:
    # GIVEN a wrong parameter list or bad SQL  WHEN asked  THEN a typed, non-retryable error
    answer = ask(reader, sql, params)
    assert error_type(answer) == expected, answer
    assert answer["error"]["retryable"] is False


def test_unknown_database_and_bad_names(reader: Reader, root: Path) -> None:
    # GIVEN no database "other"  WHEN asked  THEN database_not_found, and nothing is created
    answer = reader.handle({"db": "other", "sql": "SELECT 1"})
    assert error_type(answer) == "DatabaseNotFound"
    assert not (root / "data" / "other.sqlite").exists()
    # AND names outside [a-z0-9_-]{1,64} are invalid requests, never paths
    for db in ["../data/main", "Main", "", "x" * 65, 7, None, "main.sqlite"]:
        assert error_type(reader.handle({"db": db, "sql": "SELECT 1"})) == "InvalidRequest", db


def test_huge_sql_is_refused(reader: Reader) -> None:
    # GIVEN a 200,000-character statement  WHEN asked  THEN invalid_request before SQLite
    huge = "SELECT " + "+".join(["1"] * 100_000)
    assert error_type(ask(reader, huge)) == "InvalidRequest"
