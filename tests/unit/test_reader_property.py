"""Property: whatever JSON arrives, the handler answers a result or a typed error, never raises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from efsqlite.read.exceptions import ReadError
from efsqlite.read.reader import Reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.reader_db import function_url_event, make_reader, make_writer, seed_accounts

ERROR_TYPES = {cls.error_type for cls in [ReadError, *ReadError.__subclasses__()]}
SQL = st.sampled_from(
    [
        "SELECT 1",
        "SELECT id, name FROM accounts WHERE id = ?",
        "SELECT name FROM accounts WHERE id = :id",
        "SELECT * FROM accounts",
        "DELETE FROM accounts",
        "ATTACH 'x' AS x",
        "PRAGMA query_only=0",
        "SELECT randomblob(2e9)",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT max(x) FROM c",
        "SELECT 1; SELECT 2",
    ]
) | st.text(max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    "db": st.sampled_from(["main", "other", "Main", "../x", ""]) | JSON,
    "sql": SQL | JSON,
    "query": st.sampled_from(["total", "nope"]) | JSON,
    "params": st.lists(SCALARS, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "x"]), SCALARS)
    | JSON,
    "max_rows": st.integers(-5, 2000) | JSON,
    "min_position": st.sampled_from(["0", "1", "9" * 39, "18849496460467696128"]) | JSON,
    "timeout_ms": st.integers(-1, 100) | JSON,
    "command_id": st.text(max_size=10) | JSON,
    "extra": JSON,
}
PAYLOADS = JSON | st.fixed_dictionaries({}, optional=FIELDS)


@pytest.fixture(scope="module", params=["snapshot", "direct"])
def reader(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reader]:
    root = tmp_path_factory.mktemp("property")
    writer = make_writer(root)
    seed_accounts(writer)
    writer.close()
    r = make_reader(
        root,
        read_mode=request.param,
        max_timeout_ms=100,
        default_timeout_ms=50,
        queries="tests.support.reader_queries:queries",
    )
    yield r
    r.close()


def check_answer(answer: Any) -> None:
    assert isinstance(answer, dict)
    json.dumps(answer, allow_nan=False)  # always serializable as strict JSON
    if "error" in answer:
        assert set(answer["error"]) >= {"type", "message", "retryable"}
        assert answer["error"]["type"] in ERROR_TYPES
        assert isinstance(answer["error"]["retryable"], bool)
        assert answer["error"]["type"] != "Internal", answer
    elif "columns" in answer:
        assert isinstance(answer["rows"], list) and isinstance(answer["truncated"], bool)
    else:
        assert answer["status"] in {"applied", "rejected", "pending", "unknown"}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=PAYLOADS)
def test_direct_invoke_never_raises(reader: Reader, payload: Any) -> None:
    # GIVEN any JSON payload  WHEN invoked  THEN a result or a typed error, never an exception
    check_answer(reader.handle(payload))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/query", "/commands/c-1", "/commands/", "/", "/x"])
    | st.text(max_size=12),
    body=st.none() | st.text(max_size=30) | PAYLOADS,
    query=st.none() | st.dictionaries(st.sampled_from(["db", "x"]), st.text(max_size=6)),
    b64=st.booleans(),
)
def test_function_url_never_raises(
    reader: Reader, method: str, path: str, body: Any, query: Any, b64: bool
) -> None:
    # GIVEN any Function URL request  WHEN handled  THEN an HTTP answer with a typed body
    event = function_url_event(method, path, body=body, query=query, base64_body=b64)
    response = reader.handle(event)
    assert isinstance(response["statusCode"], int)
    check_answer(json.loads(response["body"]))
    if response["statusCode"] == 503:
        assert response["headers"]["retry-after"] == "1"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(event=JSON, raw_path=JSON)
def test_mangled_function_url_events_never_raise(reader: Reader, event: Any, raw_path: Any) -> None:
    # GIVEN an event that looks a little like a Function URL event but is broken
    mangled = {"requestContext": {"http": event if isinstance(event, dict) else {}}}
    mangled["rawPath"] = raw_path
    # WHEN handled  THEN an HTTP answer with a typed body, never an exception
    response = reader.handle(mangled)
    assert isinstance(response["statusCode"], int)
    check_answer(json.loads(response["body"]))
