"""The local stack's event source mapping: what Lambda's SQS FIFO poller does, on one machine.

It long-polls batches of at most 10, hands them to the writer's real ``lambda_handler`` in an
event shaped as Lambda shapes it, deletes what succeeded and leaves ``batchItemFailures`` (and a
crashed batch) to the visibility timeout. FIFO group locking is the local SQS's
(``efsqlite.devstack.sqs``): ReceiveMessage returns nothing of a group while its head message
is in flight or waiting for redelivery (checked in ``tests/e2e``).

One poller thread, like the writer's default ``ReservedConcurrentExecutions: 1``.

DO finish a received batch before stopping: a stop request is only looked at between batches.
DON'T delete a record the handler reported in ``batchItemFailures``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from efsqlite.devstack.exceptions import LocalStackError

log = logging.getLogger("efsqlite.devstack.stack.poller")

_module_counter = itertools.count(1)
#: ReceiveMessage's long-poll wait. Short, so a stop request is seen within about a second.
POLL_WAIT_S = 1


class LambdaContext:
    """The context object a Python Lambda handler receives (the attributes powertools reads)."""

    def __init__(self, function_name: str, timeout_s: float, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler_module(path: Path, label: str) -> ModuleType:
    """Import a Lambda ``app.py`` by file path under a unique module name.

    The writer's and the reader's files are both ``app.py``; loading each under its own name
    keeps them apart in ``sys.modules``, and loading again is a new cold start.
    """
    if not path.is_file():
        raise LocalStackError(f"handler file {path} not found")
    name = f"_efsqlite_local_{label}_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LocalStackError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise LocalStackError(f"cold start of {path} failed: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(module, "lambda_handler", None)):
        raise LocalStackError(f"{path} has no lambda_handler")
    return module


def unload_handler_module(module: ModuleType) -> None:
    """End an execution environment: close the writer's connections, drop the module."""
    writer = getattr(module, "writer", None)
    close = getattr(writer, "close", None)
    if callable(close):
        close()
    sys.modules.pop(module.__name__, None)


def folder_fingerprint(folder: Path | None) -> str:
    """Names, sizes and mtimes of every file under ``folder``: changes when a migration lands."""
    if folder is None or not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ReceiveMessage entry as Lambda puts it in the event's ``Records``."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """Lambda spells message attributes in camelCase, with empty lists for the list fields."""
    converted: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = value["BinaryValue"]
    return converted


class Poller:
    """Long-polls the queue and runs the writer handler; a thread of ``efsqlite dev``."""

    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        queue_arn: str,
        handler_path: Path,
        migrations_dir: Path | None,
        function_name: str = "efsqlite-writer",
        function_timeout_s: float = 30.0,
        region: str = "us-east-1",
        batch_size: int = 10,
        on_batch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise LocalStackError("a FIFO event source takes batches of 1 to 10")
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler_path = handler_path
        self.migrations_dir = migrations_dir
        self.function_name = function_name
        self.function_timeout_s = function_timeout_s
        self.region = region
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.stop_event = threading.Event()
        self.module: ModuleType | None = None
        self._fingerprint = ""
        self._failed_at = 0.0
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.cold_starts = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def cold_start(self) -> None:
        """Load the writer handler (a new execution environment); raises LocalStackError."""
        fingerprint = folder_fingerprint(self.migrations_dir)
        if self.module is not None:
            unload_handler_module(self.module)
            self.module = None
        self.module = load_handler_module(self.handler_path, "writer")
        self._fingerprint = fingerprint
        self.cold_starts += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="efsqlite-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Ask to stop, then wait for the batch in hand to finish."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.module is not None:
            unload_handler_module(self.module)
            self.module = None

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._maybe_reload()
                if self.module is None:
                    self.stop_event.wait(1.0)
                    continue
                self.poll_once()
            except Exception as exc:  # the loop must outlive any single failure
                log.error("poller error (retrying in 1 s): %s: %s", type(exc).__name__, exc)
                self.stop_event.wait(1.0)

    def _maybe_reload(self) -> None:
        fingerprint = folder_fingerprint(self.migrations_dir)
        unchanged = fingerprint == self._fingerprint
        if self.module is not None and unchanged:
            return
        if self.module is None and unchanged and time.monotonic() - self._failed_at < 10:
            return  # a broken handler: retry every 10 s, or at once when the folder changes
        if not unchanged:
            # DO wait until the folder is still: a half-copied migration that happens to parse
            # would be applied, and its checksum recorded, before the rest of it lands.
            time.sleep(0.3)
            if folder_fingerprint(self.migrations_dir) != fingerprint:
                return
        reason = "migrations changed" if self.module is not None else "retrying cold start"
        try:
            self.cold_start()
        except LocalStackError as exc:
            self._fingerprint = fingerprint
            self._failed_at = time.monotonic()
            log.error("writer cold start failed (%s): %s; messages wait in the queue", reason, exc)
            return
        log.info("writer reloaded (%s): new cold start, migrations apply on first use", reason)

    def poll_once(self) -> int:
        """Receive one batch and settle it; returns how many records it held."""
        started = time.perf_counter()
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=POLL_WAIT_S,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages") or []
        if not messages:
            return 0
        # A non-empty long poll returns as soon as messages are there: this is the SQS's cost.
        self.handle_batch(messages, receive_ms=(time.perf_counter() - started) * 1000)
        return len(messages)

    def handle_batch(self, messages: list[dict[str, Any]], *, receive_ms: float = 0.0) -> None:
        records = [lambda_record(m, self.queue_arn, self.region) for m in messages]
        event = {"Records": records}
        started = time.perf_counter()
        failed_ids: set[str]
        crash = None
        assert self.module is not None
        try:
            context = LambdaContext(self.function_name, self.function_timeout_s)
            response = self.module.lambda_handler(event, context)
            failed_ids = _failed_ids(response, {r["messageId"] for r in records})
        except Exception as exc:
            # An unhandled error fails the whole batch: Lambda deletes nothing and the messages
            # come back after the visibility timeout.
            crash = f"{type(exc).__name__}: {exc}"
            # As Lambda writes it to the function's log: the developer needs the traceback.
            log.error("writer handler raised:\n%s", traceback.format_exc().rstrip())
            failed_ids = {r["messageId"] for r in records}
        handler_ms = (time.perf_counter() - started) * 1000
        done = [m for m in messages if m["MessageId"] not in failed_ids]
        started = time.perf_counter()
        deleted = self._delete(done)
        delete_ms = (time.perf_counter() - started) * 1000
        self.batches += 1
        groups = sorted({r["attributes"].get("MessageGroupId", "?") for r in records})
        summary = {
            "records": len(records),
            "groups": groups,
            "deleted": deleted,
            "failed": len(failed_ids),
            "crash": crash,
            "receive_ms": round(receive_ms, 2),
            "handler_ms": round(handler_ms, 2),
            "delete_ms": round(delete_ms, 2),
        }
        timing = (
            f"receive {receive_ms:.1f} ms, handler {handler_ms:.1f} ms, delete {delete_ms:.1f} ms"
        )
        if crash is not None:
            log.error("batch crashed: %s (%d records left for redelivery)", crash, len(records))
        elif failed_ids:
            log.warning(
                "batch: %d records, groups %s: %d settled, %d left to the visibility timeout (%s)",
                len(records),
                ",".join(groups),
                deleted,
                len(failed_ids),
                timing,
            )
        else:
            log.info(
                "batch: %d records, groups %s: all settled (%s)",
                len(records),
                ",".join(groups),
                timing,
            )
        if self.on_batch is not None:
            self.on_batch(summary)

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        if not messages:
            return 0
        entries = [
            {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]}
            for index, m in enumerate(messages)
        ]
        response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        failures = response.get("Failed") or []
        for failure in failures:
            # Not fatal: the message comes back and the ledger settles it as a duplicate.
            log.warning("delete failed: %s", failure)
        return len(entries) - len(failures)


def _failed_ids(response: object, batch_ids: set[str]) -> set[str]:
    """The ids in a ``ReportBatchItemFailures`` response; an invalid response fails them all."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return set(batch_ids)
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return set(batch_ids)
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            # Lambda treats a malformed partial response as a failure of the whole batch.
            return set(batch_ids)
        failed.add(identifier)
    return failed
