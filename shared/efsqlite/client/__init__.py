"""Producers' and readers' client: the same code against the local stack or AWS.

``WriteClient`` sends wire format v1 commands to the FIFO queue; ``ReadClient`` queries the
reader Lambda and asks for command outcomes, through Lambda Invoke. Both take a boto3 session
or client, so callers bring their own credentials and region. Without explicit queue URL or
function name they read ``endpoints.json``, written by ``efsqlite dev``.

Where things go (see docs/client.md):

- ``send_many`` packs the commands for each database into as few messages as
  ``MAX_MESSAGE_BYTES`` allows, and sends them ten at a time with SendMessageBatch (whose
  total payload has the same limit), one database's messages in order. Only failed entries are
  retried.
- Every command is validated with the wire format's own models before anything is sent.

DO use the command id as the idempotency key: resending an id is always safe (the writer's
ledger applies an id once). DON'T reuse an id for a different command.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from efsqlite.client.exceptions import (
    ClientConfigError,
    DeadLetteredError,
    InvalidCommandError,
    ReaderInvokeError,
    ReadRequestError,
    SendError,
    WaitTimeoutError,
)
from efsqlite.client.explain import blocked_line, describe_failure, unknown_database_line
from efsqlite.core.ledger import CommandStatus as CommandStatus
from efsqlite.core.ledger import LedgerSummary as LedgerSummary
from efsqlite.core.position import Position
from efsqlite.read import answers
from efsqlite.read.answers import QueryResult as QueryResult
from efsqlite.write.exceptions import MessageTooLargeError
from efsqlite.write.wire import (
    MAX_MESSAGE_BYTES,
    MAX_PACKED_COMMANDS,
    AnyCommand,
    Command,
    summarize_validation,
    validation_problems,
)

ENDPOINTS_ENV = "EFSQLITE_ENDPOINTS"
QUEUE_URL_ENV = "EFSQLITE_QUEUE_URL"
DLQ_URL_ENV = "EFSQLITE_DLQ_URL"
READER_FUNCTION_ENV = "EFSQLITE_READER_FUNCTION"
DEFAULT_ENDPOINTS = Path(".efsqlite") / "endpoints.json"
#: SendMessageBatch takes at most 10 entries.
MAX_BATCH_ENTRIES = 10
#: Characters SQS accepts in a MessageDeduplicationId (alphanumerics and punctuation).
_DEDUP_OK = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
_COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(Command)


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the queue and the reader are: from ``endpoints.json`` or given explicitly."""

    queue_url: str | None = None
    reader_function: str | None = None
    dlq_url: str | None = None
    sqs_endpoint: str | None = None
    lambda_endpoint: str | None = None
    databases_dir: Path | None = None
    region: str | None = None
    #: Where these came from: ``"explicit"`` or the endpoints file's path (named in errors).
    source: str = "explicit"

    @property
    def local(self) -> bool:
        """True for the local stack: endpoint URLs set, any credentials accepted."""
        return self.sqs_endpoint is not None or self.lambda_endpoint is not None

    @classmethod
    def from_file(cls, path: Path) -> Endpoints:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClientConfigError(
                f"no local stack found: {path} does not exist. Start one with `efsqlite dev`, "
                "or pass --queue-url / --function-name for AWS"
            ) from None
        except (OSError, ValueError) as exc:
            raise ClientConfigError(f"cannot read {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ClientConfigError(f"{path} is not a JSON object")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "explicit") -> Endpoints:
        """The endpoints in an ``endpoints.json`` object (keys it does not know are ignored)."""

        def text(key: str) -> str | None:
            value = raw.get(key)
            return str(value) if value else None

        def folder(key: str) -> Path | None:
            value = text(key)
            return Path(value) if value else None

        return cls(
            queue_url=text("queue_url"),
            reader_function=text("reader_function"),
            dlq_url=text("dlq_url"),
            sqs_endpoint=text("sqs_endpoint"),
            lambda_endpoint=text("lambda_endpoint"),
            databases_dir=folder("databases_dir"),
            region=text("region"),
            source=source,
        )


def resolve_endpoints(
    *,
    queue_url: str | None = None,
    function_name: str | None = None,
    dlq_url: str | None = None,
    endpoints_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    region: str | None = None,
) -> Endpoints:
    """Explicit values, then ``EFSQLITE_QUEUE_URL``/``EFSQLITE_READER_FUNCTION``, then the
    endpoints file (``--endpoints``, ``EFSQLITE_ENDPOINTS``, or ``<data-dir>/endpoints.json``).
    """
    queue_url = queue_url or os.environ.get(QUEUE_URL_ENV) or None
    function_name = function_name or os.environ.get(READER_FUNCTION_ENV) or None
    dlq_url = dlq_url or os.environ.get(DLQ_URL_ENV) or None
    if queue_url or function_name:
        return Endpoints(
            queue_url=queue_url,
            reader_function=function_name,
            dlq_url=dlq_url,
            region=region,
            source="explicit",
        )
    if endpoints_file is not None:
        path = Path(endpoints_file)
    elif os.environ.get(ENDPOINTS_ENV):
        path = Path(os.environ[ENDPOINTS_ENV])
    elif data_dir is not None:
        path = Path(data_dir) / "endpoints.json"
    else:
        path = DEFAULT_ENDPOINTS
    return Endpoints.from_file(path)


#: What each client needs from its endpoints, and how a user gives it.
_NEEDS = {
    "queue_url": ("queue URL", f"pass queue_url or set {QUEUE_URL_ENV}"),
    "reader_function": ("reader function", f"pass function_name or set {READER_FUNCTION_ENV}"),
}


def _endpoint(endpoints: Endpoints, field: str, explicit: str | None) -> str:
    """The endpoints' ``field`` (an explicit value wins); refuses one that is unset."""
    value = explicit or getattr(endpoints, field)
    if not value:
        what, hint = _NEEDS[field]
        where = "" if endpoints.source == "explicit" else f" in {endpoints.source}"
        raise ClientConfigError(f"no {what}{where}: {hint}")
    return str(value)


def _client(service: str, endpoints: Endpoints, session: Any | None) -> Any:
    import boto3

    if endpoints.local:
        from botocore.config import Config

        url = endpoints.sqs_endpoint if service == "sqs" else endpoints.lambda_endpoint
        # The local stack checks no signature; fixed keys spare users an AWS profile. A
        # stopped stack refuses connections at once: fail fast instead of retrying for long.
        return (session or boto3.Session()).client(
            service,
            endpoint_url=url,
            region_name=endpoints.region or "us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=120,
            ),
        )
    kwargs = {"region_name": endpoints.region} if endpoints.region else {}
    return (session or boto3.Session()).client(service, **kwargs)


# -- commands ---------------------------------------------------------------------------------
def new_command_id() -> str:
    """A fresh idempotency key. Keep it with the command: resending it must reuse it."""
    return f"c-{uuid.uuid4().hex}"


def sql_command(
    db: str,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    expect_schema: int | None = None,
) -> dict[str, Any]:
    """A raw-SQL command (one statement) as a wire format v1 dict."""
    command: dict[str, Any] = {
        "v": 1,
        "id": id or new_command_id(),
        "db": db,
        "statements": [{"sql": sql, "params": _params(params)}],
    }
    if expect_schema is not None:
        command["expect_schema"] = expect_schema
    return command


def named_command(
    db: str,
    name: str,
    args: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    expect_schema: int | None = None,
) -> dict[str, Any]:
    """A named command from the deployer's registry as a wire format v1 dict."""
    command: dict[str, Any] = {
        "v": 1,
        "id": id or new_command_id(),
        "db": db,
        "command": name,
        "args": dict(args or {}),
    }
    if expect_schema is not None:
        command["expect_schema"] = expect_schema
    return command


def _params(params: Sequence[Any] | Mapping[str, Any] | None) -> list[Any] | dict[str, Any]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        return dict(params)
    return list(params)


def dedup_id(command_id: str) -> str:
    """The MessageDeduplicationId for one command: its id, hashed if SQS would refuse it."""
    if _DEDUP_OK.fullmatch(command_id):
        return command_id
    return "h-" + hashlib.sha256(command_id.encode("utf-8")).hexdigest()


def packed_dedup_id(command_ids: Sequence[str]) -> str:
    """A packed message's deduplication id: a hash of its command ids, in order."""
    digest = hashlib.sha256()
    for command_id in command_ids:
        encoded = command_id.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    return "p-" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class EncodedCommand:
    """A validated command and its JSON text, as it will travel."""

    id: str
    db: str
    text: str

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


def encode_command(command: Mapping[str, Any] | AnyCommand) -> EncodedCommand:
    """Validate ``command`` exactly as the writer will, and encode it. Raises typed errors."""
    if isinstance(command, Mapping):
        data: Any = dict(command)
    elif hasattr(command, "model_dump"):
        data = command.model_dump(mode="json", exclude_none=True)
    else:
        raise InvalidCommandError(f"a command is a dict or a model, not {type(command).__name__}")
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidCommandError(f"command is not JSON: {exc}") from None
    try:
        parsed = _COMMAND_ADAPTER.validate_json(text)
    except ValidationError as exc:
        where = data.get("id") if isinstance(data, dict) else None
        raise InvalidCommandError(
            f"invalid command {where!r}: {summarize_validation(exc, root='command')}",
            validation_problems(exc),
        ) from None
    encoded = EncodedCommand(parsed.id, parsed.db, text)
    if encoded.size > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(
            f"command {parsed.id!r} is {encoded.size} bytes; one SQS message holds at most "
            f"{MAX_MESSAGE_BYTES}. Split it into smaller commands"
        )
    return encoded


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One SQS message: a single command or a packed envelope, for one database."""

    db: str
    body: str
    command_ids: tuple[str, ...]
    dedup_id: str

    @property
    def size(self) -> int:
        return len(self.body.encode("utf-8"))


def pack(
    commands: Sequence[EncodedCommand], *, max_bytes: int = MAX_MESSAGE_BYTES
) -> list[OutgoingMessage]:
    """Pack one database's commands, in order, into as few messages as ``max_bytes`` allows."""
    messages: list[OutgoingMessage] = []
    if not commands:
        return messages
    db = commands[0].db
    head = f'{{"v":1,"db":{json.dumps(db)},"commands":['
    overhead = len(head.encode()) + len(b"]}")
    current: list[EncodedCommand] = []
    size = overhead

    def flush() -> None:
        if len(current) == 1:
            only = current[0]
            messages.append(OutgoingMessage(db, only.text, (only.id,), dedup_id(only.id)))
        elif current:
            body = head + ",".join(c.text for c in current) + "]}"
            ids = tuple(c.id for c in current)
            messages.append(OutgoingMessage(db, body, ids, packed_dedup_id(ids)))
        current.clear()

    for command in commands:
        if command.db != db:
            raise InvalidCommandError("pack() takes the commands of one database")
        if command.size > max_bytes:
            raise MessageTooLargeError(
                f"command {command.id!r} is {command.size} bytes, over the {max_bytes}-byte limit"
            )
        extra = command.size + (1 if current else 0)
        if current and (size + extra > max_bytes or len(current) >= MAX_PACKED_COMMANDS):
            flush()
            size = overhead
            extra = command.size
        current.append(command)
        size += extra
    flush()
    return messages


def batches(
    messages: Sequence[OutgoingMessage], *, max_bytes: int = MAX_MESSAGE_BYTES
) -> list[list[OutgoingMessage]]:
    """Group messages for SendMessageBatch: at most 10 entries and ``max_bytes`` in total."""
    grouped: list[list[OutgoingMessage]] = []
    current: list[OutgoingMessage] = []
    total = 0
    for message in messages:
        if current and (len(current) >= MAX_BATCH_ENTRIES or total + message.size > max_bytes):
            grouped.append(current)
            current, total = [], 0
        current.append(message)
        total += message.size
    if current:
        grouped.append(current)
    return grouped


@dataclass(frozen=True, slots=True)
class Bookmark:
    """Where a sent command stands in its database's order; ``sequence_number`` is the position
    a reader's ``min_position`` waits for (read-your-writes with no extra round trip)."""

    db: str
    id: str
    message_id: str
    sequence_number: str

    @property
    def position(self) -> str:
        return self.sequence_number


@dataclass(slots=True)
class _Pending:
    message: OutgoingMessage
    attempts: int = 0
    last_error: str = ""


class WriteClient:
    """Sends commands to the FIFO queue (``MessageGroupId`` = database)."""

    def __init__(
        self,
        sqs: Any | None = None,
        *,
        session: Any | None = None,
        endpoints: Endpoints | None = None,
        queue_url: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_attempts: int = 5,
        backoff_s: float = 0.1,
    ) -> None:
        endpoints = endpoints or resolve_endpoints(queue_url=queue_url)
        self.endpoints, self.queue_url = endpoints, _endpoint(endpoints, "queue_url", queue_url)
        self.sqs = sqs if sqs is not None else _client("sqs", self.endpoints, session)
        self.max_message_bytes = max_message_bytes
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s

    def send(self, command: Mapping[str, Any] | AnyCommand) -> Bookmark:
        """Send one command; returns its bookmark."""
        (bookmark,) = self.send_many([command])
        return bookmark

    def send_many(self, commands: Iterable[Mapping[str, Any] | AnyCommand]) -> list[Bookmark]:
        """Validate, pack per database, send; one bookmark per command, in input order.

        Nothing is sent if any command is invalid or too large.
        """
        encoded = [encode_command(c) for c in commands]
        per_db: dict[str, list[EncodedCommand]] = {}
        for command in encoded:
            per_db.setdefault(command.db, []).append(command)
        messages: list[OutgoingMessage] = []
        for db_commands in per_db.values():
            messages.extend(pack(db_commands, max_bytes=self.max_message_bytes))
        sent: dict[str, tuple[str, str]] = {}  # command id -> (message id, sequence number)
        bookmarks_by_index: list[Bookmark] = []
        for batch in batches(messages, max_bytes=self.max_message_bytes):
            for message, (message_id, sequence) in self._send_batch(batch):
                for command_id in message.command_ids:
                    sent[command_id] = (message_id, sequence)
        for command in encoded:
            message_id, sequence = sent[command.id]
            bookmarks_by_index.append(Bookmark(command.db, command.id, message_id, sequence))
        return bookmarks_by_index

    def _send_batch(
        self, batch: list[OutgoingMessage]
    ) -> list[tuple[OutgoingMessage, tuple[str, str]]]:
        """SendMessageBatch until every entry is in, retrying only the entries that failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        pending = {str(i): _Pending(m) for i, m in enumerate(batch)}
        done: dict[str, tuple[str, str]] = {}
        while pending:
            entries = [
                {
                    "Id": key,
                    "MessageBody": p.message.body,
                    "MessageGroupId": p.message.db,
                    "MessageDeduplicationId": p.message.dedup_id,
                }
                for key, p in pending.items()
            ]
            try:
                response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                raise SendError(f"cannot send to {self.queue_url}: {_describe(exc)}") from None
            answered = 0
            for ok in response.get("Successful") or []:
                if pending.pop(ok["Id"], None) is not None:
                    done[ok["Id"]] = (ok["MessageId"], str(ok.get("SequenceNumber", "")))
                    answered += 1
            refused: list[str] = []
            failures = response.get("Failed") or []
            if not answered and not failures:
                raise SendError(f"SQS answered nothing for {len(pending)} entries; resend them")
            for failed in failures:
                item = pending[failed["Id"]]
                item.attempts += 1
                item.last_error = f"{failed.get('Code')}: {failed.get('Message')}"
                if failed.get("SenderFault") or item.attempts >= self.max_attempts:
                    refused.append(f"{list(item.message.command_ids)[:3]}: {item.last_error}")
            if refused:
                raise SendError(
                    f"SQS refused {len(refused)} message(s) ({len(done)} of this batch were "
                    f"sent and are safe to resend): {'; '.join(refused)}"
                )
            if pending:
                # Only what failed goes again, with backoff; ids keep resending safe.
                time.sleep(self.backoff_s * 2 ** min(6, max(p.attempts for p in pending.values())))
        return [
            (batch[int(key)], value)
            for key, value in sorted(done.items(), key=lambda kv: int(kv[0]))
        ]


def _describe(exc: BaseException) -> str:
    from botocore.exceptions import EndpointConnectionError

    if isinstance(exc, EndpointConnectionError):
        return f"{exc} (is the stack running? start it with `efsqlite dev`)"
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code, message = error.get("Code"), error.get("Message")
        if code or message:
            return f"{code}: {message}"
    return str(exc)


# -- reads ------------------------------------------------------------------------------------
class ReadClient:
    """Queries and command status through the reader Lambda's Invoke API."""

    def __init__(
        self,
        lambda_client: Any | None = None,
        *,
        session: Any | None = None,
        endpoints: Endpoints | None = None,
        function_name: str | None = None,
    ) -> None:
        endpoints = endpoints or resolve_endpoints(function_name=function_name)
        self.endpoints = endpoints
        self.function_name = _endpoint(endpoints, "reader_function", function_name)
        self.lambda_client = (
            lambda_client
            if lambda_client is not None
            else _client("lambda", self.endpoints, session)
        )

    def invoke(
        self, payload: Mapping[str, Any]
    ) -> answers.QueryResult | answers.StatusAnswer | answers.DatabaseStatusAnswer:
        """One synchronous invoke, decoded (:mod:`efsqlite.read.answers`); a typed error
        answer raises :class:`ReadRequestError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.lambda_client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
            raw = response["Payload"].read()
        except (BotoCoreError, ClientError) as exc:
            raise ReaderInvokeError(
                f"cannot invoke reader {self.function_name!r}: {_describe(exc)}"
            ) from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            raise ReaderInvokeError(f"reader answered non-JSON: {raw[:200]!r}") from None
        if response.get("FunctionError"):
            detail = answer if isinstance(answer, dict) else {}
            raise ReaderInvokeError(
                f"reader failed ({response['FunctionError']}): "
                f"{detail.get('errorType', '?')}: {detail.get('errorMessage', raw[:200])}"
            )
        try:
            typed = answers.decode(answer)
        except answers.AnswerFormatError as exc:
            raise ReaderInvokeError(f"reader answered an unknown shape: {exc}") from None
        if isinstance(typed, answers.ErrorAnswer):
            raise ReadRequestError(
                typed.error_type, typed.message, retryable=typed.retryable, extra=typed.extra
            )
        return typed

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        db: str,
        min_position: Position | str | int | None = None,
        max_rows: int | None = None,
        timeout_ms: int | None = None,
    ) -> QueryResult:
        """Run read-only SQL. ``min_position`` (a bookmark's sequence number) makes the
        reader wait, up to its timeout, until the writer has settled that far."""
        payload: dict[str, Any] = {"db": db, "sql": sql, "params": _params(params)}
        return self._query(payload, min_position, max_rows, timeout_ms)

    def named_query(
        self,
        name: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        db: str,
        min_position: Position | str | int | None = None,
        max_rows: int | None = None,
        timeout_ms: int | None = None,
    ) -> QueryResult:
        """Run one of the deployer's named queries."""
        payload: dict[str, Any] = {"db": db, "query": name, "params": _params(params)}
        return self._query(payload, min_position, max_rows, timeout_ms)

    def _query(
        self,
        payload: dict[str, Any],
        min_position: Position | str | int | None,
        max_rows: int | None,
        timeout_ms: int | None,
    ) -> QueryResult:
        if min_position is not None:
            # One parse: a bad bookmark fails here, typed, before any call is made.
            payload["min_position"] = str(
                min_position if isinstance(min_position, Position) else Position.parse(min_position)
            )
        if max_rows is not None:
            payload["max_rows"] = max_rows
        if timeout_ms is not None:
            payload["timeout_ms"] = timeout_ms
        answer = self.invoke(payload)
        if not isinstance(answer, QueryResult):
            raise ReaderInvokeError("reader answered a query with a status")
        return answer

    def command_status(self, command_id: str, *, db: str) -> CommandStatus:
        """Has this command settled? ``applied``/``rejected``; ``pending`` or ``in_dlq``
        (failing, with its last failure and receives left); or ``unknown``."""
        answer = self.invoke({"db": db, "command_id": command_id})
        if not isinstance(answer, answers.StatusAnswer) or answer.status.id != command_id:
            raise ReaderInvokeError(f"reader did not answer the status of {command_id!r}")
        return answer.status

    def database_status(self, db: str) -> LedgerSummary:
        """The database's ledger, read fresh: outcome counts, failing commands, and the
        command blocking its FIFO group (``blocked_by``), if one is."""
        answer = self.invoke({"db": db, "database_status": True})
        if not isinstance(answer, answers.DatabaseStatusAnswer) or answer.db != db:
            raise ReaderInvokeError(f"reader did not answer the status of database {db!r}")
        return answer.summary

    def wait_for(
        self, bookmark: Bookmark, timeout: float = 30.0, *, poll_s: float = 0.05
    ) -> CommandStatus:
        """Poll until the bookmark's command is applied or rejected.

        Raises :class:`DeadLetteredError` as soon as the ledger says its message reached the
        DLQ, and :class:`WaitTimeoutError` after ``timeout`` seconds; both carry the last
        status and, when the ledger knows, why the database is not moving.
        """
        deadline = time.monotonic() + timeout
        delay = poll_s
        while True:
            try:
                status = self.command_status(bookmark.id, db=bookmark.db)
            except ReadRequestError as exc:
                # The database may not exist until its first batch commits.
                if not exc.retryable and exc.error_type not in _NOT_YET:
                    raise
                status = CommandStatus(bookmark.id, "unknown")
            if status.settled:
                return status
            where = f"command {bookmark.id!r} on {bookmark.db!r}"
            if status.state == "in_dlq":
                raise DeadLetteredError(
                    f"{where} is in the DLQ", status=status, reason=describe_failure(status)
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"{where} is still {status.state} after {timeout:g} s",
                    status=status,
                    reason=self.why_not_settled(bookmark.db, status),
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.5)

    def why_not_settled(self, db: str, status: CommandStatus) -> str | None:
        """Why a command of ``db`` has not settled, from the ledger; ``None`` if it does not
        say (the queue may just be slow). Never raises for the reader's answer."""
        if status.failing:
            return describe_failure(status)
        try:
            summary = self.database_status(db)
        except ReadRequestError as exc:
            return unknown_database_line(db) if exc.error_type in _NOT_YET else None
        except ReaderInvokeError:
            return None
        if summary.blocked_by is not None and summary.blocked_by.id != status.id:
            return blocked_line(db, summary.blocked_by)
        return None


#: Before its first batch commits a database does not exist: keep waiting.
_NOT_YET = {"DatabaseNotFound"}
