"""The local stack's SQS: a small SQS FIFO server of our own, backed by one SQLite file.

It speaks the AWS JSON 1.0 protocol exactly as boto3 (and the aws CLI) speak it: ``POST /``,
``X-Amz-Target: AmazonSQS.<Action>``, a JSON body; answers are JSON, errors
``{"__type": "com.amazonaws.sqs#<Shape>", "message": ...}`` with status 400 and the
``x-amzn-query-error`` header, so boto3 reports AWS's own error codes (for example
``AWS.SimpleQueueService.NonExistentQueue``). The query (XML) protocol is not served: a
query request (``Action=...``, form-encoded or in the URL) gets a 400
``AWS.SimpleQueueService.UnsupportedOperation`` in the query protocol's XML, so an old client
reports it rather than failing to parse JSON. An action we do not emulate is a typed 400
``UnsupportedOperation`` at once (never a 5xx, which botocore would retry). The
state lives in ``<data-dir>/sqs.sqlite`` (:mod:`efsqlite.devstack.sqs_store`).

DO commit an action before its answer leaves: every action is one transaction, committed in
``QueueStore.call``, and the answer is written after. So a SIGKILL loses nothing
acknowledged; ``--journal-fsync`` adds fsync for power loss.
DO keep a FIFO group blocked while any of its messages is in flight or its head is not
visible: the writer's exactly-once and ordering rest on it (moto let a group's next message
out once the head's visibility expired; here the head is redelivered first).
DO answer every bad request with a typed 400 (never a traceback): producers and the CLI
branch on the error code, as they do against AWS; a 5xx would also be retried by botocore.
DON'T import Python's ``sqlite3`` here: SQLite comes from ``efsqlite.core.engine`` (apsw), as
everywhere in the package (tests/unit/test_engine.py).
DON'T share one data folder between two servers: the stack's ``dev.lock`` prevents it.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from efsqlite.devstack.exceptions import LocalStackError
from efsqlite.devstack.sqs_store import ACCOUNT_ID, REGION, QueueStore, SqsError

__all__ = ["ACCOUNT_ID", "REGION", "STORE_NAME", "LocalSqs", "QueueUrls"]

log = logging.getLogger("efsqlite.devstack.stack.sqs")

STORE_NAME = "sqs.sqlite"
#: A request body above this is refused before it is read (the largest valid batch is 1 MiB
#: of bodies plus JSON escaping).
MAX_REQUEST_BYTES = 8 * 1024 * 1024
_JSON = "application/x-amz-json-1.0"
_QUERY_ERROR = (
    '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">'
    "<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message><Detail/>"
    "</Error><RequestId>{request}</RequestId></ErrorResponse>"
)


class _QueryProtocolError(LocalStackError):
    """A request in the query protocol (``Action=...``), which is not served."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


@dataclass(frozen=True, slots=True)
class QueueUrls:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections
    # DON'T let Nagle hold the body back behind the headers: with the client's delayed ACK
    # that cost 40 ms per call.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sqs %s", format % args)

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", _JSON)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: SqsError) -> None:
        prefix = (
            "com.amazon.coral.service" if error.shape == "InvalidAction" else "com.amazonaws.sqs"
        )
        fault = "Sender" if error.status < 500 else "Receiver"
        self._answer(
            error.status,
            {"__type": f"{prefix}#{error.shape}", "message": error.message},
            {"x-amzn-query-error": f"{error.query_code};{fault}"},
        )

    def _query_error(self, action: str) -> None:
        """The query protocol's XML error: what a query-protocol client parses."""
        error = SqsError(
            "UnsupportedOperation",
            f"{action or 'this request'} over the query protocol is not served by the local "
            "SQS: it speaks the AWS JSON protocol only, as current botocore and aws CLI "
            "releases do; upgrade the client",
        )
        data = _QUERY_ERROR.format(
            code=error.query_code, message=escape(error.message), request=uuid.uuid4()
        ).encode()
        self.send_response(error.status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        try:
            self._answer(200, self._dispatch(), {})
        except SqsError as error:
            self._error(error)
        except _QueryProtocolError as query:
            self._query_error(query.action)
        except Exception:  # a bug of ours: a typed 500, logged, never a traceback on the wire
            log.exception("local SQS failed on %s", self.headers.get("X-Amz-Target"))
            self._error(SqsError("InternalError", "internal error in the local SQS", 500))

    def _dispatch(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self.close_connection = True
            raise SqsError("InvalidParameterValue", "missing, bad or too large Content-Length")
        raw = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target") or ""
        service, _, action = target.partition(".")
        if not target:
            form = self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"
            )
            query = parse_qs(urlsplit(self.path).query)
            if form:
                query.update(parse_qs(raw.decode("utf-8", "replace")))
            if form or "Action" in query:
                raise _QueryProtocolError((query.get("Action") or [""])[0][:100])
        if service != "AmazonSQS" or not action:
            raise SqsError(
                "InvalidAction",
                "only the AWS JSON protocol is served: POST with X-Amz-Target: AmazonSQS.<Action>",
            )
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            raise SqsError("SerializationException", "the request body is not JSON") from None
        if not isinstance(params, dict):
            raise SqsError("SerializationException", "the request body must be a JSON object")
        store = self.server.store
        if action == "ReceiveMessage":
            return store.receive(params)
        return store.call(action, params)

    def do_GET(self) -> None:
        action = parse_qs(urlsplit(self.path).query).get("Action")
        if action:
            self._query_error(action[0][:100])
            return
        self._error(SqsError("InvalidAction", "the query protocol is not served; use AWS JSON"))

    do_PUT = do_DELETE = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: QueueStore) -> None:
        self.store = store
        super().__init__(address, _Handler)


class LocalSqs:
    """Our SQS server on loopback with the stack's FIFO queue pair, state in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        queue_name: str = "efsqlite-writes.fifo",
        dlq_name: str = "efsqlite-writes-dlq.fifo",
        visibility_timeout: int = 30,
        max_receive_count: int = 5,
        journal_fsync: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.queue_name = queue_name
        self.dlq_name = dlq_name
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.fsync = journal_fsync
        self.store: QueueStore | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self.urls: QueueUrls | None = None
        self.restored = 0

    def start(self) -> QueueUrls:
        """Open the store, serve, and create (or reconfigure) the two queues."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if (self.data_dir / "queue-journal.jsonl").exists():
            log.warning("ignoring queue-journal.jsonl (the old moto-based stack's queues)")
        store = QueueStore(
            self.data_dir / STORE_NAME, endpoint=lambda: self.endpoint, fsync=self.fsync
        )
        try:
            server = _Server((self.host, self.port), store)
        except OSError as exc:
            store.close()
            raise LocalStackError(
                f"cannot serve SQS on {self.host}:{self.port}: {exc.strerror}; pass another "
                "--sqs-port (0 picks a free one)"
            ) from None
        self.store, self._server = store, server
        self.port = int(server.server_address[1])
        self.endpoint = f"http://{self.host}:{self.port}"
        self._ensure(self.dlq_name, {"FifoQueue": "true"})
        policy = {
            "deadLetterTargetArn": store.arn(self.dlq_name),
            "maxReceiveCount": self.max_receive_count,
        }
        self._ensure(
            self.queue_name,
            {
                "FifoQueue": "true",
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": json.dumps(policy),
            },
        )
        self.restored = store.counts()
        store.resume_tasks()
        self._thread = threading.Thread(
            target=server.serve_forever, name="efsqlite-sqs", daemon=True
        )
        self._thread.start()
        self.urls = QueueUrls(
            queue_url=store.url(self.queue_name),
            queue_arn=store.arn(self.queue_name),
            dlq_url=store.url(self.dlq_name),
            dlq_arn=store.arn(self.dlq_name),
        )
        return self.urls

    def _ensure(self, name: str, attributes: dict[str, str]) -> None:
        assert self.store is not None
        base = {"MaximumMessageSize": "1048576"}
        try:
            self.store.call("CreateQueue", {"QueueName": name, "Attributes": base | attributes})
        except SqsError as exc:  # exists with other settings (flags changed): apply the flags
            if exc.shape != "QueueNameExists":
                raise
            self.store.call("SetQueueAttributes", {"QueueUrl": name, "Attributes": attributes})

    def stop(self) -> None:
        """Stop serving and close the store; everything acknowledged is already committed."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.store is not None:
            self.store.close()
            self.store = None
