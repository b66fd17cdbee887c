"""The local SQS and poller in-process, over HTTP (boto3 against our own SQS server)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from efsqlite.devstack.lambda_api import function_url_event, function_url_response
from efsqlite.devstack.poller import Poller, lambda_record
from efsqlite.devstack.sqs import LocalSqs, QueueUrls

from .conftest import REPO, local_client, wait_until

EVENTS = REPO / "tests" / "events"


@pytest.fixture
def local_sqs(tmp_path: Path) -> Iterator[tuple[LocalSqs, QueueUrls, Any]]:
    sqs_local = LocalSqs(tmp_path, visibility_timeout=1, max_receive_count=3)
    urls = sqs_local.start()
    client = local_client("sqs", sqs_local.endpoint)
    try:
        yield sqs_local, urls, client
    finally:
        sqs_local.stop()


def _send(client: Any, url: str, body: str, group: str = "g", dedup: str | None = None) -> Any:
    return client.send_message(
        QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup or body
    )


def _receive(client: Any, url: str, count: int = 10) -> list[dict[str, Any]]:
    response = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=count,
        WaitTimeSeconds=0,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = response.get("Messages") or []
    return messages


def test_fifo_group_is_locked_while_a_message_is_in_flight(local_sqs: Any) -> None:
    # GIVEN three messages in group a and one in group b
    _, urls, client = local_sqs
    for body in ("a1", "a2", "a3"):
        _send(client, urls.queue_url, body, group="a")
    _send(client, urls.queue_url, "b1", group="b")
    # WHEN one message of group a is received (in flight)
    first = _receive(client, urls.queue_url, count=1)
    assert [m["Body"] for m in first] == ["a1"]
    # THEN a second receive gets group b only: group a is held back, as on SQS FIFO
    assert [m["Body"] for m in _receive(client, urls.queue_url)] == ["b1"]
    # AND once a1 is deleted, group a continues in order
    client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert [m["Body"] for m in _receive(client, urls.queue_url)] == ["a2", "a3"]


def test_sequence_numbers_increase_and_exceed_64_bits(local_sqs: Any) -> None:
    _, urls, client = local_sqs
    numbers = [int(_send(client, urls.queue_url, f"m{i}")["SequenceNumber"]) for i in range(20)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 20
    assert numbers[0] > 2**64


def test_deduplication_lasts_after_the_message_is_deleted(local_sqs: Any) -> None:
    # GIVEN a message sent, received and deleted
    _, urls, client = local_sqs
    sent = _send(client, urls.queue_url, "body", dedup="d-1")
    (message,) = _receive(client, urls.queue_url)
    client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=message["ReceiptHandle"])
    # WHEN the same deduplication id is sent again within five minutes
    again = _send(client, urls.queue_url, "body", dedup="d-1")
    # THEN it is accepted, answered with the original's id and sequence, and not delivered
    assert again["MessageId"] == sent["MessageId"]
    assert again["SequenceNumber"] == sent["SequenceNumber"]
    assert _receive(client, urls.queue_url) == []


def test_dlq_after_max_receive_count(local_sqs: Any) -> None:
    _, urls, client = local_sqs
    _send(client, urls.queue_url, "poison")
    for _ in range(3):
        wait_until(lambda: _receive(client, urls.queue_url), timeout=10, what="redelivery")
    time.sleep(1.1)
    assert _receive(client, urls.queue_url) == []
    assert [m["Body"] for m in _receive(client, urls.dlq_url)] == ["poison"]


def test_queues_survive_a_restart_with_ids_sequence_numbers_and_dedup(tmp_path: Path) -> None:
    # GIVEN a stack that queued messages, moved one to its DLQ and deleted one, then stopped
    sqs_local = LocalSqs(tmp_path, visibility_timeout=1, max_receive_count=1)
    urls = sqs_local.start()
    client = local_client("sqs", sqs_local.endpoint)
    kept = _send(client, urls.queue_url, "kept", group="k")
    dead = _send(client, urls.queue_url, "dead", group="d")
    gone = _send(client, urls.queue_url, "gone", group="x")
    for message in _receive(client, urls.queue_url):
        if message["Body"] == "gone":
            client.delete_message(QueueUrl=urls.queue_url, ReceiptHandle=message["ReceiptHandle"])
    time.sleep(1.1)
    assert _receive(client, urls.queue_url) == []  # moves "kept" and "dead" to the DLQ
    sqs_local.stop()
    # WHEN a new stack starts on the same folder
    restarted = LocalSqs(tmp_path, visibility_timeout=1, max_receive_count=1)
    urls = restarted.start()
    try:
        assert restarted.restored == 2
        client = local_client("sqs", restarted.endpoint)
        # THEN the DLQ holds the same messages (same ids, new sequence numbers there)
        moved = {m["Body"]: m for m in _receive(client, urls.dlq_url)}
        assert set(moved) == {"kept", "dead"}
        assert moved["kept"]["MessageId"] == kept["MessageId"]
        assert int(moved["dead"]["Attributes"]["SequenceNumber"]) > int(dead["SequenceNumber"])
        assert _receive(client, urls.queue_url) == []
        # AND deduplication survived the restart; new sequence numbers stay above the old
        again = _send(client, urls.queue_url, "gone", group="x")
        assert again["MessageId"] == gone["MessageId"]
        assert again["SequenceNumber"] == gone["SequenceNumber"]
        later = _send(client, urls.queue_url, "new", group="x")
        assert int(later["SequenceNumber"]) > int(moved["dead"]["Attributes"]["SequenceNumber"])
    finally:
        restarted.stop()


CRASHING_HANDLER = """
import json, pathlib
COUNT = pathlib.Path({count!r})

def lambda_handler(event, context):
    calls = int(COUNT.read_text()) if COUNT.exists() else 0
    COUNT.write_text(str(calls + 1))
    if calls == 0:
        raise RuntimeError("boom on the first batch")
    bad = [r["messageId"] for r in event["Records"] if r["body"] == "fail"]
    return {{"batchItemFailures": [{{"itemIdentifier": m}} for m in bad]}}
"""


def test_poller_survives_a_handler_crash_and_leaves_failures_to_the_visibility_timeout(
    local_sqs: Any, tmp_path: Path
) -> None:
    # GIVEN a handler that crashes on its first batch, then reports body "fail" as failed
    _, urls, client = local_sqs
    handler = tmp_path / "app.py"
    handler.write_text(CRASHING_HANDLER.format(count=str(tmp_path / "calls")))
    events: list[dict[str, Any]] = []
    poller = Poller(
        client,
        queue_url=urls.queue_url,
        queue_arn=urls.queue_arn,
        handler_path=handler,
        migrations_dir=None,
        on_batch=events.append,
    )
    poller.cold_start()
    _send(client, urls.queue_url, "ok", group="a")
    _send(client, urls.queue_url, "fail", group="b")
    # WHEN it polls until "ok" is deleted (bounded)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(e["deleted"] for e in events):
        poller.poll_once()
    poller.stop()
    # THEN the crash deleted nothing, the retry settled "ok", and "fail" stayed queued
    assert events[0]["crash"] and events[0]["deleted"] == 0
    assert any(e["deleted"] == 1 for e in events)
    assert [m["Body"] for m in _receive(client, urls.queue_url)] in ([], ["fail"])
    attributes = client.get_queue_attributes(QueueUrl=urls.queue_url, AttributeNames=["All"])
    total = sum(
        int(attributes["Attributes"][k])
        for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    )
    assert total == 1
    assert json.loads(json.dumps(events))  # the batch summaries are plain data


def _shape(value: Any) -> Any:
    """Keys all the way down (values' types only), to compare event shapes."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_poller_builds_records_shaped_like_lambdas(local_sqs: Any) -> None:
    # GIVEN a message received from the local queue as the poller receives it
    _, urls, client = local_sqs
    _send(client, urls.queue_url, '{"v": 1}', group="main", dedup="v-1")
    (message,) = client.receive_message(
        QueueUrl=urls.queue_url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    # WHEN the poller turns it into an event record
    record = lambda_record(message, urls.queue_arn, "us-east-1")
    # THEN it has exactly the keys (and value types) of Lambda's own FIFO record
    fixture = json.loads((EVENTS / "sqs_fifo_event.json").read_text())["Records"][0]
    assert _shape(record) == _shape(fixture)
    assert record["attributes"]["MessageGroupId"] == "main"


def test_function_url_event_is_shaped_like_payload_format_2() -> None:
    # GIVEN an HTTP request as the local Function URL receives it
    event = function_url_event(
        method="POST",
        target="/query",
        body=b'{"db": "main"}',
        source_ip="127.0.0.1",
        host="127.0.0.1:4768",
        headers=[
            ("Content-Type", "application/json"),
            ("User-Agent", "curl/8.5.0"),
            ("Host", "127.0.0.1:4768"),
        ],
    )
    # THEN it has the keys of a real Function URL event (the reader's fixture)
    fixture = json.loads((EVENTS / "function_url_query.json").read_text())
    assert set(event) == set(fixture)
    assert set(event["requestContext"]) == set(fixture["requestContext"])
    assert set(event["requestContext"]["http"]) == set(fixture["requestContext"]["http"])
    assert set(fixture["headers"]) - set(event["headers"]) <= {
        "x-amzn-tls-cipher-suite",
        "x-amzn-tls-version",
    }
    assert event["body"] == '{"db": "main"}' and event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("result", "status", "content_type", "body"),
    [
        (
            {"statusCode": 404, "headers": {"content-type": "text/plain"}, "body": "no"},
            404,
            "text/plain",
            b"no",
        ),
        (
            {"statusCode": 200, "body": "aGk=", "isBase64Encoded": True},
            200,
            "application/json",
            b"hi",
        ),
        (
            {"columns": ["a"], "rows": [[1]]},
            200,
            "application/json",
            b'{"columns": ["a"], "rows": [[1]]}',
        ),
    ],
)
def test_function_url_maps_answers_like_aws(
    result: dict[str, Any], status: int, content_type: str, body: bytes
) -> None:
    # GIVEN a handler answer WHEN the Function URL maps it THEN status, type and body follow AWS
    got_status, headers, got_body = function_url_response(result)
    assert (got_status, headers["Content-Type"], got_body) == (status, content_type, body)
