"""The local stack's SQS: moto's server on loopback, made honest where it differs from AWS.

moto 5.2.x keeps queues in memory and differs from SQS FIFO in ways this design depends on.
This module runs moto's own server in this process and patches its SQS model (moto is pinned,
see ``pyproject.toml``) so that:

- **Sequence numbers increase.** moto draws 20 random digits per FIFO send; the writer's
  position and every read-your-writes bookmark need them to increase within a group. Here they
  are ``2 * 10**19 + time_ns`` (20 digits, above 2**64 like AWS's), never lower than one already
  issued, also across restarts.
- **Deduplication lasts five minutes.** moto only compares against messages still queued; here a
  per-queue window of deduplication ids is kept for five minutes (and across restarts). A
  deduplicated send answers with the original message's id and sequence number.
- **Calls stay cheap as a queue grows.** moto recomputed message counts (reading the clock
  through ``datetime`` per message) several times per send and per received message.
- **Queues survive restarts and SIGKILL.** Every message that enters a queue is appended to a
  journal (``queue-journal.jsonl`` in the data folder) before moto's answer leaves the process;
  deletions, DLQ moves and purges are appended too. On start the journal is replayed into
  moto, then compacted. A message whose delete was lost to a kill comes back and the writer's
  ledger settles it as a duplicate: nothing lost, nothing applied twice.

DO keep every journal write inside ``_LOCK`` together with the queue change it describes, so the
journal order is the queue order.
DON'T run two local stacks in one process: moto's backends are process-wide.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efsqlite.devstack.exceptions import LocalStackError

log = logging.getLogger("efsqlite.devstack.stack.sqs")

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
#: SQS FIFO's deduplication interval.
DEDUP_WINDOW_S = 300.0
JOURNAL_NAME = "queue-journal.jsonl"
#: The journal is rewritten while running once it reaches this size (and twice its live size).
COMPACT_MIN_BYTES = 64 * 1024 * 1024
_SEQUENCE_BASE = 2 * 10**19
_LOCK = threading.RLock()


@dataclass(slots=True)
class _QueueState:
    """What the journal knows about one queue."""

    live: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    dedup: OrderedDict[str, tuple[str, str, float]] = field(default_factory=OrderedDict)


class QueueJournal:
    """Append-only record of every message entering or leaving the journaled queues."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.queues: dict[str, _QueueState] = {}
        self.high_water = 0
        self._fd: int | None = None
        self._size = 0
        self._compact_at = COMPACT_MIN_BYTES

    # -- reading ------------------------------------------------------------------------------
    def load(self) -> int:
        """Replay the journal file into ``self.queues``; returns the number of live messages."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as handle:
            for raw in handle:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    # A torn last line: the process died mid-write, before moto answered the
                    # send, so the sender saw an error for it. Skip it.
                    log.warning("skipping a torn journal line in %s", self.path)
                    continue
                self._replay(entry)
        return sum(len(q.live) for q in self.queues.values())

    def _state(self, queue: str) -> _QueueState:
        return self.queues.setdefault(queue, _QueueState())

    def _replay(self, entry: dict[str, Any]) -> None:
        op = entry.get("op")
        if op == "add":
            state = self._state(entry["q"])
            state.live[entry["mid"]] = entry
            if entry.get("d"):
                state.dedup[entry["d"]] = (entry["mid"], entry["seq"], entry["ts"] / 1000)
            self.high_water = max(self.high_water, int(entry["seq"]))
        elif op == "del":
            self._state(entry["q"]).live.pop(entry["mid"], None)
        elif op == "move":
            moved = self._state(entry["from"]).live.pop(entry["mid"], None)
            if moved is not None:
                moved = dict(moved, q=entry["to"])
                self._state(entry["to"]).live[entry["mid"]] = moved
        elif op == "purge":
            self._state(entry["q"]).live.clear()
        elif op == "dedup":
            self._state(entry["q"]).dedup[entry["d"]] = (entry["mid"], entry["seq"], entry["t"])
        elif op == "hw":
            self.high_water = max(self.high_water, int(entry["seq"]))

    # -- writing ------------------------------------------------------------------------------
    def compact_and_open(self) -> None:
        """Rewrite the journal as its live messages (atomic rename), then open it to append.

        Runs at start, and while running whenever the file has grown past ``_compact_at``.
        """
        now = time.time()
        lines: list[dict[str, Any]] = [{"op": "hw", "seq": str(self.high_water)}]
        for name, state in self.queues.items():
            for dedup_id, (mid, seq, at) in state.dedup.items():
                if now - at < DEDUP_WINDOW_S:
                    lines.append(
                        {"op": "dedup", "q": name, "d": dedup_id, "mid": mid, "seq": seq, "t": at}
                    )
            lines.extend(state.live.values())
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            for line in lines:
                handle.write(_encode(line))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = self.path.stat().st_size
        self._compact_at = max(COMPACT_MIN_BYTES, 2 * self._size)
        for state in self.queues.values():
            while state.dedup and now - next(iter(state.dedup.values()))[2] >= DEDUP_WINDOW_S:
                state.dedup.popitem(last=False)

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry. DO call under ``_LOCK``, before the change is acknowledged."""
        if self._fd is None:
            return
        # One unbuffered write(): once it returns the bytes are in the kernel, so a SIGKILL of
        # this process cannot lose them (a power cut can, unless fsync is on).
        data = _encode(entry)
        os.write(self._fd, data)
        if self.fsync:
            os.fsync(self._fd)
        # Keep the live view current, so the file can be rewritten without reading it back.
        self._replay(entry)
        self._size += len(data)
        if self._size >= self._compact_at:
            self.compact_and_open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _encode(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


class _Patches:
    """moto's SQS model with our add/delete/purge around it, for the journaled queues only."""

    def __init__(self) -> None:
        self.journal: QueueJournal | None = None
        self.queues: set[str] = set()
        self.last_sequence = 0
        self.installed = False

    def next_sequence(self) -> str:
        value = max(self.last_sequence + 1, _SEQUENCE_BASE + time.time_ns())
        self.last_sequence = value
        return str(value)


_PATCHES = _Patches()


def _install() -> None:
    if _PATCHES.installed:
        return
    try:
        from moto.sqs import models
    except ImportError as exc:  # pragma: no cover - moto is a dev dependency
        raise LocalStackError(
            "the local stack needs moto: pip install -e '.[dev]' (moto[server,sqs])"
        ) from exc
    queue_cls: Any = models.Queue
    backend_cls: Any = models.SQSBackend
    for owner, name in ((queue_cls, "add_message"), (queue_cls, "delete_message")):
        if not callable(getattr(owner, name, None)):
            raise LocalStackError(f"this moto version has no {owner.__name__}.{name}; pin 5.2.x")
    original_add = queue_cls.add_message
    original_delete = queue_cls.delete_message
    original_purge = backend_cls.purge_queue

    def add_message(self: Any, message: Any) -> None:
        if self.name not in _PATCHES.queues:
            original_add(self, message)
            return
        _add(self, message)

    def delete_message(self: Any, receipt_handle: str) -> None:
        if self.name not in _PATCHES.queues:
            original_delete(self, receipt_handle)
            return
        with _LOCK:
            if receipt_handle in self.deleted_messages:
                return  # deleting twice is fine, as in SQS
            # moto rebuilt the whole message list in Python per deleted message. Received
            # messages sit at the front of a FIFO queue: find it, then remove it in C.
            found = next((m for m in self._messages if m.had_receipt_handle(receipt_handle)), None)
            if found is None:
                original_delete(self, receipt_handle)  # raises moto's ReceiptHandleIsInvalid
                return
            self.pending_messages.discard(found)
            self.deleted_messages.update(found.all_receipt_handles)
            self._messages.remove(found)  # Message has no __eq__: this is by identity
            if _PATCHES.journal is not None:
                _PATCHES.journal.append({"op": "del", "q": self.name, "mid": found.id})

    def purge_queue(self: Any, queue_name: str) -> None:
        with _LOCK:
            original_purge(self, queue_name)
            if queue_name in _PATCHES.queues and _PATCHES.journal is not None:
                _PATCHES.journal.append({"op": "purge", "q": queue_name})

    # moto reads the clock through datetime once per message per look (``visible``,
    # ``delayed``) and recomputes every queue attribute, message counts included, for each
    # send and each received message: O(queue length) several times per call, which is why
    # sends slowed to about 0.8 s a batch with 500 queued. The same tests with time.time(), and
    # the retention check without the counts, keep a call cheap at any queue length.
    message_cls: Any = models.Message

    def visible(self: Any) -> bool:
        return bool(time.time() * 1000 > self.visible_at)  # moto keeps milliseconds

    def delayed(self: Any) -> bool:
        return bool(time.time() * 1000 < self.delayed_until)

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        retention_s = int(queue.message_retention_period)
        return bool(retention_s + message.sent_timestamp / 1000 > time.time())

    # Per request, moto lists its own package folder to route by host, and converts attribute
    # names from CamelCase again and again. Both are pure: cache them.
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    sqs_models: Any = models
    core_responses: Any = responses
    to_snake = functools.lru_cache(maxsize=1024)(sqs_models.camelcase_to_underscores)
    sqs_models.camelcase_to_underscores = to_snake
    core_responses.camelcase_to_underscores = to_snake
    message_cls.visible = property(visible)
    message_cls.delayed = property(delayed)
    backend_cls.is_message_valid_based_on_retention_period = retained
    queue_cls.add_message = add_message
    queue_cls.delete_message = delete_message
    backend_cls.purge_queue = purge_queue
    _PATCHES.installed = True


def _add(queue: Any, message: Any) -> None:
    """A message enters a journaled queue: a new send, or a DLQ move from the source queue."""
    journal = _PATCHES.journal
    with _LOCK:
        home = getattr(message, "_efsqlite_queue", None)
        if home is not None and home != queue.name:
            # moto moving a message to the DLQ after maxReceiveCount: same id, no dedup.
            message._efsqlite_queue = queue.name
            _append_to(queue, message)
            if journal is not None:
                journal.append({"op": "move", "from": home, "to": queue.name, "mid": message.id})
            return
        state = journal._state(queue.name) if journal is not None else _QueueState()
        now = time.time()
        while state.dedup:
            oldest = next(iter(state.dedup.values()))
            if now - oldest[2] < DEDUP_WINDOW_S:
                break
            state.dedup.popitem(last=False)
        dedup_id = message.deduplication_id
        if dedup_id and dedup_id in state.dedup:
            # Accepted but not delivered, as SQS does within the window. DO answer with the
            # original's id and sequence number, so the sender's bookmark stays meaningful.
            message.id, message.sequence_number, _ = state.dedup[dedup_id]
            return
        message.sequence_number = _PATCHES.next_sequence()
        message._efsqlite_queue = queue.name
        _append_to(queue, message)
        if dedup_id:
            state.dedup[dedup_id] = (message.id, message.sequence_number, now)
        if journal is not None:
            journal.append(
                {
                    "op": "add",
                    "q": queue.name,
                    "mid": message.id,
                    "body": message.body,
                    "g": message.group_id,
                    "d": dedup_id,
                    "seq": message.sequence_number,
                    "ts": message.sent_timestamp,
                }
            )


def _append_to(queue: Any, message: Any) -> None:
    with queue._messages_lock:
        queue._messages.append(message)
        queue._messages_lock.notify_all()


@dataclass(frozen=True, slots=True)
class QueueUrls:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


class LocalSqs:
    """moto's server on loopback with our FIFO queue pair, journaled in ``data_dir``."""

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
        self.journal = QueueJournal(data_dir / JOURNAL_NAME, fsync=journal_fsync)
        self._server: Any = None
        self.endpoint = ""
        self.urls: QueueUrls | None = None
        self.restored = 0

    def start(self) -> QueueUrls:
        """Start moto, create the queues, and put back what the journal holds."""
        _install()
        # Requests are logged by our poller and API, not once per HTTP call by werkzeug.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = _moto_server(self.host, self.port)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self.port = port
        self.endpoint = f"http://{host}:{port}"
        backend = _backend()
        with _LOCK:
            # A fresh process has no queues; in a reused process (tests) start from nothing
            # too, so the journal is the only source of queued messages.
            for name in (self.queue_name, self.dlq_name):
                if name in backend.queues:
                    backend.delete_queue(name)
            dlq = backend.create_queue(self.dlq_name, FifoQueue="true")
            queue = backend.create_queue(
                self.queue_name,
                FifoQueue="true",
                VisibilityTimeout=str(self.visibility_timeout),
                RedrivePolicy=json.dumps(
                    {
                        "deadLetterTargetArn": dlq.queue_arn,
                        "maxReceiveCount": self.max_receive_count,
                    }
                ),
            )
            self.restored = self.journal.load()
            for name in (self.queue_name, self.dlq_name):
                _restore(backend.get_queue(name), self.journal._state(name))
            _PATCHES.last_sequence = max(_PATCHES.last_sequence, self.journal.high_water)
            _PATCHES.queues.update({self.queue_name, self.dlq_name})
            self.journal.compact_and_open()
            _PATCHES.journal = self.journal
        base = f"{self.endpoint}/{ACCOUNT_ID}"
        self.urls = QueueUrls(
            queue_url=f"{base}/{self.queue_name}",
            queue_arn=queue.queue_arn,
            dlq_url=f"{base}/{self.dlq_name}",
            dlq_arn=dlq.queue_arn,
        )
        return self.urls

    def stop(self) -> None:
        """Stop serving; the journal already holds every unacknowledged message."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        with _LOCK:
            _PATCHES.journal = None
            _PATCHES.queues.difference_update({self.queue_name, self.dlq_name})
            self.journal.close()


def _backend() -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends[ACCOUNT_ID][REGION]


def _restore(queue: Any, state: _QueueState) -> None:
    """Put journaled messages back in moto, same ids and sequence numbers, receive count 0."""
    from moto.sqs.models import Message

    for entry in state.live.values():
        message: Any = Message(entry["mid"], entry["body"])
        message.deduplication_id = entry.get("d")
        message.group_id = entry.get("g")
        message.sequence_number = entry["seq"]
        message.mark_sent()
        message.sent_timestamp = entry.get("ts") or message.sent_timestamp
        message._efsqlite_queue = queue.name
        _append_to(queue, message)


def _moto_server(host: str, port: int) -> Any:
    """moto's ThreadedMotoServer, but a busy port raises here instead of hanging ``start()``."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class SyncStartMotoServer(ThreadedMotoServer):
        def start(self) -> None:
            # DON'T let werkzeug find a busy port: it prints two lines and calls sys.exit().
            if port:
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        probe.bind((host, port))
                    except OSError as exc:
                        raise LocalStackError(
                            f"cannot serve SQS on {host}:{port}: {exc.strerror}; pass another "
                            "--sqs-port (0 picks a free one)"
                        ) from None
            try:
                self._server = make_server(
                    self._ip_address,
                    self._port,
                    DomainDispatcherApplication(create_backend_app),
                    True,
                    request_handler=MotoRequestHandler,
                )
            except OSError as exc:
                raise LocalStackError(f"cannot serve SQS on {host}:{port}: {exc}") from exc
            self._server_ready_event.set()
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="efsqlite-sqs", daemon=True
            )
            self._thread.start()

        def stop(self) -> None:
            super().stop()
            if self._server is not None:
                self._server.server_close()

    return SyncStartMotoServer(ip_address=host, port=port, verbose=False)
