"""Hostile reads: the reader is read-only in fact, typed for any input, bounded in memory and time.

Every case goes through the real handler module (``functions/reader/app.py``, imported as on a
cold start with ``EFSQLITE_*`` settings) on real SQLite files written by the real Writer.
Cases that could hang, and those that lower SQLite's process-wide heap limit (it can only go
down), run the handler in a child process with a timeout. No input may reach the handler's
catch-all: an autouse fixture fails any test that logged a "reader bug".
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import apsw
import pytest
from efsqlite.core import engine
from efsqlite.core.exceptions import InvalidSettingError
from efsqlite.core.sqlpolicy import BUILTIN_FUNCTIONS
from efsqlite.read.answers import DatabaseStatusAnswer
from efsqlite.read.settings import ReaderSettings
from efsqlite.write.settings import WriterSettings
from efsqlite.write.writer import Writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load_handler_module
from tests.support.events import FakeLambdaContext
from tests.support.reader_db import function_url_event, tree_digest, write

REPO = Path(__file__).resolve().parents[2]
MODES = ["snapshot", "direct"]
SCHEMA = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);
CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
CREATE VIRTUAL TABLE docs USING fts5(body);
CREATE VIEW rich AS SELECT id, name FROM accounts WHERE balance >= 1000;
CREATE VIEW counted AS WITH c AS MATERIALIZED (SELECT id FROM accounts) SELECT count(*) AS n FROM c;
CREATE TABLE "MixedCase" (x INTEGER);
"""
SEED = [
    ("INSERT INTO accounts VALUES (1, 'ann', 1000), (2, 'bob', 5), (3, 'cy', 2000)", []),
    ("INSERT INTO docs (body) VALUES ('hello world'), ('bye world')", []),
    ('INSERT INTO "MixedCase" VALUES (7)', []),
]
ERROR_TYPES = {
    "InvalidRequest", "SQLError", "NotAllowed", "DatabaseNotFound", "RouteNotFound",
    "MethodNotAllowed", "QueryTimeout", "TooLarge", "NotYetAtPosition", "Recovering",
    "Unavailable",
}  # fmt: skip
POSITION_SQL = "SELECT value FROM _efsqlite_state WHERE key = 'position'"


# -- the world: a database the real writer made, and the real handler over it ---------------
def make_world(root: Path, *, blobs: int = 0) -> Writer:
    migrations = root / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / "0001_app.sql").write_text(SCHEMA)
    writer = Writer(
        WriterSettings(data_dir=root / "data", migrations_dir=migrations, databases="*")
    )
    write(writer, SEED)
    if blobs:
        fill = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) "
            "INSERT INTO blobs (data) SELECT randomblob(4000) FROM c"
        )
        write(writer, [(fill, [blobs])])
    return writer


def handler_env(root: Path, mode: str, name: str, **extra: str) -> dict[str, str]:
    env = {
        "EFSQLITE_DATA_DIR": str(root / "data"),
        "EFSQLITE_SNAPSHOT_DIR": str(root / f"snapshots-{name}"),
        "EFSQLITE_READ_MODE": mode,
        "EFSQLITE_MAX_STALENESS_MS": "0",
        "EFSQLITE_DEFAULT_TIMEOUT_MS": "200",
        "EFSQLITE_MAX_TIMEOUT_MS": "20000",
        "EFSQLITE_MAX_RESPONSE_BYTES": "200000",
        "EFSQLITE_QUERIES": "tests.support.reader_queries:queries",
    }
    env.update(extra)
    return env


def cold_start(env: dict[str, str]) -> ModuleType:
    """Import functions/reader/app.py afresh with ``env``, as Lambda's cold start does."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("EFSQLITE_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return load_handler_module("reader")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reader-hostile")
    make_world(root).close()
    return root


@pytest.fixture(scope="module", params=MODES)
def app(request: pytest.FixtureRequest, world: Path) -> Iterator[ModuleType]:
    module = cold_start(handler_env(world, request.param, request.param))
    yield module
    module.reader.close()


class _Bugs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_input_reaches_the_catch_all() -> Iterator[None]:
    bugs = _Bugs()
    logger = logging.getLogger("efsqlite.read.reader")
    logger.addHandler(bugs)
    yield
    logger.removeHandler(bugs)
    assert bugs.seen == [], "an input reached Reader.handle's catch-all"


def ask(app: ModuleType, payload: object) -> dict[str, Any]:
    answer: dict[str, Any] = app.lambda_handler(payload, FakeLambdaContext())
    check_typed(answer)
    return answer


def sql(app: ModuleType, text: str, **extra: Any) -> dict[str, Any]:
    return ask(app, {"db": "main", "sql": text, **extra})


def check_typed(answer: object) -> None:
    """A result, a command or database status, or a typed error; never ``internal``; strict
    UTF-8 JSON."""
    assert isinstance(answer, dict)
    json.dumps(answer, allow_nan=False, ensure_ascii=False).encode("utf-8")
    if "error" in answer:
        error = answer["error"]
        assert set(error) >= {"type", "message", "retryable"}, answer
        assert error["type"] in ERROR_TYPES, answer
        assert isinstance(error["retryable"], bool) and isinstance(error["message"], str)
        assert len(error["message"]) <= 1000
    elif "columns" in answer:
        assert isinstance(answer["rows"], list) and isinstance(answer["truncated"], bool)
    elif "command_id" in answer:
        assert answer["status"] in {"applied", "rejected", "pending", "unknown"}, answer
    else:
        DatabaseStatusAnswer.from_json(answer)  # raises AnswerFormatError if malformed


def check_http(response: object) -> dict[str, Any]:
    assert isinstance(response, dict)
    assert isinstance(response["statusCode"], int) and response["statusCode"] != 500, response
    body: dict[str, Any] = json.loads(response["body"].encode("utf-8"))
    check_typed(body)
    return body


def kind(answer: dict[str, Any]) -> str | None:
    return answer["error"]["type"] if "error" in answer else None


# -- 1. read-only in fact: the allow-list authorizer ------------------------------------------
REFUSED = [
    "SELECT * FROM dbstat",
    "SELECT name FROM dbstat('main')",
    "SELECT * FROM pragma_compile_options",
    "SELECT 1 FROM pragma_compile_options",
    "SELECT * FROM rich, pragma_compile_options",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM pragma_query_only",
    "PRAGMA compile_options",
    "PRAGMA busy_timeout = 0",
    "SELECT fts3_tokenizer('x')",
    "SELECT FTS3_TOKENIZER('simple')",
    "SELECT fts5(NULL)",
    "SELECT load_extension('/tmp/libevil.so')",
    "SELECT sqlite_compileoption_used('ENABLE_FTS5')",
    "ATTACH DATABASE '{target}/evil.db' AS evil",
    "ATTACH ':memory:' AS m",
    "VACUUM INTO '{target}/copy.db'",
    "VACUUM",
    "PRAGMA query_only=0",
    "PRAGMA QUERY_ONLY = OFF",
    "PRAGMA writable_schema=1",
    "UPDATE sqlite_master SET sql = ''",
    "UPDATE sqlite_schema SET name = 'x' WHERE name = 'accounts'",
    "DELETE FROM sqlite_schema",
    "INSERT INTO docs (body) VALUES ('x')",
    "INSERT INTO docs (docs) VALUES ('optimize')",
    "UPDATE accounts SET balance = 0",
    "CREATE TEMP TABLE t (x)",
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
]


@pytest.mark.parametrize("text", REFUSED)
def test_refused_sql_is_not_allowed(app: ModuleType, world: Path, text: str) -> None:
    # GIVEN SQL that reaches outside the app's own data, writes, or runs a transaction
    # WHEN it is sent  THEN the typed, non-retryable not_allowed
    answer = sql(app, text.format(target=world / "attack"))
    assert kind(answer) == "NotAllowed", answer
    assert answer["error"]["retryable"] is False


@pytest.mark.parametrize("mode", MODES)
def test_refused_sql_changes_no_file(tmp_path: Path, mode: str) -> None:
    # GIVEN a warmed reader and a digest of every file around it
    make_world(tmp_path).close()
    app = cold_start(handler_env(tmp_path, mode, "digest"))
    assert kind(sql(app, "SELECT 1")) is None
    target = tmp_path / "attack"
    target.mkdir()
    before = tree_digest(tmp_path)
    cwd = sorted(os.listdir(Path.cwd()))
    # WHEN every refused statement is sent
    for text in REFUSED:
        assert kind(sql(app, text.format(target=target))) == "NotAllowed"
    # THEN no file was created or changed anywhere, and the data still answers
    assert tree_digest(tmp_path) == before
    assert not any(target.iterdir()) and sorted(os.listdir(Path.cwd())) == cwd
    assert sql(app, "SELECT sum(balance) FROM accounts")["rows"] == [[3005]]
    app.reader.close()


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("SELECT * FROM sqlite_dbpage", "ENABLE_DBPAGE_VTAB"),
        ("SELECT * FROM sqlite_stmt", "ENABLE_STMTVTAB"),
        ("SELECT sql FROM SQLITE_STMT", "ENABLE_STMTVTAB"),
        ("SELECT * FROM bytecode('SELECT 1')", "ENABLE_BYTECODE_VTAB"),
    ],
)
def test_introspection_tables_are_refused_compiled_in_or_not(
    app: ModuleType, text: str, option: str
) -> None:
    # GIVEN the pinned build, which leaves these tables out (tests/unit/test_engine.py)
    # WHEN one is read  THEN refused either way: not_allowed by the authorizer if a build
    # compiles it in, "no such table" otherwise
    answer = sql(app, text)
    if option in engine.compile_options():
        assert kind(answer) == "NotAllowed", answer
    else:
        assert kind(answer) == "SQLError" and "no such table" in answer["error"]["message"]


def test_a_real_write_to_the_schema_table_is_refused_by_sqlite(app: ModuleType) -> None:
    # GIVEN the authorizer allows "UPDATE" of sqlite_master (a virtual table's constructor
    # declares its columns that way)  WHEN a caller really writes it  THEN SQLite says no
    answer = sql(app, "UPDATE sqlite_master SET sql = NULL")
    assert kind(answer) == "NotAllowed"
    assert "may not be modified" in answer["error"]["message"]
    # AND the virtual table whose constructor needed it still answers
    assert sql(app, "SELECT count(*) FROM docs")["rows"] == [[2]]


ALLOWED: list[tuple[str, list[list[Any]]]] = [
    ("SELECT body FROM docs WHERE docs MATCH 'hello'", [["hello world"]]),
    (
        "SELECT highlight(docs, 0, '[', ']') FROM docs('world') ORDER BY rowid",
        [["hello [world]"], ["bye [world]"]],
    ),
    (
        "SELECT snippet(docs, 0, '[', ']', '...', 4) FROM docs WHERE docs MATCH 'bye' "
        "ORDER BY bm25(docs)",
        [["[bye] world"]],
    ),
    ("SELECT count(*) FROM docs", [[2]]),
    ("SELECT value FROM json_each('[1, 2, 3]')", [[1], [2], [3]]),
    ("SELECT key FROM json_tree('{\"a\": {\"b\": 1}}') WHERE type = 'integer'", [["b"]]),
    ("SELECT count(*) FROM JSON_EACH('[1, 2]')", [[2]]),
    ("SELECT name FROM rich ORDER BY id", [["ann"], ["cy"]]),
    ("SELECT count(*) FROM rich", [[2]]),
    ("SELECT n FROM counted", [[3]]),
    ("WITH c(x) AS (SELECT 1 UNION ALL SELECT 2) SELECT count(*) FROM c", [[2]]),
    (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) "
        "SELECT sum(x) FROM c",
        [[15]],
    ),
    ("WITH dbstat AS (SELECT 7 AS v) SELECT count(*), max(v) FROM dbstat", [[1, 7]]),
    (
        "SELECT id, sum(balance) OVER (ORDER BY id), row_number() OVER (ORDER BY balance DESC) "
        "FROM accounts ORDER BY id",
        [[1, 1000, 2], [2, 1005, 3], [3, 3005, 1]],
    ),
    (
        "SELECT name FROM pragma_table_info('accounts') ORDER BY cid",
        [["id"], ["name"], ["balance"]],
    ),
    ("SELECT count(*) FROM PRAGMA_TABLE_INFO('accounts')", [[3]]),
    ("SELECT user_version FROM pragma_user_version", [[1]]),
    ("PRAGMA user_version", [[1]]),
    ("SELECT x FROM mixedcase", [[7]]),
    ("SELECT X FROM MIXEDCASE", [[7]]),
    ("SELECT count(*) FROM sqlite_schema WHERE name = 'accounts'", [[1]]),
    ("SELECT sqrt(16), abs(-2), upper('a'), typeof(zeroblob(1))", [[4.0, 2, "A", "blob"]]),
    ("SELECT a FROM (SELECT 1 AS a) AS sub", [[1]]),
]


@pytest.mark.parametrize(("text", "rows"), ALLOWED)
def test_the_apps_own_reads_work(app: ModuleType, text: str, rows: list[list[Any]]) -> None:
    # GIVEN the app's tables, FTS5 table, views, CTEs, JSON and pragma table functions
    # WHEN read  THEN they answer
    answer = sql(app, text)
    assert kind(answer) is None, answer
    assert answer["rows"] == rows


def test_pragma_introspection_is_case_insensitive(app: ModuleType) -> None:
    # GIVEN an allowed PRAGMA written in upper case  WHEN sent  THEN it answers
    assert len(sql(app, "PRAGMA TABLE_INFO(accounts)")["rows"]) == 3


@pytest.mark.parametrize("mode", MODES)
def test_the_text_of_internal_statements_gets_no_privilege(tmp_path: Path, mode: str) -> None:
    # GIVEN a reader that has run its own BEGIN, COMMIT and position query already
    writer = make_world(tmp_path)
    app = cold_start(handler_env(tmp_path, mode, "Internal"))
    first = sql(app, "SELECT count(*) FROM accounts")
    # WHEN a caller sends the exact text of those statements
    assert kind(sql(app, "BEGIN")) == "NotAllowed"
    assert kind(sql(app, "COMMIT")) == "NotAllowed"
    assert kind(sql(app, "BEGIN /* efsqlite */")) == "NotAllowed"
    raw = sql(app, POSITION_SQL)
    assert int(raw["rows"][0][0]) == int(first["position"])
    listed = sql(app, "SELECT lower(name) FROM sqlite_schema WHERE type IN ('table', 'view')")
    assert ["accounts"] in listed["rows"]
    # THEN no transaction or lock was left behind: the writer commits and the reader sees it
    _, position = write(writer, [("UPDATE accounts SET balance = balance + 1 WHERE id = 2", [])])
    after = sql(app, "SELECT balance FROM accounts WHERE id = 2", min_position=position)
    assert after["rows"] == [[6]] and after["position"] == position
    if mode == "direct":
        assert not app.reader._direct["main"].conn.in_transaction
    writer.close()
    app.reader.close()


def test_extra_functions_are_allowed_case_insensitively(tmp_path: Path) -> None:
    # GIVEN a deployer who lists a function (in another case than SQL uses)
    make_world(tmp_path).close()
    env = handler_env(tmp_path, "snapshot", "extra")
    plain = cold_start(env)
    listed = cold_start({**env, "EFSQLITE_EXTRA_FUNCTIONS": "Other_Fn, SQLITE_COMPILEOPTION_USED"})
    probe = "SELECT sqlite_compileoption_used('ENABLE_FTS5')"
    # WHEN it is called  THEN only the reader that lists it answers
    assert kind(sql(plain, probe)) == "NotAllowed"
    assert sql(listed, probe)["rows"] == [[1]]
    plain.reader.close()
    listed.reader.close()


def test_direct_mode_reads_tables_a_migration_adds(tmp_path: Path) -> None:
    # GIVEN a direct-mode reader that has read the schema already
    make_world(tmp_path).close()
    app = cold_start(handler_env(tmp_path, "direct", "migrate"))
    assert kind(sql(app, "SELECT count(*) FROM accounts")) is None
    assert kind(sql(app, "SELECT count(*) FROM later")) == "SQLError"
    # WHEN the writer's next cold start applies a migration that adds a table
    (tmp_path / "migrations" / "0002_later.sql").write_text("CREATE TABLE later (x INTEGER);")
    writer = Writer(
        WriterSettings(
            data_dir=tmp_path / "data", migrations_dir=tmp_path / "migrations", databases="*"
        )
    )
    writer.database("main")
    writer.close()
    # THEN the reader's next query may read it (the schema cookie moved)
    answer = sql(app, "SELECT count(*) FROM later")
    assert answer["rows"] == [[0]] and answer["schema_version"] == 2
    app.reader.close()


# -- 2. every answer typed, for any input ----------------------------------------------------
TYPED: list[tuple[object, str | None]] = [
    ({"db": "main", "sql": "SELECT '\udc80'"}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT ?", "params": ["\ud800"]}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT :a", "params": {"a": "x\udfff"}}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT 1", "params": {"\udc80": 1}}, "InvalidRequest"),
    ({"db": "ma\udc80in", "sql": "SELECT 1"}, "InvalidRequest"),
    ({"db": "main", "command_id": "c-\udc80"}, "InvalidRequest"),
    ({"db": "main", "query": "total\udc80"}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT 1", "\udc80": 1}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT 1\x00"}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT ?", "params": [2**64]}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT ?", "params": [-(2**63) - 1]}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT :a", "params": {"a": 2**100}}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT ?", "params": [2**63 - 1]}, None),
    ({"db": "main", "sql": "SELECT ?", "params": ["a\x00b"]}, None),
    ({"db": "x" * 5_000_000, "sql": "SELECT 1"}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT 1", **{f"k{i}": i for i in range(20_000)}}, "InvalidRequest"),
    ({"db": "main", "sql": "SELECT CAST(x'ff' AS TEXT)"}, "SQLError"),
    ({"db": "main", "sql": "SELECT length('" + "x" * 99_970 + "') AS n"}, None),
    (None, "InvalidRequest"),
    (0, "InvalidRequest"),
    (1.5, "InvalidRequest"),
    (True, "InvalidRequest"),
    ("SELECT 1", "InvalidRequest"),
    ([], "InvalidRequest"),
    ([{"db": "main", "sql": "SELECT 1"}], "InvalidRequest"),
]


@pytest.mark.parametrize(("payload", "expected"), TYPED, ids=range(len(TYPED)))
def test_direct_invoke_answers_are_typed(
    app: ModuleType, payload: object, expected: str | None
) -> None:
    # GIVEN a payload with lone surrogates, NULs, huge ints or names, or no object at all
    # WHEN invoked  THEN the typed answer (checked strict UTF-8 JSON, message capped)
    assert kind(ask(app, payload)) == expected


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"db": "main", "sql": "SELECT '\udc80'"}, "'sql' is not valid Unicode"),
        ({"db": "main", "sql": "SELECT 1\x00"}, "'sql' contains a NUL character"),
        ({"db": "main", "sql": "SELECT ?", "params": ["\ud800"]}, "params[0] is not valid Unicode"),
        ({"db": "main", "sql": "SELECT ?", "params": [2**64]}, "beyond SQLite's 64-bit integers"),
        ({"db": "main", "command_id": "c-\udc80"}, "'command_id' is not valid Unicode"),
    ],
)
def test_caller_text_is_checked_before_sqlite_sees_it(
    app: ModuleType, payload: dict[str, Any], says: str
) -> None:
    # GIVEN text SQLite cannot take  WHEN sent  THEN refused by the request check, which says why
    answer = ask(app, payload)
    assert kind(answer) == "InvalidRequest" and says in answer["error"]["message"], answer


def test_the_authorizer_decides_by_allow_list(world: Path) -> None:
    # GIVEN a hardened connection on the real file (the guards behind the authorizer, mode=ro
    # and query_only, would refuse some of these too, so ask the authorizer itself)
    from efsqlite.read.connection import ReadConnection

    conn = ReadConnection.open(world / "data" / "main.sqlite", immutable=True)
    decide = conn._authorize
    ok, deny = apsw.SQLITE_OK, apsw.SQLITE_DENY
    # THEN it allows the schema table's "update" only, reads of known names only
    assert decide(apsw.SQLITE_UPDATE, "sqlite_master", "sql", "main", None) == ok
    assert decide(apsw.SQLITE_UPDATE, "accounts", "balance", "main", None) == deny
    assert decide(apsw.SQLITE_READ, "Accounts", "id", "main", None) == ok
    assert decide(apsw.SQLITE_READ, "sqlite_stmt", "sql", "main", None) == deny
    assert decide(apsw.SQLITE_READ, "nope", "x", None, None) == deny
    # a FROM item with no column used (count(*), a CTE's name) carries no value: allowed
    assert decide(apsw.SQLITE_READ, "nope", "", None, None) == ok
    assert decide(apsw.SQLITE_FUNCTION, None, "abs", None, None) == ok
    assert decide(apsw.SQLITE_FUNCTION, None, "sqlite_offset", None, None) == deny
    for action in (apsw.SQLITE_TRANSACTION, apsw.SQLITE_ATTACH, apsw.SQLITE_INSERT):
        assert decide(action, "BEGIN", None, None, None) == deny
    conn.close()


def test_named_placeholders_given_a_list_bind_by_position_even_when_warnings_are_errors(
    app: ModuleType,
) -> None:
    # GIVEN warnings turned into errors
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # WHEN :name placeholders get a list
        answer = sql(app, "SELECT :a, :b, :a", params=[1, 2])
        short = sql(app, "SELECT :a, :b", params=[1])
    # THEN they bind in order of first appearance, as SQLite numbers them; too few values
    # is invalid_request, not the catch-all
    assert answer["rows"] == [[1, 2, 1]], answer
    assert kind(short) == "InvalidRequest", short


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def url_event(method: str, path: str, **fields: Any) -> dict[str, Any]:
    event = function_url_event(method, path)
    event.update(fields)
    return event


URL_CASES: list[tuple[dict[str, Any], int]] = [
    (url_event("POST", "/query", body='{"db": "main", "sql": "SELECT \'\udc80\'"}'), 400),
    (url_event("POST", "/query", body='{"db": "main", "sql": "SELECT \'\\udc80\'"}'), 400),
    (url_event("POST", "/query", body="\udc80", isBase64Encoded=True), 400),
    (url_event("POST", "/query", body=b64(b'\xff\xfe{"db": "main"}'), isBase64Encoded=True), 400),
    (
        url_event(
            "POST",
            "/query",
            body=b64('{"db": "main", "sql": "SELECT 1"}'.encode("utf-16")),
            isBase64Encoded=True,
        ),
        400,
    ),
    (
        url_event(
            "POST",
            "/query",
            body=b64(b'{"db": "main", "sql": "SELECT \'\xed\xb2\x80\'"}'),  # a surrogate, in UTF-8
            isBase64Encoded=True,
        ),
        400,
    ),
    (url_event("POST", "/query", body='{"db": "main", "sql": "SELECT ?", "params": [1e999]}'), 200),
    (url_event("POST", "/query", body='{"db": "main", "sql": "SELECT 1", "max_rows": 1e999}'), 400),
    (url_event("POST", "/query", body='{"db": "main", "sql": "SELECT ?", "params": [NaN]}'), 200),
    (
        url_event(
            "POST",
            "/query",
            body='{"db": "main", "sql": "SELECT ?", "params": [' + "9" * 5000 + "]}",
        ),
        400,
    ),
    (url_event("GET", "/commands/c-\udc80", queryStringParameters={"db": "main"}), 400),
    (url_event("GET", "/commands/%ff%fe", queryStringParameters={"db": "main"}), 200),
    (url_event("GET", "/commands/%ED%B2%80", queryStringParameters={"db": "main"}), 200),
    (url_event("GET", "/commands/c-1", queryStringParameters={"db": "ma\udc80in"}), 400),
    (url_event("GET", "/commands/c-1", queryStringParameters={"db": ["main"]}), 400),
    (url_event("GET", "/commands/c-1", queryStringParameters="db=main"), 400),
    (url_event("GET", "/databases/main"), 200),
    (url_event("GET", "/databases/..%2F..%2Fetc%2Fpasswd"), 400),
    (url_event("GET", "/databases/main/../other"), 400),
    (url_event("GET", "/databases/%ff%fe"), 400),
    (url_event("GET", "/databases/ma\udc80in"), 400),
    (url_event("GET", "/databases/" + "a" * 100_000), 400),
    (url_event("DELETE", "/databases/main"), 405),
    (url_event("GET", "/qu\udc80ery", rawQueryString="\udc80"), 404),
    (url_event("GET", "/query\x00"), 404),
    (url_event("\udc80", "/query"), 405),
    (url_event("POST", "/query", body=b'{"db": "main"}'), 400),
    (url_event("POST", "/query", body='{"db": "main", "sql": "' + "[" * 100_000 + '"}'), 400),
    (url_event("POST", "/query", body="[" * 100_000), 400),
    (url_event("POST", "/query", body='{"db": "main", "sql": 1}', rawPath=7), 404),
]


@pytest.mark.parametrize(("event", "status"), URL_CASES, ids=range(len(URL_CASES)))
def test_function_url_answers_are_typed(
    app: ModuleType, event: dict[str, Any], status: int
) -> None:
    # GIVEN a Function URL event with surrogates, non-UTF-8 or non-JSON bodies, odd paths
    # WHEN handled  THEN an HTTP answer with a typed body in strict UTF-8 JSON
    response = app.lambda_handler(event, FakeLambdaContext())
    check_http(response)
    assert response["statusCode"] == status, response


def test_a_huge_echo_is_cut_to_the_message_cap(app: ModuleType) -> None:
    # GIVEN a 5 MB database name (quoted in its error message)
    answer = ask(app, {"db": "\udc80" * 5_000_000, "sql": "SELECT 1"})
    # THEN the message is cut, and its surrogates are escaped text
    assert kind(answer) == "InvalidRequest"
    assert len(answer["error"]["message"]) <= 1000
    assert "\\udc80" in answer["error"]["message"]


# -- 3. memory bounded by SQLite's heap limit -------------------------------------------------
CHILD = """
import importlib.util, json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/shared"]
path = sys.argv[1] + "/functions/reader/app.py"
spec = importlib.util.spec_from_file_location("reader_app", path)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
print(json.dumps({"heap_limit": app.reader.heap_limit}), flush=True)
for event in json.loads(sys.stdin.read()):
    started = time.monotonic()
    answer = app.lambda_handler(event, None)
    print(json.dumps({"elapsed": time.monotonic() - started, "answer": answer}), flush=True)
"""


def run_child(
    env: dict[str, str], events: list[object], timeout: float = 60
) -> tuple[int, list[dict[str, Any]]]:
    """The real handler in a child process: (heap limit, [{elapsed, answer}, ...])."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("EFSQLITE_")}
    child_env.update(env)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO)],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=child_env,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return int(lines[0]["heap_limit"]), lines[1:]


MANY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 500000) "
HUNGRY = [
    MANY + "SELECT count(*) FROM (SELECT hex(randomblob(40)) AS h FROM c GROUP BY h)",
    MANY + "SELECT x FROM c ORDER BY randomblob(100)",
    MANY + "SELECT count(DISTINCT hex(randomblob(40))) FROM c",
]


@pytest.mark.parametrize("mode", MODES)
def test_memory_hungry_queries_answer_too_large_under_the_heap_limit(
    world: Path, mode: str
) -> None:
    # GIVEN a reader whose SQLite heap is capped at 16 MB
    env = handler_env(world, mode, f"heap-{mode}", EFSQLITE_MAX_HEAP_MB="16")
    queries = [{"db": "main", "sql": text, "timeout_ms": 15_000} for text in HUNGRY]
    small = {"db": "main", "sql": "SELECT count(*) FROM accounts"}
    # WHEN queries that sort, group or dedupe 500,000 rows run, then a small one
    limit, answers = run_child(env, [*queries, small])
    # THEN each memory-hungry query is too_large (non-retryable), and the reader lives on
    assert limit == 16 * 1024 * 1024
    for done in answers[:-1]:
        assert kind(done["answer"]) == "TooLarge", done
        assert done["answer"]["error"]["retryable"] is False
        assert "EFSQLITE_MAX_HEAP_MB" in done["answer"]["error"]["message"]
    assert answers[-1]["answer"]["rows"] == [[3]]


def test_the_heap_limit_defaults_to_half_the_lambda_memory(world: Path) -> None:
    # GIVEN Lambda's memory size variable and no EFSQLITE_MAX_HEAP_MB
    env = handler_env(world, "snapshot", "heap-default", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="96")
    # WHEN the handler starts  THEN SQLite's hard heap limit is half of it
    limit, _ = run_child(env, [])
    assert limit == 48 * 1024 * 1024


# -- 4. the deadline holds, snapshot refresh and lock waits included ------------------------
#: Slack on top of a deadline, for the interpreter and one backup step: the behaviour under
#: test is the deadline itself, so these are the only wall-clock bounds in this file.
SLACK_S = 0.1
COUNT = {"db": "main", "sql": "SELECT count(*), sum(balance) FROM accounts"}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Writer]]:
    """A 246 MB database (60,000 blobs of 4,000 bytes).

    Measured here: a full refresh takes about 0.25 s, and its backup alone, in one step, about
    0.17 s: more than SLACK_S, so a backup that did not check the deadline between its steps
    fails these tests.
    """
    root = tmp_path_factory.mktemp("reader-big")
    writer = make_world(root, blobs=60_000)
    yield root, writer
    writer.close()


def timed(app: ModuleType, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    answer = ask(app, payload)
    return time.monotonic() - started, answer


#: Refreshes that copy the whole file (a patch after a small write is too quick to time out).
FULL_COPIES = {"EFSQLITE_SNAPSHOT_PATCH": "false"}


def store_files(app: ModuleType) -> list[str]:
    return sorted(path.suffix for path in app.reader._store.folder.iterdir())


def touch(writer: Writer) -> str:
    """A command that moves the position and changes no row."""
    return write(writer, [("UPDATE accounts SET balance = balance WHERE id = 1", [])])[1]


def test_refresh_stops_at_the_deadline_and_serves_the_last_good_copy(
    big: tuple[Path, Writer],
) -> None:
    # GIVEN a snapshot-mode reader whose first full refresh took `full` seconds
    root, writer = big
    app = cold_start(handler_env(root, "snapshot", "deadline", **FULL_COPIES))
    full, first = timed(app, dict(COUNT, timeout_ms=15_000))
    assert first["stale"] is False
    # AND the source moves on
    touch(writer)
    # WHEN a query comes with a tenth of that time
    timeout_ms = max(1, int(full * 100))
    elapsed, answer = timed(app, dict(COUNT, timeout_ms=timeout_ms))
    # THEN it answers within its deadline from the last good copy, marked stale
    assert elapsed <= timeout_ms / 1000 + SLACK_S, (elapsed, full)
    assert answer["stale"] is True and answer["position"] == first["position"]
    assert answer["rows"] == first["rows"]
    # AND the abandoned copy is gone; a later query with time enough refreshes
    assert store_files(app) == [".sqlite"]
    fresh = ask(app, dict(COUNT, timeout_ms=15_000))
    assert fresh["stale"] is False and int(fresh["position"]) > int(first["position"])
    app.reader.close()


def test_a_first_refresh_out_of_time_is_retryable_and_leaves_no_file(
    big: tuple[Path, Writer],
) -> None:
    # GIVEN a reader with no snapshot yet  WHEN a 1 ms query comes
    root, _ = big
    app = cold_start(handler_env(root, "snapshot", "first", **FULL_COPIES))
    elapsed, answer = timed(app, dict(COUNT, timeout_ms=1))
    # THEN unavailable (retryable) within the deadline, and no copy left behind
    assert kind(answer) == "Unavailable" and answer["error"]["retryable"] is True, answer
    assert elapsed <= 0.001 + SLACK_S
    assert store_files(app) == []
    app.reader.close()


def test_min_position_out_of_time_is_retryable_with_the_position(big: tuple[Path, Writer]) -> None:
    # GIVEN a reader with a snapshot, and a write it has not copied yet
    root, writer = big
    app = cold_start(handler_env(root, "snapshot", "wait", **FULL_COPIES))
    first = ask(app, dict(COUNT, timeout_ms=15_000))
    position = touch(writer)
    # WHEN a 2 ms query asks for that write
    elapsed, answer = timed(app, dict(COUNT, timeout_ms=2, min_position=position))
    # THEN a retryable error naming the position it has, within the deadline
    assert kind(answer) == "Unavailable" and answer["error"]["retryable"] is True, answer
    assert answer["error"]["position"] == first["position"]
    assert elapsed <= 0.002 + SLACK_S
    app.reader.close()


def test_a_patch_out_of_time_serves_the_last_good_copy_and_leaves_no_file(
    big: tuple[Path, Writer],
) -> None:
    # GIVEN a reader with a snapshot (and its spare), then a write that changes 6,000 pages
    root, writer = big
    app = cold_start(handler_env(root, "snapshot", "patch"))
    first = ask(app, dict(COUNT, timeout_ms=15_000))
    write(writer, [("UPDATE blobs SET data = randomblob(4000) WHERE id % 10 = 0", [])])
    # WHEN a 1 ms query comes  THEN the patch stops at the deadline: the old copy, stale
    elapsed, answer = timed(app, dict(COUNT, timeout_ms=1))
    assert answer["stale"] is True and answer["position"] == first["position"], answer
    assert elapsed <= 0.001 + SLACK_S
    # AND the half-patched spare is gone, never to be served: only the current copy is left
    assert store_files(app) == [".sqlite"]
    # AND with time enough the next query copies the whole file, then patches again
    fresh = ask(app, dict(COUNT, timeout_ms=15_000))
    assert fresh["stale"] is False and int(fresh["position"]) > int(first["position"])
    snap = app.reader._snapshots["main"]
    assert snap.last_full_copy_reason == "no spare copy of this log segment to patch"
    touch(writer)
    assert ask(app, dict(COUNT, timeout_ms=15_000))["stale"] is False
    assert snap.last_refresh.patched is True
    app.reader.close()


def test_quick_check_is_bounded_by_the_deadline(
    big: tuple[Path, Writer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a copy made in one read (so only the check can see the deadline)
    root, writer = big
    monkeypatch.setattr("efsqlite.read.snapshot.COPY_CHUNK_BYTES", 1 << 40)
    app = cold_start(handler_env(root, "snapshot", "check", **FULL_COPIES))
    first = ask(app, dict(COUNT, timeout_ms=15_000))
    touch(writer)
    # WHEN a 1 ms query comes  THEN the check stops at the deadline: the old copy, stale
    answer = ask(app, dict(COUNT, timeout_ms=1))
    assert answer["stale"] is True and answer["position"] == first["position"]
    assert store_files(app) == [".sqlite"]
    app.reader.close()


LOCKER = """
import apsw, sys, time
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_held_lock_is_waited_for_only_until_the_deadline(tmp_path: Path, mode: str) -> None:
    # GIVEN a reader with a 5 s busy timeout that has answered once (a snapshot exists)
    make_world(tmp_path).close()
    app = cold_start(handler_env(tmp_path, mode, "lock", EFSQLITE_BUSY_TIMEOUT_MS="5000"))
    first = ask(app, dict(COUNT, timeout_ms=5000))
    # AND another process holding an exclusive lock on the file
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(tmp_path / "data" / "main.sqlite")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        # WHEN a 200 ms query comes
        elapsed, answer = timed(app, dict(COUNT, timeout_ms=200))
    finally:
        locker.kill()
        locker.wait(timeout=30)
    # THEN it answers by its deadline, not after the busy timeout
    assert elapsed <= 0.2 + SLACK_S, elapsed
    if mode == "snapshot":
        assert answer["stale"] is True and answer["rows"] == first["rows"]
    else:
        assert kind(answer) == "Unavailable" and answer["error"]["retryable"] is True
    # AND once the lock is gone the configured busy timeout applies again
    assert kind(ask(app, {"db": "main", "command_id": "c-1"})) is None
    app.reader.close()


def test_a_single_step_printf_answers_within_its_deadline(world: Path) -> None:
    # GIVEN a reader in a child process (this could hang). SQLite before 3.54 built this
    # printf in one VM step (3.6 s on 3.40.1), which the progress handler cannot interrupt;
    # the pinned 3.54.1 refuses it at once (too big: bench/bench_single_step.py)
    env = handler_env(world, "direct", "printf")
    event = {"db": "main", "sql": "SELECT printf('%.*c', 2147483647, 'x')", "timeout_ms": 100}
    # WHEN the one-step printf runs with a 100 ms deadline
    _, [done] = run_child(env, [event])
    # THEN a typed answer arrives by the deadline
    check_typed(done["answer"])
    assert done["elapsed"] <= 0.1 + SLACK_S, done


#: Caller SQL whose one function call runs for tens of seconds in one VM step with SQLite's own
#: functions (bench/bench_single_step.py rates), values within the 5 MB length limit.
SINGLE_STEP_SQL = {
    "like": "SELECT printf('%.*c', 3000000, 'a') LIKE '%' || printf('%.*c', 40000, 'a') || 'b'",
    "glob": "SELECT printf('%.*c', 3000000, 'a') GLOB '*' || printf('%.*c', 40000, 'a') || 'b'",
    "trim": "SELECT length(trim(printf('%.*c', 200000, 'a'), printf('%.*c', 199999, 'b') || 'a'))",
    "replace": "SELECT length(replace(printf('%.*c', 4000000, 'a'), "
    "printf('%.*c', 2000000, 'a') || 'b', ''))",
    "instr": "SELECT instr(printf('%.*c', 4000000, 'a'), printf('%.*c', 2000000, 'a') || 'b')",
}


@pytest.mark.parametrize("name", sorted(SINGLE_STEP_SQL))
def test_single_step_functions_answer_within_the_deadline(world: Path, name: str) -> None:
    # GIVEN a reader in a child process (this could hang for a minute), with the default
    # 5 MB answer cap and so the default length limit
    env = handler_env(world, "direct", f"step-{name}", EFSQLITE_MAX_RESPONSE_BYTES="5000000")
    event = {"db": "main", "sql": SINGLE_STEP_SQL[name], "timeout_ms": 100}
    # WHEN the call that one VM step used to hide runs with a 100 ms deadline
    _, [done] = run_child(env, [event], timeout=30)
    # THEN the answer is SQLite's, and it arrives by the deadline
    check_typed(done["answer"])
    assert done["answer"].get("rows") in ([[0]], [[4000000]]), done
    assert done["elapsed"] <= 0.1 + SLACK_S, done


# -- 5. settings that would destroy data are refused at start ---------------------------------
def layouts(tmp: Path) -> dict[str, tuple[Path, Path]]:
    data = tmp / "data"
    (tmp / "link").symlink_to(data, target_is_directory=True)
    return {
        "equal": (data, data),
        "inside": (data, data / "snapshots"),
        "above": (data, tmp),
        "far above": (data / "a" / "b", tmp),
        "symlink to data": (data, tmp / "link"),
        "symlink inside": (data, tmp / "link" / "snap"),
        "dotted": (data, tmp / "x" / ".." / "data" / "."),
        "relative": (data, Path("data") / "snap"),
    }


@pytest.mark.parametrize(
    "layout",
    ["equal", "inside", "above", "far above", "symlink to data", "symlink inside", "dotted",
     "relative"],
)  # fmt: skip
def test_snapshot_dir_at_inside_or_above_data_dir_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    # GIVEN a snapshot folder that is the data folder, inside it or above it
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    data, snapshots = layouts(tmp_path)[layout]
    # WHEN the settings are built  THEN one line naming both variables refuses them
    with pytest.raises(InvalidSettingError) as caught:
        ReaderSettings(data_dir=data, snapshot_dir=snapshots)
    message = str(caught.value)
    assert "EFSQLITE_SNAPSHOT_DIR" in message and "EFSQLITE_DATA_DIR" in message
    assert "\n" not in message


def test_sibling_folders_are_fine(tmp_path: Path) -> None:
    # GIVEN folders that only share a name prefix  WHEN built  THEN accepted
    settings = ReaderSettings(data_dir=tmp_path / "data", snapshot_dir=tmp_path / "data-snap")
    assert settings.snapshot_dir == tmp_path / "data-snap"


def test_the_handler_refuses_to_start_on_overlapping_folders(tmp_path: Path) -> None:
    # GIVEN a real database and env vars putting the snapshots inside its folder
    make_world(tmp_path).close()
    env = handler_env(tmp_path, "snapshot", "x", EFSQLITE_SNAPSHOT_DIR=str(tmp_path / "data"))
    before = sorted(os.listdir(tmp_path / "data"))
    # WHEN the handler module is imported (a cold start)  THEN it refuses, deleting nothing
    with pytest.raises(InvalidSettingError, match="EFSQLITE_DATA_DIR"):
        cold_start(env)
    with pytest.raises(InvalidSettingError, match="EFSQLITE_SNAPSHOT_DIR"):
        cold_start({**env, "EFSQLITE_SNAPSHOT_DIR": str(tmp_path / "data" / "snap")})
    assert sorted(os.listdir(tmp_path / "data")) == before


# -- 6. property: whatever arrives, a typed answer --------------------------------------------
SURROGATE = st.characters(categories=["Cs"])
TEXT = st.text(max_size=12) | st.text(st.characters(exclude_categories=()) | SURROGATE, max_size=8)
NAMES = [
    *sorted(BUILTIN_FUNCTIONS - {"->", "->>", "match"}),
    "load_extension", "fts3_tokenizer", "fts5", "sqlite_compileoption_get", "readfile", "nope",
]  # fmt: skip
TABLES = [
    "accounts", "docs", "docs_data", "rich", "counted", "MixedCase", "sqlite_schema",
    "sqlite_stmt", "dbstat", "pragma_compile_options", "pragma_table_info('accounts')",
    "json_each('[1,2]')", "json_tree('{}')", "_efsqlite_state", "_efsqlite_commands", "nope",
]  # fmt: skip
SMALL = st.integers(-3, 2000).map(str) | st.sampled_from(
    [
        "NULL",
        "'x'",
        "'%.*c'",
        "'[1,{\"a\":2}]'",
        "x'ff'",
        "-9223372036854775808",
        "1e308",
        "'\udc80'",
    ]
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    form = draw(st.integers(0, 7))
    if form == 0:
        name = draw(st.sampled_from(NAMES))
        args = ", ".join(draw(st.lists(SMALL, max_size=3)))
        return f"SELECT {name}({args})"
    if form == 1:
        return f"SELECT * FROM {draw(st.sampled_from(TABLES))}"
    if form == 2:
        cte = draw(st.sampled_from(["c", "dbstat", "sqlite_stmt", '"Q c"']))
        used = draw(st.sampled_from(["c", "dbstat", "sqlite_stmt", '"Q c"', "accounts"]))
        return f"WITH {cte}(x) AS (SELECT 1) SELECT count(*) FROM {used}"
    if form == 3:
        pragma = draw(
            st.sampled_from(["user_version", "table_info", "query_only", "compile_options"])
        )
        value = draw(st.sampled_from(["", "(accounts)", "=0", "=1"]))
        return f"PRAGMA {pragma}{value}"
    if form == 4:
        refused = [text.format(target="/tmp") for text in REFUSED]
        return draw(st.sampled_from(refused + [text for text, _ in ALLOWED]))
    if form == 5:
        return draw(st.sampled_from(["BEGIN", "COMMIT", POSITION_SQL, "PRAGMA user_version"]))
    if form == 6:
        return draw(TEXT)
    # any of the above with a lone surrogate or a NUL spliced in
    text = draw(queries())
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(["\udc80", "\ud800", "\x00"])) + text[at:]


SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | TEXT
)
PARAMS = st.lists(SCALARS, max_size=3) | st.dictionaries(st.sampled_from(["a", "\udc80"]), SCALARS)
#: Well-formed queries and status requests (so the checks behind the first ones are reached),
#: then anything shaped like a payload, then any JSON at all.
QUERY_PAYLOADS = st.fixed_dictionaries(
    {"db": st.just("main"), "sql": queries()},
    optional={
        "params": PARAMS,
        "timeout_ms": st.sampled_from([1, 10, 50, 100]),
        "max_rows": st.integers(1, 1000),
        "min_position": st.sampled_from(["0", "1", 2**70]),
    },
)
STATUS_PAYLOADS = st.fixed_dictionaries(
    {"db": st.sampled_from(["main", "m\udc80"]), "command_id": TEXT | st.just("c-\udc80")}
)
PAYLOADS = (
    QUERY_PAYLOADS
    | STATUS_PAYLOADS
    | st.fixed_dictionaries(
        {"db": st.sampled_from(["main", "nope", "Main", "m\udc80"]) | TEXT},
        optional={
            "sql": queries(),
            "query": st.sampled_from(["total", "account_by_id", "sneaky_write", "nope\udc80"]),
            "params": PARAMS,
            "timeout_ms": st.sampled_from([1, 10, 50, 100]),
            "max_rows": st.integers(-1, 2000),
            "min_position": st.sampled_from(["0", "1", "9" * 39, 2**70, -1, "x\udc80"]),
            "command_id": TEXT,
            "\udc80": TEXT,
        },
    )
    | st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=PAYLOADS)
def test_any_direct_invoke_gets_a_typed_answer(app: ModuleType, payload: object) -> None:
    # GIVEN any payload, SQL from the allow-list's edges included  THEN a typed answer
    ask(app, payload)


def raw_utf8_body(payload: object) -> str:
    """The payload as base64 of its UTF-8 bytes, surrogates encoded as they are (not UTF-8)."""
    return b64(json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass"))


BODIES: st.SearchStrategy[Any] = (
    st.none()
    | TEXT
    | PAYLOADS.map(lambda p: json.dumps(p))
    | st.binary(max_size=40).map(b64)
    | PAYLOADS.map(raw_utf8_body)
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "\udc80"]),
    path=st.sampled_from(["/query", "/commands/c-1", "/commands/%ff", "/commands/", "/"])
    | TEXT.map(lambda t: "/commands/" + t)
    | TEXT,
    body=BODIES,
    b64_flag=st.booleans(),
    query=st.none() | st.dictionaries(st.sampled_from(["db", "x"]), TEXT | st.just("main")),
)
def test_any_function_url_event_gets_a_typed_answer(
    app: ModuleType, method: str, path: str, body: Any, b64_flag: bool, query: Any
) -> None:
    # GIVEN any Function URL event  WHEN handled  THEN a typed HTTP answer, never a 500
    event = url_event(method, path, queryStringParameters=query, isBase64Encoded=b64_flag)
    if body is not None:
        event["body"] = body
    check_http(app.lambda_handler(event, FakeLambdaContext()))
