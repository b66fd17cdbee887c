"""Message move tasks on the running stack, as AWS answers them: the real aws CLI and boto3.

The queues here are made for each test on the stack's SQS (the poller only reads the stack's
own queue), with ``maxReceiveCount`` 1, so two receives with ``VisibilityTimeout=0`` put a
message in the DLQ without waiting. The codes and messages are AWS's (API reference:
StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask; the DLQ redrive guide:
redriven messages are new messages with new ids, and a FIFO message moved to a FIFO DLQ gets
its message id as deduplication id).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.infra.tools import locate_aws_cli, missing

from .conftest import Stack, wait_until


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _pair(sqs: Any, name: str, *, fifo: bool = True) -> tuple[str, str, str, str]:
    """A source queue with a DLQ (maxReceiveCount 1): source URL and ARN, DLQ URL and ARN."""
    suffix = ".fifo" if fifo else ""
    base = {"FifoQueue": "true"} if fifo else {}
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=base)["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    url = sqs.create_queue(
        QueueName=f"{name}{suffix}", Attributes={**base, "RedrivePolicy": policy}
    )["QueueUrl"]
    return url, _arn(sqs, url), dlq_url, dlq_arn


def _dead_letter(sqs: Any, url: str, bodies: list[str], group: str = "g") -> list[str]:
    """Send ``bodies`` and receive them until SQS dead-letters them; their message ids."""
    ids = [
        sqs.send_message(
            QueueUrl=url, MessageBody=b, MessageGroupId=group, MessageDeduplicationId=b
        )["MessageId"]
        for b in bodies
    ]
    for _ in range(2):  # the first receive counts, the second moves them to the DLQ
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return ids


def _receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=0
    ).get("Messages", [])
    return messages


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def _aws(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The real AWS CLI against the stack's SQS (dummy credentials, no config files)."""
    path, reason = locate_aws_cli()
    if path is None:
        missing(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="t",
        AWS_SECRET_ACCESS_KEY="t",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_PAGER="",
    )
    endpoint = stack.endpoints["sqs_endpoint"]
    return subprocess.run(
        [str(path), "sqs", *args, "--endpoint-url", endpoint, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_aws_cli_redrives_a_dlq_to_its_source_as_new_messages(stack: Stack) -> None:
    # GIVEN three messages of one group dead-lettered from a FIFO queue
    sqs = stack.sqs()
    url, _, dlq_url, dlq_arn = _pair(sqs, "cli")
    original = _dead_letter(sqs, url, ["m0", "m1", "m2"])
    # WHEN the real aws CLI starts a move task with no destination
    started = _aws(stack, "start-message-move-task", "--source-arn", dlq_arn)
    assert started.returncode == 0, started.stderr
    handle = json.loads(started.stdout)["TaskHandle"]
    # THEN its handle is AWS's: base64 of the task id and the source ARN
    decoded = json.loads(base64.b64decode(handle))
    assert set(decoded) == {"taskId", "sourceArn"} and decoded["sourceArn"] == dlq_arn
    uuid.UUID(decoded["taskId"])

    # AND list-message-move-tasks follows it to COMPLETED, with AWS's fields and counts
    def completed() -> Any:
        listed = _aws(stack, "list-message-move-tasks", "--source-arn", dlq_arn)
        assert listed.returncode == 0, listed.stderr
        (task,) = json.loads(listed.stdout)["Results"]
        return task if task["Status"] == "COMPLETED" else None

    task = wait_until(completed, timeout=60, what="the CLI's move task")
    assert task["ApproximateNumberOfMessagesMoved"] == 3
    assert task["ApproximateNumberOfMessagesToMove"] == 3
    assert task["SourceArn"] == dlq_arn and isinstance(task["StartedTimestamp"], int)
    assert not {"TaskHandle", "DestinationArn", "MaxNumberOfMessagesPerSecond"} & set(task)
    # AND the messages are back in their source, in order, as new messages
    back = _receive(sqs, url)
    assert [m["Body"] for m in back] == ["m0", "m1", "m2"]
    assert not {m["MessageId"] for m in back} & set(original)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"1"}
    assert {m["Attributes"]["MessageGroupId"] for m in back} == {"g"}
    assert "DeadLetterQueueSourceArn" not in back[0]["Attributes"]
    assert _receive(sqs, dlq_url) == []
    # AND a finished task cannot be cancelled, and an unknown queue is AWS's error
    cancelled = _aws(stack, "cancel-message-move-task", "--task-handle", handle)
    assert cancelled.returncode != 0
    assert "ResourceNotFoundException" in cancelled.stderr, cancelled.stderr
    assert "Task does not exist." in cancelled.stderr
    unknown = _aws(stack, "list-message-move-tasks", "--source-arn", dlq_arn + "-nope")
    assert unknown.returncode != 0 and "ResourceNotFoundException" in unknown.stderr


def test_move_task_requests_are_refused_with_aws_codes(stack: Stack) -> None:
    sqs = stack.sqs()
    url, arn, dlq_url, dlq_arn = _pair(sqs, "refused")
    standard_url = sqs.create_queue(QueueName="refused-standard")["QueueUrl"]
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        (  # a queue that is no DLQ, even with a destination
            {"SourceArn": arn, "DestinationArn": dlq_arn},
            ("InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue."),
        ),
        (
            {"SourceArn": dlq_arn + "x"},
            (
                "ResourceNotFoundException",
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            ),
        ),
        (
            {"SourceArn": dlq_arn, "DestinationArn": arn + "x"},
            (
                "ResourceNotFoundException",
                "The resource that you specified for the DestinationArn parameter doesn't exist.",
            ),
        ),
        (
            {"SourceArn": dlq_arn, "MaxNumberOfMessagesPerSecond": 501},
            (
                "InvalidParameterValue",
                "Value 501 for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: Must "
                "be between 1 and 500.",
            ),
        ),
    ]
    for params, expected in cases:
        with pytest.raises(ClientError) as exc:
            sqs.start_message_move_task(**params)
        assert _error(exc) == expected, params
    with pytest.raises(ClientError) as exc:  # FIFO to standard
        sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=_arn(sqs, standard_url))
    assert _error(exc)[0] == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:
        sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=11)
    assert _error(exc) == (
        "InvalidParameterValue",
        "Value 11 for parameter MaxResults is invalid. Reason: Must be between 1 and 10.",
    )
    assert sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"] == []
    with pytest.raises(ClientError) as exc:
        sqs.cancel_message_move_task(TaskHandle="not-a-handle")
    assert _error(exc) == ("InvalidParameterValue", "Value for parameter TaskHandle is invalid.")
    unknown = base64.b64encode(
        json.dumps({"taskId": str(uuid.uuid4()), "sourceArn": dlq_arn}).encode()
    ).decode()
    with pytest.raises(ClientError) as exc:
        sqs.cancel_message_move_task(TaskHandle=unknown)
    assert _error(exc) == ("ResourceNotFoundException", "Task does not exist.")
    # AND nothing was moved by any refused request
    _dead_letter(sqs, url, ["kept"])
    assert [m["Body"] for m in _receive(sqs, dlq_url)] == ["kept"]


def test_a_running_task_is_listed_with_its_handle_and_blocks_a_second(stack: Stack) -> None:
    # GIVEN three messages dead-lettered from a FIFO queue
    sqs = stack.sqs()
    url, _, dlq_url, dlq_arn = _pair(sqs, "running")
    original = _dead_letter(sqs, url, ["r0", "r1", "r2"])
    # THEN in the DLQ they keep their ids, and their deduplication id is the message id
    dead = _receive(sqs, dlq_url)
    assert [m["MessageId"] for m in dead] == original
    assert [m["Attributes"]["MessageDeduplicationId"] for m in dead] == original
    # WHEN a task moves them at one message a second to another FIFO queue
    other = sqs.create_queue(QueueName="running-other.fifo", Attributes={"FifoQueue": "true"})
    other_arn = _arn(sqs, other["QueueUrl"])
    handle = sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=other_arn, MaxNumberOfMessagesPerSecond=1
    )["TaskHandle"]
    # THEN while it runs it is listed with its handle, rate and destination
    (task,) = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    assert task["Status"] == "RUNNING" and task["TaskHandle"] == handle
    assert task["MaxNumberOfMessagesPerSecond"] == 1 and task["DestinationArn"] == other_arn
    assert task["ApproximateNumberOfMessagesToMove"] == 3
    # AND a second task on the queue is refused, as AWS refuses it
    with pytest.raises(ClientError) as exc:
        sqs.start_message_move_task(SourceArn=dlq_arn)
    assert _error(exc) == (
        "InvalidParameterValue",
        "There is already a task running. Only one active task is allowed for a source queue "
        "arn at a given time.",
    )
    # AND cancelling it stops it where it is; what was not moved stays in the DLQ
    moved = sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
    assert moved < 3
    (task,) = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
    assert task["Status"] == "CANCELLED" and "TaskHandle" not in task
    assert task["ApproximateNumberOfMessagesMoved"] == moved
    assert len(_receive(sqs, other["QueueUrl"])) == moved
    assert len(_receive(sqs, dlq_url)) == 3 - moved


def test_a_message_sent_to_the_dlq_directly_needs_a_destination(stack: Stack) -> None:
    # GIVEN a message sent straight to a DLQ: it has no source queue to go back to
    sqs = stack.sqs()
    url, arn, dlq_url, dlq_arn = _pair(sqs, "direct")
    sqs.send_message(
        QueueUrl=dlq_url, MessageBody="direct", MessageGroupId="g", MessageDeduplicationId="d"
    )
    # WHEN a task without destination runs THEN it fails as AWS's does, and moves nothing
    sqs.start_message_move_task(SourceArn=dlq_arn)

    def ended() -> Any:
        (task,) = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
        return task if task["Status"] != "RUNNING" else None

    task = wait_until(ended, timeout=10, what="the move task")
    assert task["Status"] == "FAILED"
    assert task["FailureReason"] == "CouldNotDetermineMessageSource"
    assert task["ApproximateNumberOfMessagesMoved"] == 0
    assert [m["Body"] for m in _receive(sqs, dlq_url)] == ["direct"]
    # AND with the source as DestinationArn it moves
    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=arn)
    task = wait_until(ended, timeout=10, what="the second move task")
    assert (task["Status"], task["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 1)
    assert [m["Body"] for m in _receive(sqs, url)] == ["direct"]
