"""Rejections, read-your-writes, and the reader's two front doors, over HTTP and the CLI."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError
from efsqlite.client import Endpoints, ReadClient, WriteClient, named_command, sql_command
from efsqlite.core.position import Position

from .conftest import Stack


def _clients(stack: Stack) -> tuple[WriteClient, ReadClient]:
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    return WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)


def test_rejected_command_is_reported_and_the_group_keeps_moving(stack: Stack) -> None:
    # GIVEN a command the database refuses, followed by a good one in the same group
    writer, reader = _clients(stack)
    bad, good = writer.send_many(
        [
            named_command("main", "complete_todo", {"id": "no-such-todo"}, id="rej-1"),
            named_command("main", "add_todo", {"id": "after-rej", "title": "next"}, id="rej-2"),
        ]
    )
    # WHEN both settle
    bad_status = reader.wait_for(bad, timeout=60)
    good_status = reader.wait_for(good, timeout=60)
    # THEN command_status reports the rejection with its reason, and the next one applied
    assert bad_status.state == "rejected"
    assert bad_status.error_type == "NotFound"
    assert "no-such-todo" in (bad_status.error_message or "")
    assert good_status.state == "applied"
    # AND the CLI reports it too: one line, exit code 3
    shown = stack.cli("status", "--db", "main", "--command", "rej-1")
    assert shown.returncode == 3, shown.stderr
    assert "rejected" in shown.stdout and "NotFound" in shown.stdout
    as_json = stack.cli("status", "--db", "main", "--command", "rej-1", "--json")
    assert as_json.returncode == 3, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "db": "main",
        "id": "rej-1",
        "state": "rejected",
        "position": str(bad_status.position),
        "error_type": "NotFound",
        "error_message": bad_status.error_message,
        "attempts": None,
        "receive_count": None,
        "receives_left": None,
        "failing_since_ms": None,
        "last_failed_ms": None,
    }
    # AND `send --wait` of a refused command says so on one line and exits 3
    sent = stack.cli(
        "send",
        "--db",
        "main",
        "--sql",
        "INSERT INTO todos (id) VALUES (?)",
        "--params",
        '["x-no-title"]',
        "--wait",
    )
    assert sent.returncode == 3
    assert "rejected: ConstraintViolation" in sent.stderr
    assert sent.stderr.count("\n") == 1 and "Traceback" not in sent.stderr
    # AND the queue is empty: nothing stalled behind the rejections
    assert stack.queue_depth("queue_url") == 0
    assert stack.queue_depth("dlq_url") == 0


def test_send_wait_then_query_with_min_position_reads_your_write(stack: Stack) -> None:
    # GIVEN a command sent through the CLI with --wait
    sent = stack.cli(
        "send",
        "--db",
        "main",
        "--command",
        "add_todo",
        "--args",
        '{"id": "ryw-1", "title": "read me"}',
        "--wait",
    )
    assert sent.returncode == 0, sent.stderr
    bookmark = json.loads(sent.stdout)
    assert bookmark["state"] == "applied"
    # WHEN querying at its position through the CLI
    shown = stack.cli(
        "query",
        "--db",
        "main",
        "--min-position",
        bookmark["sequence_number"],
        "--json",
        "SELECT id, title FROM todos WHERE id = ?",
        "--params",
        '["ryw-1"]',
    )
    # THEN the write is visible
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    assert answer["rows"] == [["ryw-1", "read me"]]
    assert int(answer["position"]) >= int(bookmark["sequence_number"])
    # AND the people's table shows it too
    table = stack.cli("query", "--db", "main", "SELECT id, title FROM todos WHERE id = 'ryw-1'")
    assert "ryw-1" in table.stdout and "read me" in table.stdout


def test_min_position_without_waiting_for_the_command(stack: Stack) -> None:
    # GIVEN a bookmark straight from SendMessage, with no wait for the command
    writer, reader = _clients(stack)
    bookmark = writer.send(
        sql_command("main", "INSERT INTO todos (id, title) VALUES (?, ?)", ["ryw-2", "fresh"])
    )
    # WHEN the very next read asks for that position
    result = reader.query(
        "SELECT title FROM todos WHERE id = ?",
        ["ryw-2"],
        db="main",
        min_position=bookmark.sequence_number,
        timeout_ms=10_000,
    )
    # THEN the reader waited for the writer: read-your-writes with no extra round trip
    assert result.rows == [["fresh"]]
    assert result.position >= Position.parse(bookmark.sequence_number)


def test_named_query_and_function_url(stack: Stack) -> None:
    # GIVEN a todo written and settled
    writer, reader = _clients(stack)
    bookmark = writer.send(named_command("main", "add_todo", {"id": "url-1", "title": "via url"}))
    reader.wait_for(bookmark, timeout=60)
    # WHEN it is read by a named query through Invoke
    named = reader.named_query(
        "todo_by_id", {"id": "url-1"}, db="main", min_position=bookmark.sequence_number
    )
    assert named.rows[0][:2] == ["url-1", "via url"]
    # AND through the Function URL (payload format 2.0): POST /query and GET /commands/{id}
    base = stack.endpoints["function_url"].rstrip("/")
    body = json.dumps(
        {
            "db": "main",
            "query": "todo_by_id",
            "params": {"id": "url-1"},
            "min_position": bookmark.sequence_number,
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/query", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
    assert answer["rows"][0][:2] == ["url-1", "via url"]
    with urllib.request.urlopen(f"{base}/commands/{bookmark.id}?db=main", timeout=30) as response:
        status = json.loads(response.read())
    assert status["status"] == "applied"
    # AND a caller error is a 4xx, not a crash
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{base}/query", data=b"{not json", timeout=30)
    assert 400 <= caught.value.code < 500


def test_invoke_api_errors_look_like_lambda(stack: Stack) -> None:
    # GIVEN a stock boto3 Lambda client on the local endpoint
    client = stack.lambda_client()
    # WHEN invoking a function that does not exist
    with pytest.raises(ClientError) as caught:
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
    # THEN it is Lambda's ResourceNotFoundException
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # AND a hostile query is a typed error answer, not an unhandled one
    answer = stack.invoke({"db": "main", "sql": "DELETE FROM todos"})
    assert answer["error"]["type"] == "NotAllowed"
