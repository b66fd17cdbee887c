"""Redrive's decisions against a scripted SQS: what is sent, what is deleted, when it stops,
and how a move task is followed. The e2e suite runs it against the local stack's SQS."""

from __future__ import annotations

from typing import Any

from efsqlite.client.redrive import (
    BY_HAND,
    MOVE_TASK,
    RedriveProgress,
    redrive_by_hand,
    redrive_with_move_task,
)


class ScriptedSqs:
    """Answers receive_message from a script; the queue refuses the message ids in ``refuse``."""

    def __init__(self, batches: list[list[dict[str, Any]]], refuse: frozenset[str] = frozenset()):
        self.batches = batches
        self.refuse = refuse
        self.sent: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.tasks: list[dict[str, Any]] = []

    def receive_message(self, **_: Any) -> dict[str, Any]:
        return {"Messages": self.batches.pop(0)} if self.batches else {}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        ok, failed = [], []
        for entry in Entries:
            if entry["MessageDeduplicationId"][2:] in self.refuse:
                failed.append({"Id": entry["Id"], "Code": "Nope", "Message": "refused"})
            else:
                self.sent.append(entry)
                ok.append({"Id": entry["Id"]})
        return {"Successful": ok, "Failed": failed}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> None:
        self.deleted += [e["ReceiptHandle"] for e in Entries]

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:1:dlq.fifo"}}

    def start_message_move_task(self, SourceArn: str) -> dict[str, Any]:
        return {"TaskHandle": "h1"}

    def list_message_move_tasks(self, **_: Any) -> dict[str, Any]:
        return {"Results": [self.tasks.pop(0)]}


def message(n: int) -> dict[str, Any]:
    return {
        "MessageId": f"id{n}",
        "ReceiptHandle": f"rh{n}",
        "Body": f'{{"n": {n}}}',
        "Attributes": {"MessageGroupId": "main"},
    }


def test_by_hand_resends_in_the_group_then_deletes() -> None:
    sqs = ScriptedSqs([[message(1), message(2)], [message(3)]])
    seen: list[RedriveProgress] = []
    result = redrive_by_hand(sqs, "dlq", "queue", on_progress=seen.append)
    assert (result.moved, result.method, result.failures) == (3, BY_HAND, ())
    assert [e["MessageGroupId"] for e in sqs.sent] == ["main"] * 3
    assert [e["MessageDeduplicationId"] for e in sqs.sent] == ["r-id1", "r-id2", "r-id3"]
    assert [e["MessageBody"] for e in sqs.sent] == ['{"n": 1}', '{"n": 2}', '{"n": 3}']
    assert sqs.deleted == ["rh1", "rh2", "rh3"]
    assert [p.moved for p in seen] == [2, 3]


def test_by_hand_stops_at_a_refused_message_and_keeps_it() -> None:
    sqs = ScriptedSqs([[message(1), message(2)], [message(3)]], refuse=frozenset({"id2"}))
    result = redrive_by_hand(sqs, "dlq", "queue")
    assert result.moved == 1 and not result.ok
    (failure,) = result.failures
    assert (failure.message_id, failure.code, failure.reason) == ("id2", "Nope", "refused")
    assert sqs.deleted == ["rh1"]  # the refused one stays in the DLQ
    assert sqs.batches == [[message(3)]]  # and nothing after it was taken


def test_by_hand_honours_the_limit() -> None:
    sqs = ScriptedSqs([[message(1)], [message(2)], [message(3)]])
    assert redrive_by_hand(sqs, "dlq", "queue", limit=2).moved == 2
    assert sqs.deleted == ["rh1", "rh2"]


def test_move_task_is_followed_until_it_ends() -> None:
    sqs = ScriptedSqs([])
    sqs.tasks = [
        {
            "Status": "RUNNING",
            "ApproximateNumberOfMessagesMoved": 1,
            "ApproximateNumberOfMessagesToMove": 3,
        },
        {
            "Status": "COMPLETED",
            "ApproximateNumberOfMessagesMoved": 3,
            "ApproximateNumberOfMessagesToMove": 3,
        },
    ]
    seen: list[RedriveProgress] = []
    result = redrive_with_move_task(sqs, "dlq", on_progress=seen.append, poll_s=0)
    assert result is not None
    assert (result.moved, result.method, result.task_handle, result.task_status) == (
        3,
        MOVE_TASK,
        "h1",
        "COMPLETED",
    )
    assert result.ok and [(p.moved, p.total) for p in seen] == [(1, 3), (3, 3)]


def test_a_failed_move_task_is_a_failure_not_a_success() -> None:
    sqs = ScriptedSqs([])
    sqs.tasks = [{"Status": "FAILED", "FailureReason": "AccessDenied"}]
    result = redrive_with_move_task(sqs, "dlq", poll_s=0)
    assert result is not None and not result.ok
    assert result.failures[0].reason == "move task failed: AccessDenied"
