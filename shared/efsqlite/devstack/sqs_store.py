"""The local SQS's state: queues, messages, deduplication and move tasks in one SQLite file.

Every action runs under one lock in one transaction, committed before it returns, so the HTTP
answer (sent after) never acknowledges anything a SIGKILL could lose. See ``sqs.py`` for the
rules and docs/local-stack.md for what is emulated.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from efsqlite.core import engine
from efsqlite.devstack.exceptions import LocalStackError

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
SENDER_ID = "AIDAEFSQLITELOCALDEV"
#: SQS FIFO's deduplication interval, milliseconds.
DEDUP_WINDOW_MS = 300_000
MAX_BATCH = 10
MAX_MESSAGE_SIZE = 1_048_576
#: StartMessageMoveTask's highest MaxNumberOfMessagesPerSecond.
MAX_MOVE_RATE = 500
#: Sequence numbers are ``_SEQUENCE_BASE + n``: 20 digits, above 2**64 like AWS's; ``n`` is
#: ``max(last + 1, time_ns)``, so numbers issued by the old journal-based stack stay below.
_SEQUENCE_BASE = 2 * 10**19
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_GROUP = re.compile(r"^[\x21-\x7e]{1,128}$")  # alphanumerics and punctuation
_HANDLE = re.compile(r"^[A-Za-z0-9_-]{32}$")
_BAD_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SYSTEM_ATTRIBUTES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
_DEFAULTS = {
    "VisibilityTimeout": "30",
    "MaximumMessageSize": str(MAX_MESSAGE_SIZE),
    "MessageRetentionPeriod": "345600",
    "DelaySeconds": "0",
    "ReceiveMessageWaitTimeSeconds": "0",
    "SqsManagedSseEnabled": "true",
}
_RANGES = {
    "VisibilityTimeout": (0, 43200),
    "MaximumMessageSize": (1024, MAX_MESSAGE_SIZE),
    "MessageRetentionPeriod": (60, 1209600),
    "DelaySeconds": (0, 900),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}
_CHOICES = {
    "FifoQueue": ("true", "false"),
    "ContentBasedDeduplication": ("true", "false"),
    "DeduplicationScope": ("queue", "messageGroup"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
_FIFO_ONLY = {"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
_FREE = {"Policy", "KmsMasterKeyId", "SqsManagedSseEnabled", "RedriveAllowPolicy"}
_COMPUTED = {
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
}
_SETTABLE = {*_RANGES, *_FIFO_ONLY, *_FREE, "RedrivePolicy", "FifoQueue"}
#: Shape name -> the code AWS sends in ``x-amzn-query-error`` (what boto3 reports).
QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, attributes TEXT NOT NULL, created INTEGER NOT NULL,
    modified INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL, body TEXT NOT NULL,
    attributes TEXT, trace TEXT, group_id TEXT, dedup_id TEXT, sent INTEGER NOT NULL,
    visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive INTEGER, receipt TEXT, source TEXT);
CREATE INDEX IF NOT EXISTS messages_group ON messages (queue, group_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL, key TEXT NOT NULL, message_id TEXT NOT NULL, seq INTEGER NOT NULL,
    at INTEGER NOT NULL, PRIMARY KEY (queue, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_at ON dedup (queue, at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS move_tasks (
    handle TEXT PRIMARY KEY, source TEXT NOT NULL, destination TEXT, status TEXT NOT NULL,
    moved INTEGER NOT NULL, to_move INTEGER NOT NULL, high_seq INTEGER NOT NULL,
    rate INTEGER, started INTEGER NOT NULL, failure TEXT);
"""


class SqsError(LocalStackError):
    """An SQS error answer: the shape name (``__type``), its message, and the HTTP status."""

    def __init__(self, shape: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.shape = shape
        self.message = message
        self.status = status

    @property
    def query_code(self) -> str:
        return QUERY_CODES.get(self.shape, self.shape)


def _invalid(message: str) -> SqsError:
    return SqsError("InvalidParameterValue", message)


def _now() -> int:
    return int(time.time() * 1000)


# -- request fields ---------------------------------------------------------------------------
def _get(params: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = params.get(name)
    if value is None:
        if required:
            raise SqsError("MissingParameter", f"The request must contain the parameter {name}.")
        return None
    if kind is int and isinstance(value, bool):
        raise _invalid(f"{name} must be of type {kind.__name__}")
    if not isinstance(value, kind):
        raise _invalid(f"{name} must be of type {kind.__name__}")
    return value


def _int_in(params: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value: int | None = _get(params, name, int)
    if value is not None and not low <= value <= high:
        raise _invalid(f"Value {value} for parameter {name} is invalid. Must be {low}..{high}.")
    return value


def _strings(params: dict[str, Any], name: str) -> list[str]:
    values = _get(params, name, list) or []
    if not all(isinstance(v, str) for v in values):
        raise _invalid(f"{name} must be a list of strings")
    return list(values)


def md5_of_attributes(attributes: dict[str, dict[str, Any]]) -> str:
    """SQS's MD5OfMessageAttributes: length-prefixed name, type, transport byte and value."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        data_type = str(value["DataType"])
        for part in (name, data_type):
            encoded = part.encode()
            digest.update(struct.pack(">I", len(encoded)) + encoded)
        if "StringValue" in value:
            raw, transport = str(value["StringValue"]).encode(), b"\x01"
        else:
            raw, transport = base64.b64decode(value["BinaryValue"]), b"\x02"
        digest.update(transport + struct.pack(">I", len(raw)) + raw)
    return digest.hexdigest()


def _message_attributes(raw: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """Validated MessageAttributes and their size in bytes (counted against the limit)."""
    if raw is None:
        return {}, 0
    if not isinstance(raw, dict) or len(raw) > 10:
        raise _invalid("MessageAttributes must be a map of at most 10 attributes")
    size = 0
    clean: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", name)) or (
            name.lower().startswith(("aws.", "amazon."))
        ):
            raise _invalid(f"Message attribute name {name!r} is invalid")
        if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
            raise _invalid(f"Message attribute {name!r} must have a DataType")
        data_type = value["DataType"]
        base = data_type.split(".", 1)[0]
        if base in ("String", "Number") and isinstance(value.get("StringValue"), str):
            item = {"DataType": data_type, "StringValue": value["StringValue"]}
            size += len(value["StringValue"].encode())
        elif base == "Binary" and isinstance(value.get("BinaryValue"), str):
            try:
                size += len(base64.b64decode(value["BinaryValue"], validate=True))
            except ValueError:
                raise _invalid(f"Message attribute {name!r} is not valid base64") from None
            item = {"DataType": data_type, "BinaryValue": value["BinaryValue"]}
        else:
            raise _invalid(f"Message attribute {name!r} has an invalid type or value")
        size += len(name.encode()) + len(data_type.encode())
        clean[name] = item
    return clean, size


class QueueStore:
    """All queues of one local SQS. Thread-safe; every public method is one transaction."""

    def __init__(self, path: Path, *, endpoint: Callable[[], str], fsync: bool = False) -> None:
        self.path = path
        self._endpoint = endpoint
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.conn = engine.Connection(str(path))
        self.conn.execute("PRAGMA journal_mode=WAL")
        # OFF: a commit is write()s into the kernel before it returns, so a SIGKILL loses
        # nothing acknowledged; FULL adds fsync, for power loss (--journal-fsync).
        self.conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
        with self.conn:
            self.conn.execute(_SCHEMA)
        self._closed = False
        self._workers: list[threading.Thread] = []

    # -- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        with self.lock:
            self._closed = True
            self.changed.notify_all()
        for worker in self._workers:
            worker.join(5)
        with self.lock:
            self.conn.close()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, args))

    def url(self, name: str) -> str:
        return f"{self._endpoint()}/{ACCOUNT_ID}/{name}"

    @staticmethod
    def arn(name: str) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"

    def _queue(self, params: dict[str, Any], key: str = "QueueUrl") -> tuple[str, dict[str, str]]:
        url: str = _get(params, key, str, required=True)
        name = url.rstrip("/").rsplit("/", 1)[-1]
        rows = self._rows("SELECT attributes FROM queues WHERE name = ?", name)
        if not rows:
            raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
        attributes: dict[str, str] = json.loads(rows[0][0])
        return name, attributes

    def _by_arn(self, arn: str) -> tuple[str, dict[str, str]]:
        name = arn.rsplit(":", 1)[-1]
        if arn != self.arn(name):
            raise SqsError("ResourceNotFoundException", f"The resource {arn} does not exist.")
        return self._queue({"QueueUrl": name})

    def _next_seq(self) -> int:
        rows = self._rows("SELECT value FROM meta WHERE key = 'seq'")
        value = max((rows[0][0] + 1) if rows else 0, time.time_ns())
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (value,))
        return value

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one action; raises :class:`SqsError` for what SQS answers as an error."""
        method = getattr(self, "_op_" + re.sub(r"(?<!^)([A-Z])", r"_\1", action).lower(), None)
        if method is None or action not in ACTIONS:
            raise SqsError("UnsupportedOperation", f"{action} is not emulated by the local SQS.")
        with self.lock:
            if self._closed:
                raise SqsError("ServiceUnavailable", "the local SQS is stopping", status=503)
            with self.conn:
                result: dict[str, Any] = method(params)
            return result

    # -- queues -------------------------------------------------------------------------------
    def _check_attributes(self, name: str, given: dict[str, Any], fifo: bool) -> dict[str, str]:
        clean: dict[str, str] = {}
        for key, value in given.items():
            if key not in _SETTABLE or not isinstance(value, str):
                raise SqsError("InvalidAttributeName", f"Unknown or read-only attribute {key}.")
            if key in _RANGES:
                low, high = _RANGES[key]
                if not (value.isdigit() and low <= int(value) <= high):
                    raise SqsError("InvalidAttributeValue", f"Invalid value for {key}: {value}")
            elif key in _FIFO_ONLY and not fifo:
                raise SqsError("InvalidAttributeName", f"{key} is only valid for FIFO queues.")
            elif key in _CHOICES and value not in _CHOICES[key]:
                raise SqsError("InvalidAttributeValue", f"Invalid value for {key}: {value}")
            elif key == "RedrivePolicy" and value:
                value = self._check_redrive(value, fifo)
            clean[key] = value
        return clean

    def _check_redrive(self, value: str, fifo: bool) -> str:
        try:
            policy = json.loads(value)
            target = str(policy["deadLetterTargetArn"])
            count = int(policy["maxReceiveCount"])
        except (ValueError, KeyError, TypeError):
            raise SqsError("InvalidAttributeValue", f"Invalid RedrivePolicy: {value}") from None
        if not 1 <= count <= 1000:
            raise SqsError("InvalidAttributeValue", "maxReceiveCount must be 1..1000")
        try:
            dlq, _ = self._by_arn(target)
        except SqsError:
            raise SqsError(
                "InvalidAttributeValue", f"Dead-letter target {target} does not exist."
            ) from None
        if dlq.endswith(".fifo") != fifo:
            raise SqsError("InvalidAttributeValue", "A FIFO queue's DLQ must be FIFO (and back).")
        return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count})

    def _op_create_queue(self, params: dict[str, Any]) -> dict[str, Any]:
        name: str = _get(params, "QueueName", str, required=True)
        given = _get(params, "Attributes", dict) or {}
        fifo = given.get("FifoQueue") == "true"
        if not _NAME.match(name.removesuffix(".fifo")) or fifo != name.endswith(".fifo"):
            raise _invalid("Queue names are 1-80 alphanumerics, - or _; FIFO ones end in .fifo.")
        clean = self._check_attributes(name, given, fifo)
        rows = self._rows("SELECT attributes FROM queues WHERE name = ?", name)
        if rows:
            current = json.loads(rows[0][0])
            if any(current.get(k, _DEFAULTS.get(k)) != v for k, v in clean.items()):
                raise SqsError("QueueNameExists", f"A queue named {name} already exists.")
            return {"QueueUrl": self.url(name)}
        attributes = dict(_DEFAULTS, **clean)
        if fifo:
            attributes.setdefault("ContentBasedDeduplication", "false")
            attributes.setdefault("DeduplicationScope", "queue")
            attributes.setdefault("FifoThroughputLimit", "perQueue")
        now = _now()
        self.conn.execute(
            "INSERT INTO queues (name, attributes, created, modified) VALUES (?, ?, ?, ?)",
            (name, json.dumps(attributes), now, now),
        )
        return {"QueueUrl": self.url(name)}

    def _op_get_queue_url(self, params: dict[str, Any]) -> dict[str, Any]:
        name: str = _get(params, "QueueName", str, required=True)
        self._queue({"QueueUrl": name})
        return {"QueueUrl": self.url(name)}

    def _op_list_queues(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = _get(params, "QueueNamePrefix", str) or ""
        limit = _int_in(params, "MaxResults", 1, 1000) or 1000
        start = _get(params, "NextToken", str) or ""
        names = [
            n for (n,) in self._rows("SELECT name FROM queues WHERE name > ? ORDER BY name", start)
        ]
        names = [n for n in names if n.startswith(prefix)]
        result: dict[str, Any] = {}
        if names:
            result["QueueUrls"] = [self.url(n) for n in names[:limit]]
        if len(names) > limit and "MaxResults" in params:
            result["NextToken"] = names[limit - 1]
        return result

    def _op_delete_queue(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        for table in ("queues WHERE name", "messages WHERE queue", "dedup WHERE queue"):
            self.conn.execute(f"DELETE FROM {table} = ?", (name,))
        return {}

    def _op_purge_queue(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        self.conn.execute("DELETE FROM messages WHERE queue = ?", (name,))
        return {}

    def _op_set_queue_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        name, attributes = self._queue(params)
        given = _get(params, "Attributes", dict, required=True)
        fifo = name.endswith(".fifo")
        clean = self._check_attributes(name, given, fifo)
        if clean.get("FifoQueue", attributes.get("FifoQueue", "false")) != str(fifo).lower():
            raise SqsError("InvalidAttributeName", "FifoQueue cannot be changed.")
        attributes.update(clean)
        if not attributes.get("RedrivePolicy"):
            attributes.pop("RedrivePolicy", None)
        self.conn.execute(
            "UPDATE queues SET attributes = ?, modified = ? WHERE name = ?",
            (json.dumps(attributes), _now(), name),
        )
        self.changed.notify_all()
        return {}

    def _op_get_queue_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        name, attributes = self._queue(params)
        wanted = set(_strings(params, "AttributeNames"))
        known = _SETTABLE | _COMPUTED
        if wanted - known - {"All"}:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {sorted(wanted - known)}.")
        if "All" in wanted:
            wanted = known
        now = _now()
        ((visible, hidden, delayed),) = self._rows(
            "SELECT coalesce(sum(visible_at <= ?1), 0),"
            " coalesce(sum(visible_at > ?1 AND receive_count > 0), 0),"
            " coalesce(sum(visible_at > ?1 AND receive_count = 0), 0)"
            " FROM messages WHERE queue = ?2",
            now,
            name,
        )
        ((created, modified),) = self._rows(
            "SELECT created, modified FROM queues WHERE name = ?", name
        )
        values = dict(
            attributes,
            ApproximateNumberOfMessages=str(visible),
            ApproximateNumberOfMessagesNotVisible=str(hidden),
            ApproximateNumberOfMessagesDelayed=str(delayed),
            CreatedTimestamp=str(created // 1000),
            LastModifiedTimestamp=str(modified // 1000),
            QueueArn=self.arn(name),
        )
        found = {k: v for k, v in values.items() if k in wanted}
        return {"Attributes": found} if found else {}

    def _op_list_dead_letter_source_queues(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        return {"queueUrls": [self.url(n) for n in self._sources(name)]}

    def _sources(self, dlq: str) -> list[str]:
        found = []
        for source, raw in self._rows("SELECT name, attributes FROM queues ORDER BY name"):
            policy = json.loads(raw).get("RedrivePolicy")
            if policy and json.loads(policy)["deadLetterTargetArn"] == self.arn(dlq):
                found.append(source)
        return found

    # -- sending ------------------------------------------------------------------------------
    def _send_one(self, name: str, attributes: dict[str, str], entry: dict[str, Any]) -> Any:
        """Validate and enqueue one message; returns the answer's fields (no Id)."""
        body: str = _get(entry, "MessageBody", str, required=True)
        if not body:
            raise _invalid("The message body must be at least one character.")
        if _BAD_CHARS.search(body):
            raise SqsError("InvalidMessageContents", "Invalid characters found in the body.")
        message_attributes, attributes_size = _message_attributes(entry.get("MessageAttributes"))
        trace = _get(entry, "MessageSystemAttributes", dict) or {}
        size = len(body.encode()) + attributes_size
        limit = int(attributes["MaximumMessageSize"])
        if size > limit:
            raise _invalid(f"Message must be shorter than {limit} bytes (it is {size}).")
        fifo = name.endswith(".fifo")
        delay = _int_in(entry, "DelaySeconds", 0, 900)
        group: str | None = _get(entry, "MessageGroupId", str)
        dedup: str | None = _get(entry, "MessageDeduplicationId", str)
        if fifo:
            if delay is not None:
                raise _invalid("DelaySeconds is not valid for a FIFO queue's messages.")
            if group is None:
                raise SqsError("MissingParameter", "The request must contain MessageGroupId.")
            if dedup is None and attributes.get("ContentBasedDeduplication") == "true":
                dedup = hashlib.sha256(body.encode()).hexdigest()
            if dedup is None:
                raise _invalid(
                    "The queue should either have ContentBasedDeduplication enabled or "
                    "MessageDeduplicationId provided explicitly"
                )
            for label, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
                if not _GROUP.match(value):
                    raise _invalid(f"{label} must be 1-128 alphanumerics or punctuation.")
        elif dedup is not None:
            raise _invalid("MessageDeduplicationId is only valid for FIFO queues.")
        now = _now()
        answer: dict[str, Any] = {"MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest()}
        if message_attributes:
            answer["MD5OfMessageAttributes"] = md5_of_attributes(message_attributes)
        key = None
        if fifo and dedup is not None:
            key = (
                f"{group}\x00{dedup}"
                if attributes.get("DeduplicationScope") == "messageGroup"
                else dedup
            )
            self.conn.execute(
                "DELETE FROM dedup WHERE queue = ? AND at <= ?", (name, now - DEDUP_WINDOW_MS)
            )
            seen = self._rows(
                "SELECT message_id, seq FROM dedup WHERE queue = ? AND key = ?", name, key
            )
            if seen:
                # Accepted, not delivered. DO answer with the original's id and sequence
                # number, so the sender's bookmark stays meaningful.
                answer.update(MessageId=seen[0][0], SequenceNumber=str(_SEQUENCE_BASE + seen[0][1]))
                return answer
        seq = self._next_seq()
        message_id = str(uuid.uuid4())
        visible_at = now + 1000 * (delay if delay is not None else int(attributes["DelaySeconds"]))
        self.conn.execute(
            "INSERT INTO messages (seq, queue, message_id, body, attributes, trace, group_id,"
            " dedup_id, sent, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                name,
                message_id,
                body,
                json.dumps(message_attributes) if message_attributes else None,
                json.dumps(trace) if trace else None,
                group,
                dedup,
                now,
                visible_at,
            ),
        )
        if key is not None:
            self.conn.execute(
                "INSERT INTO dedup (queue, key, message_id, seq, at) VALUES (?, ?, ?, ?, ?)",
                (name, key, message_id, seq, now),
            )
        answer["MessageId"] = message_id
        if fifo:
            answer["SequenceNumber"] = str(_SEQUENCE_BASE + seq)
        self.changed.notify_all()
        return answer

    def _op_send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        name, attributes = self._queue(params)
        result: dict[str, Any] = self._send_one(name, attributes, params)
        return result

    def _entries(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        entries = _get(params, "Entries", list, required=True)
        if not entries:
            raise SqsError("EmptyBatchRequest", "There should be at least one entry.")
        if len(entries) > MAX_BATCH:
            raise SqsError("TooManyEntriesInBatchRequest", f"Maximum {MAX_BATCH} entries.")
        if not all(isinstance(e, dict) for e in entries):
            raise _invalid("Entries must be objects.")
        ids = [e.get("Id") for e in entries]
        for entry_id in ids:
            if not isinstance(entry_id, str) or not _BATCH_ID.match(entry_id):
                raise SqsError("InvalidBatchEntryId", f"Invalid batch entry id {entry_id!r}.")
        if len(set(ids)) != len(ids):
            raise SqsError("BatchEntryIdsNotDistinct", "Two or more entries share an Id.")
        return list(entries)

    def _batch(
        self, params: dict[str, Any], one: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        successful, failed = [], []
        for entry in self._entries(params):
            try:
                successful.append({"Id": entry["Id"], **one(entry)})
            except SqsError as exc:
                failed.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": True,
                        "Code": exc.query_code,
                        "Message": exc.message,
                    }
                )
        return {"Successful": successful, "Failed": failed}

    def _op_send_message_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        name, attributes = self._queue(params)
        entries = self._entries(params)
        total = sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
        total += sum(
            _message_attributes(e.get("MessageAttributes"))[1]
            for e in entries
            if isinstance(e.get("MessageAttributes"), dict)
        )
        if total > int(attributes["MaximumMessageSize"]):
            raise SqsError(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than "
                f"{attributes['MaximumMessageSize']} bytes (this is {total}).",
            )
        return self._batch(params, lambda e: self._send_one(name, attributes, e))

    # -- receiving ----------------------------------------------------------------------------
    def receive(self, params: dict[str, Any]) -> dict[str, Any]:
        """ReceiveMessage, long polling outside the transaction (woken by any change)."""
        with self.lock:
            _, attributes = self._queue(params)
            wait = _int_in(params, "WaitTimeSeconds", 0, 20)
            if wait is None:
                wait = int(attributes["ReceiveMessageWaitTimeSeconds"])
            deadline = time.monotonic() + wait
            while True:
                result = self.call("ReceiveMessage", params)
                left = deadline - time.monotonic()
                if result.get("Messages") or left <= 0 or self._closed:
                    return result
                # Woken by sends and changes; 0.2 s bounds the wait for a visibility expiry.
                self.changed.wait(min(left, 0.2))

    def _op_receive_message(self, params: dict[str, Any]) -> dict[str, Any]:
        name, attributes = self._queue(params)
        count = _int_in(params, "MaxNumberOfMessages", 1, 10) or 1
        timeout = _int_in(params, "VisibilityTimeout", 0, 43200)
        if timeout is None:
            timeout = int(attributes["VisibilityTimeout"])
        _int_in(params, "WaitTimeSeconds", 0, 20)
        _get(params, "ReceiveRequestAttemptId", str)  # accepted, not used (no retry dedup)
        system = set(_strings(params, "AttributeNames")) | set(
            _strings(params, "MessageSystemAttributeNames")
        )
        user = _strings(params, "MessageAttributeNames")
        now = _now()
        retention = int(attributes["MessageRetentionPeriod"]) * 1000
        self.conn.execute(
            "DELETE FROM messages WHERE queue = ? AND sent < ?", (name, now - retention)
        )
        policy = json.loads(attributes.get("RedrivePolicy") or "null")
        taken = self._pick(name, count, now, policy)
        messages = []
        for seq in taken:
            receipt = secrets.token_urlsafe(24)
            self.conn.execute(
                "UPDATE messages SET receipt = ?, receive_count = receive_count + 1,"
                " first_receive = coalesce(first_receive, ?), visible_at = ? WHERE seq = ?",
                (receipt, now, now + 1000 * timeout, seq),
            )
            messages.append(self._render(seq, system, user))
        return {"Messages": messages} if messages else {}

    def _pick(self, name: str, count: int, now: int, policy: Any) -> list[int]:
        """Up to ``count`` messages to deliver, FIFO groups honoured; moves expired poison."""
        taken: list[int] = []
        if not name.endswith(".fifo"):
            rows = self._rows(
                "SELECT seq, receive_count FROM messages WHERE queue = ? AND visible_at <= ?"
                " ORDER BY seq LIMIT ?",
                name,
                now,
                count * 2,
            )
            for seq, received in rows:
                if policy and received >= policy["maxReceiveCount"]:
                    self._move(seq, name, policy["deadLetterTargetArn"], now)
                elif len(taken) < count:
                    taken.append(seq)
            return taken
        # A group with a message in flight is closed; so is one whose head is not visible
        # (delayed). DON'T look past a group's first message that is not visible.
        closed = {
            g
            for (g,) in self._rows(
                "SELECT DISTINCT group_id FROM messages WHERE queue = ? AND receive_count > 0"
                " AND visible_at > ?",
                name,
                now,
            )
        }
        heads = self._rows(
            "SELECT group_id, min(seq) AS head FROM messages WHERE queue = ? GROUP BY group_id"
            " ORDER BY head",
            name,
        )
        for group, _ in heads:
            if group in closed:
                continue
            after = -1
            while len(taken) < count:
                rows = self._rows(
                    "SELECT seq, visible_at, receive_count FROM messages WHERE queue = ? AND"
                    " group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    name,
                    group,
                    after,
                    count - len(taken),
                )
                for seq, visible_at, received in rows:
                    after = seq
                    if visible_at > now:
                        break
                    if policy and received >= policy["maxReceiveCount"]:
                        # As SQS: at the receive that would have returned it, not at expiry.
                        self._move(seq, name, policy["deadLetterTargetArn"], now)
                        continue
                    taken.append(seq)
                else:
                    if rows:
                        continue
                break
            if len(taken) >= count:
                break
        return taken

    def _move(
        self, seq: int, source: str, target_arn: str, now: int, *, redrive: bool = False
    ) -> None:
        """Move a message to another queue, with a new sequence number.

        To a DLQ (``redrive`` false) it keeps its id, group and receive count, and, FIFO, its
        deduplication id becomes its message id, as SQS documents. Redriven by a move task it
        is a new message: a new id, receive count 0, retention from now, no source.
        """
        target, attributes = self._by_arn(target_arn)
        delay = int(attributes["DelaySeconds"]) * 1000 if redrive else 0
        self.conn.execute(
            "UPDATE messages SET seq = ?, queue = ?, receipt = NULL, sent = ?, visible_at = ?,"
            " source = ?,"
            " dedup_id = CASE WHEN dedup_id IS NULL OR ? THEN dedup_id ELSE message_id END,"
            " message_id = coalesce(?, message_id),"
            " receive_count = CASE WHEN ? THEN 0 ELSE receive_count END,"
            " first_receive = CASE WHEN ? THEN NULL ELSE first_receive END WHERE seq = ?",
            (
                self._next_seq(),
                target,
                now,
                now + delay,
                None if redrive else source,
                redrive,
                str(uuid.uuid4()) if redrive else None,
                redrive,
                redrive,
                seq,
            ),
        )
        self.changed.notify_all()

    def _render(self, seq: int, system: set[str], user: list[str]) -> dict[str, Any]:
        ((message_id, body, attrs, trace, group, dedup, sent, received, first, receipt, src),) = (
            self._rows(
                "SELECT message_id, body, attributes, trace, group_id, dedup_id, sent,"
                " receive_count, first_receive, receipt, source FROM messages WHERE seq = ?",
                seq,
            )
        )
        fifo = group is not None
        values = {
            "SenderId": SENDER_ID,
            "SentTimestamp": str(sent),
            "ApproximateReceiveCount": str(received),
            "ApproximateFirstReceiveTimestamp": str(first),
            "SequenceNumber": str(_SEQUENCE_BASE + seq) if fifo else None,
            "MessageDeduplicationId": dedup,
            "MessageGroupId": group,
            "AWSTraceHeader": (json.loads(trace).get("AWSTraceHeader") or {}).get("StringValue")
            if trace
            else None,
            "DeadLetterQueueSourceArn": self.arn(src) if src else None,
        }
        wanted = set(_SYSTEM_ATTRIBUTES) if "All" in system else system
        message: dict[str, Any] = {
            "MessageId": message_id,
            "ReceiptHandle": receipt,
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "Body": body,
        }
        chosen = {k: v for k, v in values.items() if k in wanted and v is not None}
        if chosen:
            message["Attributes"] = chosen
        if attrs and user:
            every: dict[str, Any] = json.loads(attrs)
            picked = {
                k: v
                for k, v in every.items()
                if any(
                    u in ("All", ".*") or u == k or (u.endswith(".*") and k.startswith(u[:-1]))
                    for u in user
                )
            }
            if picked:
                message["MessageAttributes"] = picked
                message["MD5OfMessageAttributes"] = md5_of_attributes(picked)
        return message

    # -- settling -----------------------------------------------------------------------------
    def _current(self, name: str, handle: Any) -> tuple[int, int, int] | None:
        """(seq, visible_at, receive_count) of the message this handle is current for."""
        if not isinstance(handle, str) or not _HANDLE.match(handle):
            raise SqsError("ReceiptHandleIsInvalid", f"The receipt handle {handle!r} is invalid.")
        rows = self._rows(
            "SELECT seq, visible_at, receive_count FROM messages WHERE queue = ? AND receipt = ?",
            name,
            handle,
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def _delete_one(self, name: str, entry: dict[str, Any]) -> dict[str, Any]:
        found = self._current(name, _get(entry, "ReceiptHandle", str, required=True))
        # A stale handle (the message was received again since, or is gone) is accepted and
        # deletes nothing, as SQS documents.
        if found is not None:
            self.conn.execute("DELETE FROM messages WHERE seq = ?", (found[0],))
            self.changed.notify_all()
        return {}

    def _change_one(self, name: str, entry: dict[str, Any]) -> dict[str, Any]:
        handle = _get(entry, "ReceiptHandle", str, required=True)
        timeout = _int_in(entry, "VisibilityTimeout", 0, 43200)
        if timeout is None:
            raise SqsError("MissingParameter", "The request must contain VisibilityTimeout.")
        found = self._current(name, handle)
        now = _now()
        if found is None:
            raise _invalid(
                f"Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does "
                "not exist or is not available for visibility timeout change."
            )
        if found[1] <= now:
            raise SqsError("MessageNotInflight", "The message is not in flight.")
        self.conn.execute(
            "UPDATE messages SET visible_at = ? WHERE seq = ?", (now + 1000 * timeout, found[0])
        )
        self.changed.notify_all()
        return {}

    def _op_delete_message(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        return self._delete_one(name, params)

    def _op_delete_message_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        return self._batch(params, lambda e: self._delete_one(name, e))

    def _op_change_message_visibility(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        return self._change_one(name, params)

    def _op_change_message_visibility_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        name, _ = self._queue(params)
        return self._batch(params, lambda e: self._change_one(name, e))

    # -- message move tasks (DLQ redrive) -----------------------------------------------------
    def _op_start_message_move_task(self, params: dict[str, Any]) -> dict[str, Any]:
        # AWS's checks, in AWS's order, with its codes and messages.
        source_arn: str = _get(params, "SourceArn", str, required=True)
        source = self._task_queue(source_arn, "SourceArn")
        rate = _get(params, "MaxNumberOfMessagesPerSecond", int)
        if rate is not None and not 1 <= rate <= MAX_MOVE_RATE:
            raise _invalid(
                f"Value {rate} for parameter MaxNumberOfMessagesPerSecond is invalid. "
                f"Reason: Must be between 1 and {MAX_MOVE_RATE}."
            )
        if not self._sources(source):
            raise _invalid("Source queue must be configured as a Dead Letter Queue.")
        destination: str | None = _get(params, "DestinationArn", str) or None
        if destination is not None:
            target = self._task_queue(destination, "DestinationArn")
            if target.endswith(".fifo") != source.endswith(".fifo"):
                raise _invalid("The source and destination queues must be of the same type.")
        if self._rows("SELECT 1 FROM move_tasks WHERE source = ? AND status = 'RUNNING'", source):
            raise _invalid(
                "There is already a task running. Only one active task is allowed for a source "
                "queue arn at a given time."
            )
        ((high, total),) = self._rows(
            "SELECT coalesce(max(seq), 0), count(*) FROM messages WHERE queue = ?", source
        )
        # AWS's handle: base64 of {"taskId", "sourceArn"}; CancelMessageMoveTask reads both.
        handle = base64.b64encode(
            json.dumps(
                {"taskId": str(uuid.uuid4()), "sourceArn": source_arn}, separators=(",", ":")
            ).encode()
        ).decode()
        self.conn.execute(
            "INSERT INTO move_tasks (handle, source, destination, status, moved, to_move,"
            " high_seq, rate, started) VALUES (?, ?, ?, 'RUNNING', 0, ?, ?, ?, ?)",
            (handle, source, destination, total, high, rate, _now()),
        )
        self._run_task(handle)
        return {"TaskHandle": handle}

    def _task_queue(self, arn: str, parameter: str) -> str:
        """The queue a move-task ARN names, or AWS's ResourceNotFoundException."""
        try:
            name, _ = self._by_arn(arn)
        except SqsError:
            raise SqsError(
                "ResourceNotFoundException",
                f"The resource that you specified for the {parameter} parameter doesn't exist.",
            ) from None
        return name

    def resume_tasks(self) -> None:
        """Restart the move tasks that were running when the stack stopped or died."""
        with self.lock:
            for (handle,) in self._rows("SELECT handle FROM move_tasks WHERE status = 'RUNNING'"):
                self._run_task(handle)

    def _run_task(self, handle: str) -> None:
        worker = threading.Thread(
            target=self._move_task, args=(handle,), name="efsqlite-sqs-move", daemon=True
        )
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _move_task(self, handle: str) -> None:
        while True:
            with self.lock:
                if self._closed:
                    return
                ((source, destination, status, high, rate),) = self._rows(
                    "SELECT source, destination, status, high_seq, rate FROM move_tasks"
                    " WHERE handle = ?",
                    handle,
                )
                if status != "RUNNING":
                    return
                with self.conn:
                    done = self._move_some(handle, source, destination, high, rate or 100)
                if done:
                    return
            time.sleep(1.0 if rate else 0.01)

    def _move_some(
        self, handle: str, source: str, destination: str | None, high: int, limit: int
    ) -> bool:
        now = _now()
        rows = self._rows(
            "SELECT seq, source FROM messages WHERE queue = ? AND seq <= ? AND visible_at <= ?"
            " ORDER BY seq LIMIT ?",
            source,
            high,
            now,
            limit,
        )
        for seq, origin in rows:
            target = destination or (self.arn(origin) if origin else None)
            # As AWS: a message sent to the DLQ directly has no source to go back to (the
            # task fails; pass DestinationArn to move it), and a deleted destination fails it.
            reason = "CouldNotDetermineMessageSource" if target is None else None
            if target is not None:
                try:
                    self._by_arn(target)
                except SqsError as exc:
                    reason = exc.query_code
            if reason is not None:
                self.conn.execute(
                    "UPDATE move_tasks SET status = 'FAILED', failure = ? WHERE handle = ?",
                    (reason, handle),
                )
                return True
            assert target is not None
            self._move(seq, source, target, now, redrive=True)
            self.conn.execute("UPDATE move_tasks SET moved = moved + 1 WHERE handle = ?", (handle,))
        if len(rows) < limit:
            self.conn.execute(
                "UPDATE move_tasks SET status = 'COMPLETED' WHERE handle = ?", (handle,)
            )
            return True
        return False

    def _op_list_message_move_tasks(self, params: dict[str, Any]) -> dict[str, Any]:
        source_arn: str = _get(params, "SourceArn", str, required=True)
        source = self._task_queue(source_arn, "SourceArn")
        limit = _get(params, "MaxResults", int)
        if limit is not None and not 1 <= limit <= 10:
            raise _invalid(
                f"Value {limit} for parameter MaxResults is invalid. Reason: Must be between 1 "
                "and 10."
            )
        results = []
        for handle, destination, status, moved, to_move, rate, started, failure in self._rows(
            "SELECT handle, destination, status, moved, to_move, rate, started, failure FROM"
            " move_tasks WHERE source = ? ORDER BY started DESC, rowid DESC LIMIT ?",
            source,
            limit or 1,
        ):
            entry: dict[str, Any] = {
                "Status": status,
                "SourceArn": source_arn,
                "ApproximateNumberOfMessagesMoved": moved,
                "ApproximateNumberOfMessagesToMove": to_move,
                "StartedTimestamp": started,
            }
            if status == "RUNNING":
                entry["TaskHandle"] = handle
            if destination:
                entry["DestinationArn"] = destination
            if rate:
                entry["MaxNumberOfMessagesPerSecond"] = rate
            if failure:
                entry["FailureReason"] = failure
            results.append(entry)
        return {"Results": results}

    def _op_cancel_message_move_task(self, params: dict[str, Any]) -> dict[str, Any]:
        handle: str = _get(params, "TaskHandle", str, required=True)
        try:
            decoded = json.loads(base64.b64decode(handle, validate=True))
            source_arn = decoded["sourceArn"]
            if not isinstance(source_arn, str) or not isinstance(decoded["taskId"], str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise _invalid("Value for parameter TaskHandle is invalid.") from None
        self._task_queue(source_arn, "SourceArn")
        rows = self._rows("SELECT status, moved FROM move_tasks WHERE handle = ?", handle)
        if not rows or rows[0][0] != "RUNNING":  # AWS: only a running task "exists" here
            raise SqsError("ResourceNotFoundException", "Task does not exist.")
        self.conn.execute("UPDATE move_tasks SET status = 'CANCELLED' WHERE handle = ?", (handle,))
        return {"ApproximateNumberOfMessagesMoved": rows[0][1]}

    def counts(self) -> int:
        with self.lock:
            ((total,),) = self._rows("SELECT count(*) FROM messages")
            return int(total)


ACTIONS = frozenset(
    {
        "CreateQueue",
        "GetQueueUrl",
        "ListQueues",
        "DeleteQueue",
        "PurgeQueue",
        "GetQueueAttributes",
        "SetQueueAttributes",
        "ListDeadLetterSourceQueues",
        "SendMessage",
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "StartMessageMoveTask",
        "ListMessageMoveTasks",
        "CancelMessageMoveTask",
    }
)
