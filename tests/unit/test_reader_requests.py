"""Request checking, command status, named queries and the Function URL router."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from efsqlite.core.exceptions import RegistryError
from efsqlite.read.queries import QueryRegistry, load_queries
from efsqlite.read.reader import Reader

from tests.support.events import FakeLambdaContext, load_event, sqs_event, sqs_record
from tests.support.reader_db import (
    TOTAL,
    function_url_event,
    make_reader,
    make_writer,
    seed_accounts,
    write,
)

MODES = ["snapshot", "direct"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    writer.close()
    return tmp_path


@pytest.fixture(params=MODES)
def reader(request: pytest.FixtureRequest, root: Path) -> Iterator[Reader]:
    r = make_reader(root, read_mode=request.param, max_timeout_ms=2000, default_timeout_ms=500)
    yield r
    r.close()


def error_type(answer: dict[str, Any]) -> str | None:
    return answer["error"]["type"] if "error" in answer else None


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "SELECT 1",
        42,
        {},
        {"sql": "SELECT 1"},
        {"db": "main"},
        {"db": "main", "sql": 1},
        {"db": "main", "sql": ""},
        {"db": "main", "sql": "   "},
        {"db": "main", "sql": "SELECT 1", "query": "total"},
        {"db": "main", "query": 5},
        {"db": "main", "query": "no_such_query"},
        {"db": "main", "sql": "SELECT 1", "colour": "red"},
        {"db": "main", "sql": "SELECT 1", "max_rows": 0},
        {"db": "main", "sql": "SELECT 1", "max_rows": 1001},
        {"db": "main", "sql": "SELECT 1", "max_rows": True},
        {"db": "main", "sql": "SELECT 1", "max_rows": "10"},
        {"db": "main", "sql": "SELECT 1", "timeout_ms": 0},
        {"db": "main", "sql": "SELECT 1", "timeout_ms": 2001},
        {"db": "main", "sql": "SELECT 1", "timeout_ms": 1.5},
        {"db": "main", "sql": "SELECT 1", "min_position": "abc"},
        {"db": "main", "sql": "SELECT 1", "min_position": -1},
        {"db": "main", "sql": "SELECT 1", "min_position": "1" * 41},
        {"db": "main", "sql": "SELECT 1", "min_position": 1.0},
        {"db": "main", "sql": "SELECT 1", "min_position": False},
        {"db": "main", "command_id": ""},
        {"db": "main", "command_id": 7},
        {"db": "main", "command_id": "x" * 129},
        {"db": "main", "command_id": "c-1", "sql": "SELECT 1"},
        {"command_id": "c-1"},
        {"database_status": True},
        {"db": "main", "database_status": False},
        {"db": "main", "database_status": 1},
        {"db": "main", "database_status": True, "sql": "SELECT 1"},
        {"db": "Main!", "database_status": True},
    ],
)
def test_malformed_payloads_are_invalid_requests(reader: Reader, payload: Any) -> None:
    # GIVEN a malformed payload  WHEN invoked  THEN invalid_request, not retryable
    answer = reader.handle(payload, FakeLambdaContext())
    assert error_type(answer) == "InvalidRequest", answer
    assert answer["error"]["retryable"] is False
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


def test_fixture_payloads(reader: Reader) -> None:
    # GIVEN the documented direct-invoke fixture  WHEN invoked  THEN the documented answer
    query = load_event("reader_invoke_query")
    answer = reader.handle(query, FakeLambdaContext())
    assert answer["columns"] == ["id", "name", "balance"]
    assert answer["rows"] == [[1, "acct-1", 1000]]
    status = load_event("reader_invoke_command_status")
    assert reader.handle(status)["status"] == "unknown"


@pytest.mark.parametrize("mode", MODES)
def test_command_status_applied_rejected_pending_unknown(tmp_path: Path, mode: str) -> None:
    # GIVEN a command applied, one rejected (duplicate key) and one failing (schema not ready)
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    applied, position = write(writer, [("UPDATE accounts SET balance = 1 WHERE id = 1", [])])
    dup = {
        "v": 1,
        "id": "c-dup",
        "db": "main",
        "statements": [{"sql": "INSERT INTO accounts VALUES (1, 'again', 5)", "params": []}],
    }
    assert not writer.handle_event(sqs_event(sqs_record(dup))).failed_message_ids()
    early = dict(dup, id="c-early", expect_schema=9)
    assert writer.handle_event(sqs_event(sqs_record(early))).failed_message_ids()
    writer.close()
    reader = make_reader(tmp_path, read_mode=mode)
    # WHEN each is looked up  THEN applied (with its position), rejected (with why), pending
    got = reader.handle({"db": "main", "command_id": applied})
    assert got["status"] == "applied" and got["position"] == position
    assert int(got["current_position"]) >= int(position)
    got = reader.handle({"db": "main", "command_id": "c-dup"})
    assert got["status"] == "rejected"
    assert got["reason"]["type"] == "ConstraintViolation"
    got = reader.handle({"db": "main", "command_id": "c-early"})
    assert got["status"] == "pending" and got["last_failure"]["type"] == "SchemaNotReady"
    assert reader.handle({"db": "main", "command_id": "c-never"})["status"] == "unknown"
    # AND through the Function URL route
    url = reader.handle(function_url_event("GET", f"/commands/{applied}", query={"db": "main"}))
    assert url["statusCode"] == 200
    assert json.loads(url["body"])["position"] == position
    assert error_type(reader.handle({"db": "nope", "command_id": "c"})) == "DatabaseNotFound"
    reader.close()


def test_function_url_query_and_status_codes(reader: Reader) -> None:
    # GIVEN the Function URL fixture event  WHEN handled  THEN 200 with a JSON body
    event = load_event("function_url_query")
    response = reader.handle(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    assert json.loads(response["body"])["rows"] == [[1, "acct-1", 1000]]
    # AND a base64 body (as Lambda sends non-text content types) works the same
    b64 = function_url_event("POST", "/query", body=json.loads(event["body"]), base64_body=True)
    assert json.loads(reader.handle(b64)["body"])["rows"] == [[1, "acct-1", 1000]]
    fixture = load_event("function_url_command_status")
    assert json.loads(reader.handle(fixture)["body"])["status"] == "unknown"

    def status(event: dict[str, Any]) -> tuple[int, str | None, dict[str, str]]:
        response = reader.handle(event)
        body = json.loads(response["body"])
        return response["statusCode"], error_type(body), response["headers"]

    # WHEN callers err  THEN 4xx with the typed error
    assert status(function_url_event("POST", "/query", body="{not json"))[:2] == (
        400,
        "InvalidRequest",
    )
    assert status(function_url_event("POST", "/query"))[:2] == (400, "InvalidRequest")
    assert status(function_url_event("POST", "/query", body="%%%", base64_body=False))[0] == 400
    bad_b64 = function_url_event("POST", "/query", body="{}")
    bad_b64["isBase64Encoded"], bad_b64["body"] = True, "***"
    assert status(bad_b64)[:2] == (400, "InvalidRequest")
    delete = {"db": "main", "sql": "DELETE FROM accounts"}
    assert status(function_url_event("POST", "/query", body=delete))[:2] == (403, "NotAllowed")
    other = {"db": "other", "sql": "SELECT 1"}
    assert status(function_url_event("POST", "/query", body=other))[:2] == (
        404,
        "DatabaseNotFound",
    )
    assert status(function_url_event("GET", "/query"))[:2] == (405, "MethodNotAllowed")
    assert status(function_url_event("POST", "/commands/c-1"))[:2] == (405, "MethodNotAllowed")
    assert status(function_url_event("GET", "/nowhere"))[:2] == (404, "RouteNotFound")
    assert status(function_url_event("GET", "/commands/c-1"))[:2] == (400, "InvalidRequest")
    big = {"db": "main", "sql": "SELECT zeroblob(4000000)"}
    assert status(function_url_event("POST", "/query", body=big))[:2] == (413, "TooLarge")
    runaway = {
        "db": "main",
        "sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT max(x) FROM c",
        "timeout_ms": 50,
    }
    assert status(function_url_event("POST", "/query", body=runaway))[:2] == (408, "QueryTimeout")
    # WHEN the error is retryable  THEN 503 with Retry-After
    ahead = {"db": "main", "sql": "SELECT 1", "min_position": "9" * 39, "timeout_ms": 30}
    code, kind, headers = status(function_url_event("POST", "/query", body=ahead))
    assert (code, kind) == (503, "NotYetAtPosition")
    assert headers["retry-after"] == "1"


def test_function_url_escaping_is_counted_in_the_byte_cap(root: Path) -> None:
    # GIVEN a 4000-byte cap and rows full of quotes (each doubles when JSON is embedded)
    reader = make_reader(root, max_response_bytes=4000)
    sql = "SELECT replace(hex(zeroblob(300)), '0', '\"') FROM accounts"
    event = function_url_event("POST", "/query", body={"db": "main", "sql": sql})
    # WHEN asked through the Function URL  THEN the whole response fits, marked truncated
    response = reader.handle(event)
    assert response["statusCode"] == 200
    assert len(json.dumps(response)) <= 4000
    assert json.loads(response["body"])["truncated"] is True
    reader.close()


def test_named_queries_and_raw_sql_off(root: Path) -> None:
    # GIVEN raw SQL turned off and a registry of named queries
    reader = make_reader(root, queries="tests.support.reader_queries:queries", allow_raw_sql=False)
    # WHEN a named query is called  THEN it answers, with params by name
    got = reader.handle({"db": "main", "query": "account_by_id", "params": {"id": 2}})
    assert got["rows"] == [[2, "acct-2", 1000]]
    assert reader.handle({"db": "main", "query": "total"})["rows"] == [[TOTAL]]
    # AND raw SQL is refused, and a named query still cannot write
    assert error_type(reader.handle({"db": "main", "sql": "SELECT 1"})) == "NotAllowed"
    assert error_type(reader.handle({"db": "main", "query": "sneaky_write"})) == "NotAllowed"
    assert error_type(reader.handle({"db": "main", "query": "missing"})) == "InvalidRequest"
    reader.close()


def test_query_registry_rules() -> None:
    # GIVEN registry misuse  WHEN loading or adding  THEN RegistryError says why
    registry = QueryRegistry()
    registry.add("a", "SELECT 1")
    with pytest.raises(RegistryError):
        registry.add("a", "SELECT 2")
    with pytest.raises(RegistryError):
        registry.add("bad name!", "SELECT 1")
    with pytest.raises(RegistryError):
        registry.add("b", " ")
    assert len(load_queries(None)) == 0
    assert len(load_queries("tests.support.reader_queries:queries")) == 3
    for path in [
        "nodots",
        "tests.support.nope:queries",
        "tests.support.reader_queries:missing",
        "tests.support.reader_queries:not_a_registry",
    ]:
        with pytest.raises(RegistryError):
            load_queries(path)


def test_lambda_context_bounds_the_wait(root: Path) -> None:
    # GIVEN a Lambda with 300 ms left and a min_position that never arrives
    class ShortContext(FakeLambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return 300

    reader = make_reader(root)
    payload = {"db": "main", "sql": "SELECT 1", "min_position": "9" * 39, "timeout_ms": 10_000}
    # WHEN invoked  THEN it gives up within the Lambda's time, with the current position
    answer = reader.handle(payload, ShortContext())
    assert error_type(answer) == "NotYetAtPosition"
    assert answer["error"]["retryable"] is True
    assert answer["error"]["position"].isdigit()
    reader.close()


@pytest.mark.parametrize("mode", MODES)
def test_database_status_is_read_fresh_from_the_source(tmp_path: Path, mode: str) -> None:
    # GIVEN a reader whose snapshot is warm
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    reader = make_reader(tmp_path, read_mode=mode, max_staleness_ms=60_000)
    before = reader.handle({"db": "main", "database_status": True})
    assert (before["pending"], before["in_dlq"], before["blocked_by"]) == (0, 0, None)
    assert before["outcomes"]["applied"] >= 1
    # WHEN a command fails on its second receive: a failure moves no position
    early = {"v": 1, "id": "c-early", "db": "main", "expect_schema": 9,
             "statements": [{"sql": "DELETE FROM accounts", "params": []}]}  # fmt: skip
    record = sqs_record(early)
    record["attributes"]["ApproximateReceiveCount"] = "2"
    assert writer.handle_event(sqs_event(record)).failed_message_ids()
    # THEN the database status shows it at once, blocking the group, receives counted
    after = reader.handle({"db": "main", "database_status": True})
    assert after["position"] == before["position"] and after["pending"] == 1
    blocker = after["blocked_by"]
    assert blocker["command_id"] == "c-early" and blocker["status"] == "pending"
    assert blocker["last_failure"]["type"] == "SchemaNotReady"
    assert blocker["last_failure"]["receive_count"] == 2
    # AND a command not seen yet is answered with the command its group waits on
    waiting = reader.handle({"db": "main", "command_id": "c-later"})
    assert waiting["status"] == "unknown" and waiting["blocked_by"] == blocker
    assert "blocked_by" not in reader.handle({"db": "main", "command_id": "c-early"})
    # AND the Function URL serves the same answer at GET /databases/{db}
    url = reader.handle(function_url_event("GET", "/databases/main"))
    assert url["statusCode"] == 200 and json.loads(url["body"]) == after
    wrong = reader.handle(function_url_event("POST", "/databases/main", body="{}"))
    assert wrong["statusCode"] == 405
    missing = reader.handle({"db": "nope", "database_status": True})
    assert error_type(missing) == "DatabaseNotFound"
    writer.close()
    reader.close()
