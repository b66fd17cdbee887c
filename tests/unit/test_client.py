"""The client's packing, deduplication ids, validation and retries, with no network."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from efsqlite.client import (
    Bookmark,
    Endpoints,
    ReadClient,
    WriteClient,
    batches,
    dedup_id,
    encode_command,
    named_command,
    pack,
    packed_dedup_id,
    resolve_endpoints,
    sql_command,
)
from efsqlite.client.exceptions import (
    ClientConfigError,
    InvalidCommandError,
    ReaderInvokeError,
    ReadRequestError,
    SendError,
    WaitTimeoutError,
)
from efsqlite.core.exceptions import EfsqliteError
from efsqlite.core.ledger import CommandStatus
from efsqlite.core.position import Position
from efsqlite.core.types import CommandState
from efsqlite.read.answers import QueryResult, StatusAnswer
from efsqlite.write.exceptions import MessageTooLargeError
from efsqlite.write.wire import MAX_MESSAGE_BYTES, parse_message

LOCAL = Endpoints(queue_url="http://q/123/q.fifo", reader_function="reader", source="test")


class RecordingSqs:
    """A stand-in for boto3's SQS client: records batches, fails chosen entries once."""

    def __init__(self, fail_once: set[str] | None = None, sender_fault: bool = False) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail_once = set(fail_once or ())
        self.sender_fault = sender_fault
        self.sequence = 10**19

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        ok, failed = [], []
        for entry in Entries:
            if entry["MessageDeduplicationId"] in self.fail_once:
                if not self.sender_fault:
                    self.fail_once.discard(entry["MessageDeduplicationId"])
                failed.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": self.sender_fault,
                        "Code": "X",
                        "Message": "no",
                    }
                )
                continue
            self.sequence += 1
            ok.append(
                {
                    "Id": entry["Id"],
                    "MessageId": f"m-{self.sequence}",
                    "SequenceNumber": str(self.sequence),
                }
            )
        return {"Successful": ok, "Failed": failed}


def test_send_many_packs_per_database_and_keeps_order() -> None:
    # GIVEN 30 commands for two databases, interleaved
    sqs = RecordingSqs()
    client = WriteClient(sqs, endpoints=LOCAL)
    commands = [sql_command("a" if i % 2 else "b", "SELECT ?", [i], id=f"c{i}") for i in range(30)]
    # WHEN sent together
    bookmarks = client.send_many(commands)
    # THEN one packed message per database, in one SendMessageBatch call
    assert len(sqs.calls) == 1 and len(sqs.calls[0]) == 2
    for entry in sqs.calls[0]:
        parsed = parse_message(entry["MessageBody"])
        assert [c.db for c in parsed] == [entry["MessageGroupId"]] * 15
        assert [int(c.id[1:]) for c in parsed] == sorted(int(c.id[1:]) for c in parsed)
    # AND one bookmark per command, in input order, sharing their message's sequence number
    assert [b.id for b in bookmarks] == [f"c{i}" for i in range(30)]
    assert len({b.sequence_number for b in bookmarks if b.db == "a"}) == 1


def test_packing_respects_the_size_limit() -> None:
    # GIVEN commands of about 100 KB each
    big = [
        encode_command(sql_command("main", "SELECT ?", ["x" * 100_000], id=f"b{i}"))
        for i in range(25)
    ]
    # WHEN packed
    messages = pack(big)
    # THEN each message is under 1 MiB, all commands are there in order
    assert all(m.size <= MAX_MESSAGE_BYTES for m in messages)
    assert len(messages) == 3
    assert [cid for m in messages for cid in m.command_ids] == [f"b{i}" for i in range(25)]
    # AND SendMessageBatch groups stay under the total payload limit too
    assert all(sum(m.size for m in group) <= MAX_MESSAGE_BYTES for group in batches(messages))


def test_single_command_travels_unpacked_with_its_id_as_dedup_id() -> None:
    sqs = RecordingSqs()
    WriteClient(sqs, endpoints=LOCAL).send(named_command("main", "add", {"x": 1}, id="id-1"))
    (entry,) = sqs.calls[0]
    assert json.loads(entry["MessageBody"])["id"] == "id-1"
    assert entry["MessageDeduplicationId"] == "id-1"
    assert entry["MessageGroupId"] == "main"


def test_dedup_ids_are_hashed_when_sqs_would_refuse_them() -> None:
    assert dedup_id("c-123_ok:/.") == "c-123_ok:/."
    hashed = dedup_id("has space é")
    assert hashed.startswith("h-") and len(hashed) == 66
    assert dedup_id("has space é") == hashed
    assert packed_dedup_id(["a", "bc"]) != packed_dedup_id(["ab", "c"])


def test_only_failed_entries_are_retried() -> None:
    # GIVEN a queue that fails one entry of a batch once
    commands = [sql_command(f"db{i}", "SELECT 1", id=f"r{i}") for i in range(3)]
    sqs = RecordingSqs(fail_once={"r1"})
    # WHEN sent
    bookmarks = WriteClient(sqs, endpoints=LOCAL, backoff_s=0).send_many(commands)
    # THEN the second call carried only the failed entry, and every command has a bookmark
    assert [len(call) for call in sqs.calls] == [3, 1]
    assert sqs.calls[1][0]["MessageDeduplicationId"] == "r1"
    assert all(isinstance(b, Bookmark) and b.sequence_number for b in bookmarks)


def test_sender_fault_is_a_send_error() -> None:
    sqs = RecordingSqs(fail_once={"r0"}, sender_fault=True)
    with pytest.raises(SendError, match="refused 1 message"):
        WriteClient(sqs, endpoints=LOCAL).send(sql_command("main", "SELECT 1", id="r0"))


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ({"v": 1, "id": "x", "db": "Bad Name", "statements": [{"sql": "SELECT 1"}]}, "db"),
        ({"v": 1, "id": "", "db": "main", "statements": [{"sql": "SELECT 1"}]}, "id"),
        ({"v": 2, "id": "x", "db": "main", "statements": [{"sql": "SELECT 1"}]}, "v"),
        ({"v": 1, "id": "x", "db": "main"}, "statements"),
        (
            {"v": 1, "id": "x", "db": "main", "statements": [{"sql": "S", "params": [[1]]}]},
            "params",
        ),
    ],
)
def test_invalid_commands_are_refused_before_sending(command: dict[str, Any], message: str) -> None:
    sqs = RecordingSqs()
    with pytest.raises(InvalidCommandError, match=message):
        WriteClient(sqs, endpoints=LOCAL).send_many([sql_command("main", "SELECT 1"), command])
    assert sqs.calls == []  # nothing at all was sent


def test_oversized_command_is_refused_with_a_typed_error() -> None:
    huge = sql_command("main", "SELECT ?", ["x" * MAX_MESSAGE_BYTES])
    with pytest.raises(MessageTooLargeError, match="at most 1048576"):
        encode_command(huge)
    assert issubclass(MessageTooLargeError, EfsqliteError)


def test_endpoints_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EFSQLITE_QUEUE_URL", raising=False)
    monkeypatch.delenv("EFSQLITE_READER_FUNCTION", raising=False)
    monkeypatch.delenv("EFSQLITE_ENDPOINTS", raising=False)
    # GIVEN no endpoints file THEN a clear, typed error
    with pytest.raises(ClientConfigError, match="efsqlite dev"):
        resolve_endpoints(data_dir=tmp_path)
    # GIVEN a local stack's file THEN it is local
    (tmp_path / "endpoints.json").write_text(
        json.dumps({"sqs_endpoint": "http://127.0.0.1:1", "queue_url": "u", "reader_function": "r"})
    )
    found = resolve_endpoints(data_dir=tmp_path)
    assert found.local and found.queue_url == "u"
    # GIVEN explicit AWS values THEN they win over the file
    aws = resolve_endpoints(queue_url="https://sqs/1/q.fifo", function_name="fn", data_dir=tmp_path)
    assert not aws.local and aws.reader_function == "fn"
    monkeypatch.setenv("EFSQLITE_QUEUE_URL", "https://env/q.fifo")
    assert resolve_endpoints(data_dir=tmp_path).queue_url == "https://env/q.fifo"


def test_a_client_without_its_endpoint_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"sqs_endpoint": "http://127.0.0.1:1"}))
    found = Endpoints.from_file(path)
    with pytest.raises(ClientConfigError, match=rf"no queue URL in {path}: pass queue_url"):
        WriteClient(object(), endpoints=found)
    with pytest.raises(ClientConfigError, match=rf"no reader function in {path}: pass function"):
        ReadClient(object(), endpoints=found)
    with pytest.raises(ClientConfigError, match=r"no queue URL: pass queue_url or set EFSQLITE_"):
        WriteClient(object(), endpoints=Endpoints())
    assert WriteClient(object(), endpoints=found, queue_url="q").queue_url == "q"


class ScriptedLambda:
    """A stand-in for boto3's Lambda client: answers from a list."""

    def __init__(self, answers: list[tuple[Any, str | None]]) -> None:
        self.answers = answers
        self.payloads: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        self.payloads.append(json.loads(Payload))
        answer, function_error = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        response: dict[str, Any] = {"Payload": io.BytesIO(json.dumps(answer).encode())}
        if function_error:
            response["FunctionError"] = function_error
        return response


def status_answer(command_id: str, state: CommandState, **detail: Any) -> dict[str, Any]:
    """A status answer exactly as the reader serializes it."""
    status = CommandStatus(command_id, state, **detail)
    return StatusAnswer("main", status, Position(7)).to_json()


def test_read_client_refuses_an_answer_of_another_shape() -> None:
    # GIVEN a reader answering with a key spelled differently from the documented shape
    scripted = ScriptedLambda([({"command": {"id": "c1", "outcome": "applied"}}, None)])
    # WHEN the client asks for a status  THEN it says the shape is wrong, it does not guess
    with pytest.raises(ReaderInvokeError, match="unknown shape"):
        ReadClient(scripted, endpoints=LOCAL).command_status("c1", db="main")


def test_read_client_maps_answers_and_errors() -> None:
    # GIVEN a reader answering a query, a typed error, then an unhandled error
    scripted = ScriptedLambda(
        [
            (QueryResult(["a"], [[1]], Position(5), 1).to_json(), None),
            ({"error": {"type": "NotAllowed", "message": "no", "retryable": False}}, None),
            ({"errorType": "KeyError", "errorMessage": "x"}, "Unhandled"),
        ]
    )
    reader = ReadClient(scripted, endpoints=LOCAL)
    result = reader.query("SELECT 1", db="main", min_position=5, timeout_ms=100)
    assert result == QueryResult(["a"], [[1]], Position(5), 1)
    assert scripted.payloads[0] == {
        "db": "main",
        "sql": "SELECT 1",
        "params": [],
        "min_position": "5",
        "timeout_ms": 100,
    }
    with pytest.raises(ReadRequestError, match="NotAllowed") as caught:
        reader.query("DELETE FROM t", db="main")
    assert caught.value.error_type == "NotAllowed" and not caught.value.retryable
    with pytest.raises(ReaderInvokeError, match="KeyError"):
        reader.query("SELECT 1", db="main")


def test_wait_for_polls_until_settled_and_times_out() -> None:
    bookmark = Bookmark("main", "c1", "m1", "7")
    settled = ScriptedLambda(
        [
            ({"error": {"type": "DatabaseNotFound", "message": "", "retryable": False}}, None),
            (status_answer("c1", "unknown"), None),
            (status_answer("c1", "rejected", error_type="T", error_message="m"), None),
        ]
    )
    status = ReadClient(settled, endpoints=LOCAL).wait_for(bookmark, timeout=5, poll_s=0.001)
    assert (status.state, status.error_type, status.error_message) == ("rejected", "T", "m")
    never = ScriptedLambda(
        [
            (
                status_answer(
                    "c1", "pending", error_type="SchemaNotReady", error_message="later", attempts=2
                ),
                None,
            )
        ]
    )
    with pytest.raises(WaitTimeoutError, match="SchemaNotReady"):
        ReadClient(never, endpoints=LOCAL).wait_for(bookmark, timeout=0.05, poll_s=0.01)
