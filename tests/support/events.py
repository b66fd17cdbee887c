"""Lambda event builders, shaped exactly as Lambda delivers them.

The SQS FIFO record shape follows the record in ``tests/events/sqs_fifo_event.json``
(taken from the AWS Lambda developer guide's FIFO example). Load the fixtures in
``tests/events/`` with :func:`load_event`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:efsqlite-writes.fifo"
_sequence = itertools.count(18849496460467696128, 1_000_000)
#: The JSON event fixtures, each shaped exactly as Lambda delivers it.
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of fixture ``tests/events/<name>.json`` (``name`` without ``.json``)."""
    if name.endswith(".json") or "/" in name or "\\" in name:
        raise ValueError(f"pass the fixture's bare name, not {name!r}")
    event = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    if not isinstance(event, dict):
        raise TypeError(f"tests/events/{name}.json is not a JSON object")
    return event


def next_sequence_number() -> str:
    """Increasing 20-digit sequence numbers, like SQS FIFO's (beyond 64 bits on purpose)."""
    return str(next(_sequence))


def sqs_record(
    body: str | dict[str, Any],
    *,
    group: str = "main",
    sequence_number: str | None = None,
    message_id: str | None = None,
    dedup_id: str | None = None,
    receive_count: int = 1,
) -> dict[str, Any]:
    """One SQS FIFO record as Lambda's event source mapping puts it in ``Records``."""
    text = body if isinstance(body, str) else json.dumps(body)
    now_ms = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex,
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now_ms,
            "SequenceNumber": sequence_number or next_sequence_number(),
            "MessageGroupId": group,
            "SenderId": "AIDAIO23YVJENQZJOL4VO",
            "MessageDeduplicationId": dedup_id or hashlib.sha256(text.encode()).hexdigest(),
            "ApproximateFirstReceiveTimestamp": now_ms,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def redelivered(record: dict[str, Any], *, new_message_id: bool = False) -> dict[str, Any]:
    """The same message again: a redelivery, or (new id) a DLQ redrive or producer retry."""
    copy = json.loads(json.dumps(record))
    attributes = copy["attributes"]
    attributes["ApproximateReceiveCount"] = str(int(attributes["ApproximateReceiveCount"]) + 1)
    copy["receiptHandle"] = "AQEB" + uuid.uuid4().hex
    if new_message_id:
        copy["messageId"] = str(uuid.uuid4())
        attributes["SequenceNumber"] = next_sequence_number()
        attributes["ApproximateReceiveCount"] = "1"
    return copy


class FakeLambdaContext:
    """The attributes powertools reads from a Lambda context object."""

    function_name = "efsqlite-writer"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:efsqlite-writer"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/efsqlite-writer"
    log_stream_name = "2026/11/28/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
