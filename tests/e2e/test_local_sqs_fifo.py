"""Our local SQS over real sockets: FIFO blocking, dedup, DLQ, move tasks, kills, bad requests."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from efsqlite.devstack.sqs import LocalSqs, QueueUrls

from .conftest import REPO, local_client, wait_until


@pytest.fixture
def sqs(tmp_path: Path) -> Iterator[tuple[LocalSqs, QueueUrls, Any]]:
    local = LocalSqs(tmp_path, visibility_timeout=1, max_receive_count=2)
    urls = local.start()
    try:
        yield local, urls, _fifo_client(local.endpoint)
    finally:
        local.stop()


def _fifo_client(endpoint: str) -> Any:
    return local_client("sqs", endpoint, Config(retries={"max_attempts": 1}))


def _send(client: Any, url: str, body: str, group: str = "g") -> dict[str, Any]:
    sent: dict[str, Any] = client.send_message(
        QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=body
    )
    return sent


def _bodies(client: Any, url: str, **extra: Any) -> list[str]:
    response = client.receive_message(QueueUrl=url, **{"MaxNumberOfMessages": 10, **extra})
    return [m["Body"] for m in response.get("Messages") or []]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_a_failing_head_blocks_its_group_until_deleted_or_dead_lettered(sqs: Any) -> None:
    # GIVEN a group a1, a2 and a group b1; a1 is received and never deleted (it fails)
    _, urls, client = sqs
    for body, group in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        _send(client, urls.queue_url, body, group)
    assert _bodies(client, urls.queue_url, MaxNumberOfMessages=1) == ["a1"]
    # WHEN its visibility timeout expires
    time.sleep(1.1)
    # THEN the head is redelivered before anything later of its group (moto handed out a2)
    first = client.receive_message(QueueUrl=urls.queue_url, MaxNumberOfMessages=1)["Messages"]
    assert [m["Body"] for m in first] == ["a1"]
    # AND while it is in flight again, only the other group moves
    assert _bodies(client, urls.queue_url) == ["b1"]
    time.sleep(1.1)
    # AND once a1 has been received maxReceiveCount (2) times and expires, it goes to the DLQ
    # at the receive that would have returned it, and the group continues with a2
    assert _bodies(client, urls.queue_url) == ["a2", "b1"]
    assert _bodies(client, urls.dlq_url) == ["a1"]


def test_deduplicated_send_answers_the_original_and_content_dedup_hashes_the_body(
    sqs: Any,
) -> None:
    _, _, client = sqs
    url = client.create_queue(
        QueueName="cbd.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    # GIVEN a send without a deduplication id on a content-deduplicated queue
    first = client.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    # WHEN the same body is sent again (another group, still within five minutes)
    again = client.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="h")
    # THEN it is answered with the original's id and sequence number, and delivered once
    assert (again["MessageId"], again["SequenceNumber"]) == (
        first["MessageId"],
        first["SequenceNumber"],
    )
    assert _bodies(client, url) == ["same"]
    # AND creating the queue again with the same attributes is idempotent, other ones are not
    assert (
        client.create_queue(
            QueueName="cbd.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        == url
    )
    with pytest.raises(ClientError) as exc:
        client.create_queue(
            QueueName="cbd.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "7"}
        )
    assert _code(exc) == "QueueAlreadyExists"


def test_stale_receipt_handle_deletes_nothing(sqs: Any) -> None:
    # GIVEN a message received twice (its first handle is stale)
    _, urls, client = sqs
    _send(client, urls.queue_url, "m")
    (old,) = client.receive_message(QueueUrl=urls.queue_url, VisibilityTimeout=0)["Messages"]
    (new,) = client.receive_message(QueueUrl=urls.queue_url)["Messages"]
    assert old["ReceiptHandle"] != new["ReceiptHandle"]
    # WHEN the stale handle deletes THEN the call succeeds and the message stays
    client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=old["ReceiptHandle"])
    attributes = client.get_queue_attributes(
        QueueUrl=urls.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    # AND the current one deletes it; a handle that is not one of ours is refused
    client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=new["ReceiptHandle"])
    with pytest.raises(ClientError) as exc:
        client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle="garbage")
    assert _code(exc) == "ReceiptHandleIsInvalid"
    time.sleep(1.1)
    assert _bodies(client, urls.queue_url) == []


def test_long_poll_wakes_on_send(sqs: Any) -> None:
    _, urls, client = sqs
    import threading

    threading.Timer(0.3, lambda: _send(client, urls.queue_url, "late")).start()
    started = time.monotonic()
    assert _bodies(client, urls.queue_url, WaitTimeSeconds=10) == ["late"]
    assert time.monotonic() - started < 3


def test_move_task_redrives_the_dlq_to_its_source_and_can_be_cancelled(sqs: Any) -> None:
    # GIVEN three messages dead-lettered (received twice each, never deleted)
    _, urls, client = sqs
    for i in range(3):
        _send(client, urls.queue_url, f"m{i}", group=f"g{i}")
    for _ in range(2):
        assert len(_bodies(client, urls.queue_url)) == 3
        time.sleep(1.1)
    assert _bodies(client, urls.queue_url) == []
    assert client.list_dead_letter_source_queues(QueueUrl=urls.dlq_url)["queueUrls"] == [
        urls.queue_url
    ]
    # WHEN a move task starts on the DLQ (no destination: back to the source)
    handle = client.start_message_move_task(SourceArn=urls.dlq_arn)["TaskHandle"]

    # THEN it completes, having moved all three, and they are delivered again, once each
    def done() -> Any:
        (task,) = client.list_message_move_tasks(SourceArn=urls.dlq_arn)["Results"]
        return task if task["Status"] == "COMPLETED" else None

    task = wait_until(done, timeout=10, what="the move task")
    assert task["ApproximateNumberOfMessagesMoved"] == 3
    assert task["ApproximateNumberOfMessagesToMove"] == 3
    assert "TaskHandle" not in task
    received = client.receive_message(
        QueueUrl=urls.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    )["Messages"]
    assert sorted(m["Body"] for m in received) == ["m0", "m1", "m2"]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in received} == {"1"}
    for message in received:
        client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=message["ReceiptHandle"])
    time.sleep(1.1)
    assert _bodies(client, urls.queue_url) == [] and _bodies(client, urls.dlq_url) == []
    # AND a finished task cannot be cancelled; a rate-limited one can, mid-way
    with pytest.raises(ClientError):
        client.cancel_message_move_task(TaskHandle=handle)
    for i in range(5):
        _send(client, urls.dlq_url, f"d{i}", group="d")
    # (sent to the DLQ directly, they have no source queue: AWS needs a DestinationArn)
    slow = client.start_message_move_task(
        SourceArn=urls.dlq_arn, DestinationArn=urls.queue_arn, MaxNumberOfMessagesPerSecond=1
    )
    with pytest.raises(ClientError):  # one running task per queue
        client.start_message_move_task(SourceArn=urls.dlq_arn)
    moved = client.cancel_message_move_task(TaskHandle=slow["TaskHandle"])
    assert moved["ApproximateNumberOfMessagesMoved"] < 5
    latest = client.list_message_move_tasks(SourceArn=urls.dlq_arn, MaxResults=10)["Results"]
    assert [t["Status"] for t in latest] == ["CANCELLED", "COMPLETED"]


def test_batches_report_failures_per_entry_and_enforce_sqs_limits(sqs: Any) -> None:
    _, urls, client = sqs
    # GIVEN a batch with a good entry, one without a group and one with invalid characters
    sent = client.send_message_batch(
        QueueUrl=urls.queue_url,
        Entries=[
            {
                "Id": "ok",
                "MessageBody": "fine",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "1",
            },
            {"Id": "nogroup", "MessageBody": "x", "MessageDeduplicationId": "2"},
            {
                "Id": "bad",
                "MessageBody": "\x00",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "3",
            },
        ],
    )
    # THEN the good one is sent and the others fail, each with SQS's code
    assert [e["Id"] for e in sent["Successful"]] == ["ok"]
    assert {e["Id"]: e["Code"] for e in sent["Failed"]} == {
        "nogroup": "MissingParameter",
        "bad": "InvalidMessageContents",
    }
    entry = {"MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"}
    with pytest.raises(ClientError) as exc:
        client.send_message_batch(
            QueueUrl=urls.queue_url, Entries=[dict(entry, Id=str(i)) for i in range(11)]
        )
    assert _code(exc) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    with pytest.raises(ClientError) as exc:
        client.send_message_batch(
            QueueUrl=urls.queue_url, Entries=[dict(entry, Id="same"), dict(entry, Id="same")]
        )
    assert _code(exc) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    big = "x" * 600_000
    with pytest.raises(ClientError) as exc:
        client.send_message_batch(
            QueueUrl=urls.queue_url,
            Entries=[dict(entry, Id="a", MessageBody=big), dict(entry, Id="b", MessageBody=big)],
        )
    assert _code(exc) == "AWS.SimpleQueueService.BatchRequestTooLong"
    with pytest.raises(ClientError) as exc:
        client.send_message(QueueUrl=urls.queue_url, **dict(entry, MessageBody="x" * 1_048_577))
    assert _code(exc) == "InvalidParameterValue"
    # exactly the limit is fine
    client.send_message(QueueUrl=urls.queue_url, **dict(entry, MessageBody="y" * 1_048_576))


def _raw(
    endpoint: str, body: bytes, target: str | None, headers: dict[str, str] | None = None
) -> Any:
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = {"Content-Type": "application/x-amz-json-1.0", **(headers or {})}
    if target is not None:
        sent["X-Amz-Target"] = target
    conn.request("POST", "/", body=body, headers=sent)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, response.getheader("x-amzn-query-error"), json.loads(payload)


@pytest.mark.parametrize(
    ("body", "target", "shape"),
    [
        (b"{not json", "AmazonSQS.ListQueues", "SerializationException"),
        (b"[1, 2]", "AmazonSQS.ListQueues", "SerializationException"),
        (b"{}", "AmazonSQS.DropAllTables", "UnsupportedOperation"),
        (b"{}", "AmazonSQS.TagQueue", "UnsupportedOperation"),
        (b"{}", None, "InvalidAction"),
        (b"{}", "AmazonSQS.SendMessage", "MissingParameter"),
        (b'{"QueueUrl": 7}', "AmazonSQS.SendMessage", "InvalidParameterValue"),
        (b'{"QueueName": ["x"]}', "AmazonSQS.CreateQueue", "InvalidParameterValue"),
        (b'{"QueueUrl": "/nope"}', "AmazonSQS.PurgeQueue", "QueueDoesNotExist"),
        (
            b'{"QueueUrl": "x", "MaxNumberOfMessages": 11}',
            "AmazonSQS.ReceiveMessage",
            "QueueDoesNotExist",
        ),
        (b'{"Entries": "no"}', "AmazonSQS.DeleteMessageBatch", "MissingParameter"),
    ],
)
def test_hostile_requests_get_typed_400s(
    sqs: Any, body: bytes, target: str | None, shape: str
) -> None:
    # GIVEN a raw request WHEN it reaches the server THEN a typed 400 answers, no traceback
    local, _, _ = sqs
    status, query_error, payload = _raw(local.endpoint, body, target)
    assert status == 400
    assert payload["__type"].endswith("#" + shape) and "Traceback" not in payload["message"]
    assert query_error and query_error.endswith(";Sender")


def test_wrong_types_and_oversized_requests_are_refused(sqs: Any) -> None:
    local, urls, client = sqs
    for params in (
        {"QueueUrl": urls.queue_url, "MaxNumberOfMessages": 11},
        {"QueueUrl": urls.queue_url, "MaxNumberOfMessages": "10"},
        {"QueueUrl": urls.queue_url, "WaitTimeSeconds": True},
    ):
        status, _, payload = _raw(
            local.endpoint, json.dumps(params).encode(), "AmazonSQS.ReceiveMessage"
        )
        assert (status, payload["__type"]) == (400, "com.amazonaws.sqs#InvalidParameterValue")
    status, _, payload = _raw(
        local.endpoint, b"{}", "AmazonSQS.ListQueues", {"Content-Length": str(10**9)}
    )
    assert status == 400
    with pytest.raises(ClientError) as exc:
        client.get_queue_attributes(QueueUrl=urls.queue_url, AttributeNames=["Nope"])
    assert _code(exc) == "InvalidAttributeName"
    assert client.list_queues()["QueueUrls"] == [urls.dlq_url, urls.queue_url]


SERVER = """
import sys, time
from pathlib import Path
from efsqlite.devstack.sqs import LocalSqs
local = LocalSqs(Path(sys.argv[1]), visibility_timeout=1)
local.start()
print(local.endpoint, flush=True)
time.sleep(600)
"""


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # GIVEN a server in a subprocess that acknowledged 200 sends (10 batches of 10, 100 single)
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().decode().strip()
        client = _fifo_client(endpoint)
        url = client.get_queue_url(QueueName="efsqlite-writes.fifo")["QueueUrl"]
        numbers = []
        for i in range(100):
            numbers.append(_send(client, url, f"s{i}", group=f"g{i % 3}")["SequenceNumber"])
        for b in range(10):
            client.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": f"b{b}-{i}",
                        "MessageGroupId": "g",
                        "MessageDeduplicationId": f"b{b}-{i}",
                    }
                    for i in range(10)
                ],
            )
        # WHEN it is killed with SIGKILL, without any chance to flush
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    # THEN a new server on the folder holds all 200, in order per group
    restarted = LocalSqs(tmp_path, visibility_timeout=30)
    urls = restarted.start()
    try:
        assert restarted.restored == 200
        client = _fifo_client(restarted.endpoint)
        bodies: list[str] = []
        while True:
            got = client.receive_message(QueueUrl=urls.queue_url, MaxNumberOfMessages=10)
            if not got.get("Messages"):
                break
            for message in got["Messages"]:
                bodies.append(message["Body"])
                client.delete_message(
                    QueueUrl=urls.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        assert sorted(bodies) == sorted(
            [f"s{i}" for i in range(100)] + [f"b{b}-{i}" for b in range(10) for i in range(10)]
        )
        singles = [b for b in bodies if b.startswith("s")]
        for group in range(3):
            mine = [int(b[1:]) for b in singles if int(b[1:]) % 3 == group]
            assert mine == sorted(mine)
        later = _send(client, urls.queue_url, "after")["SequenceNumber"]
        assert int(later) > max(int(n) for n in numbers)
    finally:
        restarted.stop()
