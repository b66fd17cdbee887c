"""Redrive: move the messages of the DLQ back to the command queue.

Two ways, as SQS offers them: a message move task (``StartMessageMoveTask``, followed with
``ListMessageMoveTasks`` until it ends), or by hand (receive from the DLQ, send to the source
queue in the same message group, then delete), for endpoints without move tasks (the local
stack). :func:`redrive` picks one and returns a :class:`RedriveResult`; progress goes to an
``on_progress`` callback, never to a stream.

DO send before deleting: a crash in between duplicates a message rather than losing it, and
the writer's ledger makes the duplicate harmless (every command carries its own id).
DON'T resend a message with its original ``MessageDeduplicationId``: within five minutes of
the first send SQS would accept it and drop it. A by-hand redrive derives the id from the DLQ
message id instead, so two runs racing over one message send it once.
DON'T move later messages of a batch past one SQS refused: the by-hand redrive stops there
(FIFO order) and reports the refusal in ``failures``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from efsqlite.client import Endpoints, _describe
from efsqlite.client.exceptions import RedriveError
from efsqlite.client.queues import connect_sqs, queue_arn, queue_counts

MOVE_TASK = "StartMessageMoveTask"
BY_HAND = "receive, send, delete"
#: Error codes an endpoint answers when it has no message move tasks.
_UNSUPPORTED = frozenset({"UnsupportedOperation", "InvalidAction", "NotImplemented", "500"})
_FINAL_TASK_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class RedriveProgress:
    """How far a redrive is: ``moved`` so far, of ``total`` if SQS said."""

    method: str
    moved: int
    total: int | None = None
    task_handle: str | None = None


@dataclass(frozen=True, slots=True)
class RedriveFailure:
    """A message SQS would not move, or a move task that failed (``message_id`` ``None``)."""

    reason: str
    message_id: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class RedriveResult:
    """What a redrive did. ``failures`` empty means every message it took was moved."""

    moved: int
    method: str
    task_handle: str | None = None
    task_status: str | None = None
    failures: tuple[RedriveFailure, ...] = ()
    dlq_before: int | None = None
    dlq_after: int | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


ProgressCallback = Callable[[RedriveProgress], None]


def redrive_with_move_task(
    sqs: Any,
    dlq_url: str,
    *,
    on_progress: ProgressCallback | None = None,
    poll_s: float = 1.0,
) -> RedriveResult | None:
    """Start a message move task from the DLQ to its source queue and follow it until it
    ends; ``None`` if this endpoint has no move tasks. A failed task is in ``failures``.

    botocore errors propagate (:func:`redrive` turns them into ``RedriveError``).
    """
    from botocore.exceptions import ClientError

    dlq_arn = queue_arn(sqs, dlq_url)
    try:
        task = sqs.start_message_move_task(SourceArn=dlq_arn)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _UNSUPPORTED or "not been implemented" in str(exc):
            return None
        raise
    handle = task.get("TaskHandle")
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
        current = tasks[0] if tasks else {}
        moved = int(current.get("ApproximateNumberOfMessagesMoved", 0))
        total = current.get("ApproximateNumberOfMessagesToMove")
        if on_progress is not None:
            on_progress(RedriveProgress(MOVE_TASK, moved, int(total) if total else None, handle))
        status = current.get("Status")
        if status in _FINAL_TASK_STATES or not tasks:
            failures: tuple[RedriveFailure, ...] = ()
            if status == "FAILED":
                failures = (RedriveFailure(f"move task failed: {current.get('FailureReason')}"),)
            return RedriveResult(
                moved, MOVE_TASK, task_handle=handle, task_status=status, failures=failures
            )
        time.sleep(poll_s)


def redrive_by_hand(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    *,
    limit: int | None = None,
    on_progress: ProgressCallback | None = None,
    visibility_timeout: int = 60,
) -> RedriveResult:
    """Move messages from the DLQ to ``queue_url`` as SQS's redrive does: each is sent again
    (new message id, same message group) and only then deleted from the DLQ.

    Stops when the DLQ answers empty twice, after ``limit`` messages, or at the first message
    the queue refuses (then in ``failures``; run it again). botocore errors propagate.
    """
    moved = 0
    empty = 0
    while limit is None or moved < limit:
        want = 10 if limit is None else max(1, min(10, limit - moved))
        response = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=1,
            VisibilityTimeout=visibility_timeout,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages") or []
        if not messages:
            empty += 1
            if empty >= 2:
                break
            continue
        empty = 0
        entries = [_resend_entry(index, message) for index, message in enumerate(messages)]
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        ok = {item["Id"] for item in sent.get("Successful") or []}
        to_delete = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if str(i) in ok
        ]
        if to_delete:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=to_delete)
        moved += len(to_delete)
        if sent.get("Failed"):
            # FIFO order: stop rather than move later messages past a failed one.
            failures = tuple(
                RedriveFailure(
                    str(item.get("Message")),
                    message_id=messages[int(item["Id"])].get("MessageId"),
                    code=item.get("Code"),
                )
                for item in sent["Failed"]
            )
            return RedriveResult(moved, BY_HAND, failures=failures)
        if on_progress is not None:
            on_progress(RedriveProgress(BY_HAND, moved))
    return RedriveResult(moved, BY_HAND)


def _resend_entry(index: int, message: dict[str, Any]) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    entry: dict[str, Any] = {
        "Id": str(index),
        "MessageBody": message["Body"],
        "MessageDeduplicationId": "r-" + message["MessageId"],
    }
    if attributes.get("MessageGroupId"):
        entry["MessageGroupId"] = attributes["MessageGroupId"]
    if message.get("MessageAttributes"):
        entry["MessageAttributes"] = message["MessageAttributes"]
    return entry


def redrive(
    endpoints: Endpoints,
    *,
    session: Any | None = None,
    sqs: Any | None = None,
    by_hand: bool = False,
    limit: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> RedriveResult:
    """Move the DLQ back to the command queue, with the DLQ's depth before and after.

    Uses a move task in AWS unless ``by_hand`` (or the endpoint has none), and by hand against
    the local stack; ``limit`` bounds the by-hand way only. The DLQ comes from
    ``endpoints.dlq_url`` or the queue's redrive policy. Raises :class:`RedriveError` if the
    queues are unknown or SQS fails; SQS refusing messages is in the result's ``failures``.
    """
    if sqs is None:
        sqs, endpoints = connect_sqs(endpoints, session)
    if not endpoints.dlq_url or not endpoints.queue_url:
        raise RedriveError(
            "redrive needs the queue and its DLQ: give the queue URL (with a redrive policy) "
            "or the DLQ URL"
        )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        before = queue_counts(sqs, endpoints.dlq_url)
        result = None
        if not endpoints.local and not by_hand:
            result = redrive_with_move_task(sqs, endpoints.dlq_url, on_progress=on_progress)
        if result is None:
            result = redrive_by_hand(
                sqs, endpoints.dlq_url, endpoints.queue_url, limit=limit, on_progress=on_progress
            )
        after = queue_counts(sqs, endpoints.dlq_url)
    except (BotoCoreError, ClientError) as exc:
        raise RedriveError(f"redrive failed: {_describe(exc)}") from None
    return RedriveResult(
        moved=result.moved,
        method=result.method,
        task_handle=result.task_handle,
        task_status=result.task_status,
        failures=result.failures,
        dlq_before=before.held if before else 0,
        dlq_after=after.held if after else 0,
    )
