"""The queue and its DLQ as operations see them: message counts, ARNs, the redrive policy.

Shared by :mod:`efsqlite.client.status` and :mod:`efsqlite.client.redrive`; every function
takes a boto3 SQS client, so callers bring their own credentials (``connect_sqs`` builds one
from :class:`~efsqlite.client.Endpoints` the way the rest of the library does).

DO find the DLQ through the queue's ``RedrivePolicy`` when only the queue URL is known: it is
the one SQS redrives to, whatever the stack's naming. DON'T guess it from the queue's name.
DO treat counts as approximate: SQS's ``ApproximateNumberOf*`` attributes lag by seconds.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from efsqlite.client import Endpoints, _client, _describe
from efsqlite.client.exceptions import QueueError

COUNT_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """A queue's approximate message counts."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def held(self) -> int:
        """Messages the queue holds and may deliver again: visible plus in flight."""
        return self.visible + self.in_flight

    def as_dict(self) -> dict[str, int]:
        """The JSON form ``efsqlite status --json`` prints."""
        return {"visible": self.visible, "in_flight": self.in_flight, "delayed": self.delayed}


def queue_counts(sqs: Any, url: str | None) -> QueueCounts | None:
    """The counts of the queue at ``url`` (``None`` when no URL is known).

    Raises :class:`~efsqlite.client.exceptions.QueueError` if SQS cannot be reached.
    """
    if not url:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(COUNT_ATTRIBUTES))[
            "Attributes"
        ]
    except (BotoCoreError, ClientError) as exc:
        raise QueueError(f"cannot reach the queue {url}: {_describe(exc)}") from None
    return QueueCounts(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def queue_arn(sqs: Any, url: str) -> str:
    """The ARN of the queue at ``url`` (botocore errors propagate)."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def find_dlq_url(sqs: Any, queue_url: str) -> str | None:
    """The DLQ's URL from the queue's ``RedrivePolicy``; ``None`` if it has none (or SQS
    cannot say)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
        policy = json.loads(attributes["Attributes"]["RedrivePolicy"])
        arn = str(policy["deadLetterTargetArn"])
        account, name = arn.split(":")[4], arn.split(":")[5]
        found = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
        return str(found["QueueUrl"])
    except (BotoCoreError, ClientError, KeyError, ValueError, IndexError):
        return None


def connect_sqs(endpoints: Endpoints, session: Any | None = None) -> tuple[Any, Endpoints]:
    """An SQS client for ``endpoints``, and the endpoints with ``dlq_url`` filled in from the
    queue's redrive policy when only the queue URL was given."""
    sqs = _client("sqs", endpoints, session)
    if endpoints.queue_url and not endpoints.dlq_url:
        dlq_url = find_dlq_url(sqs, endpoints.queue_url)
        if dlq_url:
            endpoints = dataclasses.replace(endpoints, dlq_url=dlq_url)
    return sqs, endpoints


@dataclass(frozen=True, slots=True)
class PeekedMessage:
    """A message as a look at a queue shows it, without taking it."""

    message_id: str
    body: str
    group: str | None
    receive_count: int
    sent_ms: int | None

    def command_ids(self) -> list[str]:
        """The ids of the commands its body carries: one command or a packed envelope's
        (empty when the body is not a command)."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return []
        if not isinstance(body, dict):
            return []
        packed = body.get("commands")
        items: list[Any] = packed if isinstance(packed, list) else [body]
        return [
            str(item["id"])
            for item in items
            if isinstance(item, dict) and isinstance(item.get("id"), str)
        ]


def peek_messages(sqs: Any, url: str, *, limit: int = 10) -> list[PeekedMessage]:
    """Up to ``limit`` (at most 10) of the queue's visible messages, left where they are, as the
    SQS console's "poll for messages" shows them: received with a visibility timeout of 0, so
    they are visible again at once. Like any receive it adds one to their receive count, and a
    FIFO queue answers the first messages of its groups.

    Raises :class:`~efsqlite.client.exceptions.QueueError` if SQS cannot be reached.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, limit)),
            VisibilityTimeout=0,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
        )
    except (BotoCoreError, ClientError) as exc:
        raise QueueError(f"cannot read the queue {url}: {_describe(exc)}") from None
    found = []
    for message in response.get("Messages") or []:
        attributes = message.get("Attributes") or {}
        sent = attributes.get("SentTimestamp")
        found.append(
            PeekedMessage(
                message_id=str(message.get("MessageId", "")),
                body=str(message.get("Body", "")),
                group=attributes.get("MessageGroupId"),
                receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
                sent_ms=int(sent) if sent else None,
            )
        )
    return found
