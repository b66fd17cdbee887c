"""End to end through the local stack: exactly once under kills, redrive under traffic, readers.

The real stack (``efsqlite dev``: local SQS with its journal, the Lambda-like poller, the
writer and reader handlers) runs as a subprocess; producers use ``efsqlite.client.WriteClient``,
readers ``efsqlite.client.ReadClient`` through the Lambda Invoke API, redrive is the
``efsqlite redrive`` command line. Nothing is mocked.

- **Exactly once under kills.** 8 producers send numbered commands in random chunk sizes (the
  client packs each chunk into one message), and about 5% of commands a second time in a
  different grouping, so they reach the writer's ledger rather than SQS's deduplication. The
  stack is killed at 10 points: at odd points the writer is SIGKILLed on entry to a random
  ``fdatasync`` of a commit (``strace`` wraps the stack), at even points the whole stack is
  SIGKILLed at a random moment. Each time it restarts on the same folder. Producers retry
  failed sends with the same ids, as the client's docs say. Pass: every command applied
  exactly once, none lost, order kept within each producer, integrity ok.
- **Readers throughout.** Reader threads query every producer's rows all along, through the
  stack's readers in snapshot mode with patching on. Since each producer's commands apply in
  order and exactly once, any consistent answer shows, per producer, rows 0..k-1 with no gap
  and no duplicate. Pass: 0 wrong answers (retryable errors and a stack that is down are
  allowed), and no snapshot refresh misled by the page log (the stack notes each refresh;
  the redrive test below, with steady traffic, also checks that refreshes patched).
- **Redrive under traffic.** 50 commands fail (a named command whose handler errors while a
  gate is closed) until SQS moves them to the DLQ, while 1,000 new commands flow. The gate
  opens (the test writes it, as an operator's fix would), ``efsqlite redrive`` moves them
  back; then copies of the same 50 messages are put in the DLQ and redriven a second time.
  Pass: each of the 50 and each of the 1,000 applied exactly once. Order is not checked
  here: valid commands in a batch behind a failing one are handed back too, can exhaust
  their receives and be dead-lettered with it, and a redrive puts them after newer traffic.
  That is SQS FIFO's documented behaviour with a DLQ.
"""

from __future__ import annotations

import collections
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faults import harness
from tests.faults.stack import LocalStack

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

DB = "main"
MIGRATION = """
CREATE TABLE events (
    n INTEGER PRIMARY KEY,
    producer INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    cmd_id TEXT NOT NULL
);
CREATE TABLE gate (id INTEGER PRIMARY KEY, open INTEGER NOT NULL);
INSERT INTO gate (id, open) VALUES (1, 0);
"""
INSERT = "INSERT INTO events (producer, seq, cmd_id) VALUES (?, ?, ?)"
CHECK_SQL = (
    "SELECT producer, count(*), count(DISTINCT cmd_id), min(seq), max(seq) FROM events "
    "WHERE producer >= 0 GROUP BY producer"
)


def _migrations(root: Path) -> Path:
    folder = root / "migrations"
    folder.mkdir(parents=True)
    (folder / "0001_events.sql").write_text(MIGRATION)
    return folder


def _clients(stack: LocalStack) -> tuple[Any, Any]:
    from efsqlite.client import Endpoints, ReadClient, WriteClient

    endpoints = Endpoints.from_file(stack.endpoints_file)
    return WriteClient(endpoints=endpoints, backoff_s=0.05), ReadClient(endpoints=endpoints)


def _command(producer: int, seq: int) -> dict[str, Any]:
    from efsqlite.client import sql_command

    cmd_id = f"p{producer}-{seq}"
    return sql_command(DB, INSERT, [producer, seq, cmd_id], id=cmd_id)


@dataclass
class Producer:
    """Sends its commands in order, in random chunks, retrying a chunk until it is accepted."""

    index: int
    count: int
    stack: LocalStack
    resend_rate: float = 0.05
    rng: random.Random = field(default_factory=random.Random)
    pause_s: float = 0.0  # between chunks, to keep traffic flowing for a while
    sent_twice: int = 0
    send_errors: int = 0
    chunks: int = 0
    error: str | None = None

    def send(self, client_box: list[Any], commands: list[dict[str, Any]]) -> None:
        from efsqlite.core.exceptions import EfsqliteError

        while True:
            try:
                if client_box[0] is None:
                    client_box[0] = _clients(self.stack)[0]
                client_box[0].send_many(commands)
                return
            except (EfsqliteError, OSError):
                # The stack is down (or coming back): resend the same ids.
                self.send_errors += 1
                client_box[0] = None
                time.sleep(0.2)

    def run(self) -> None:
        try:
            box: list[Any] = [None]
            seq = 0
            while seq < self.count:
                size = min(self.rng.randint(1, 20), self.count - seq)
                chunk = [_command(self.index, s) for s in range(seq, seq + size)]
                self.send(box, chunk)
                self.chunks += 1
                again = [c for c in chunk if self.rng.random() < self.resend_rate]
                if again:
                    # A different grouping (reversed, a subset) than the first send, so new
                    # deduplication ids: the copies get past SQS and reach the ledger. (A
                    # lone command resent alone has its old id: SQS deduplicates that one.)
                    self.send(box, list(reversed(again)))
                    self.sent_twice += len(again)
                seq += size
                time.sleep(self.pause_s)
        except BaseException as exc:  # reported by the test
            self.error = repr(exc)


@dataclass
class Readers:
    """Reader threads checking that each producer's rows are a gap-free, duplicate-free prefix."""

    stack: LocalStack
    threads: int = 2
    stop: threading.Event = field(default_factory=threading.Event)
    answers: int = 0
    retryable: int = 0
    down: int = 0
    wrong: list[str] = field(default_factory=list)
    down_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Without a DLQ in play each producer's rows are a gap-free prefix; a redrive breaks
    #: order (as AWS warns), so then only "no duplicates" holds.
    ordered: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _loop(self) -> None:
        from efsqlite.core.exceptions import EfsqliteError

        client = None
        while not self.stop.is_set():
            try:
                if client is None:
                    client = _clients(self.stack)[1]
                result = client.query(CHECK_SQL, db=DB, timeout_ms=2000)
            except EfsqliteError as exc:
                retryable = getattr(exc, "retryable", None)
                error_type = getattr(exc, "error_type", "")
                with self._lock:
                    if retryable or error_type == "DatabaseNotFound":
                        self.retryable += 1
                    elif retryable is None:
                        self.down += 1  # the stack is down: no answer at all
                        self.down_reasons[str(exc)[:90]] += 1
                        client = None
                    else:
                        self.wrong.append(f"non-retryable error {error_type}: {exc}")
                time.sleep(0.05 if client is not None else 0.2)
                continue
            except OSError:
                with self._lock:
                    self.down += 1
                client = None
                time.sleep(0.1)
                continue
            problems = []
            for producer, count, distinct, low, high in result.rows:
                in_order = low == 0 and high == count - 1
                if count != distinct or (self.ordered and not in_order):
                    problems.append(
                        f"producer {producer}: {count} rows, {distinct} ids, seq {low}..{high}"
                    )
            with self._lock:
                self.answers += 1
                self.wrong += problems
            time.sleep(0.02)

    def __enter__(self) -> Readers:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._loop, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)


def _migrated(stack: LocalStack, timeout: float = 120.0) -> None:
    """Settle one harmless command, so the database exists before the gate is opened on it."""
    from efsqlite.client import sql_command

    writer, _ = _clients(stack)
    writer.send(sql_command(DB, "UPDATE gate SET open = open WHERE id = 1", id="warm-up"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _rows(stack.database(DB))
            return
        except sqlite3.Error:
            time.sleep(0.1)
    raise AssertionError("the writer did not create the database")


def _rows(path: Path) -> list[tuple[int, int, int, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT n, producer, seq, cmd_id FROM events ORDER BY n"))
    finally:
        conn.close()


def _wait_for_rows(stack: LocalStack, expected: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        try:
            rows = _rows(stack.database(DB))
        except sqlite3.Error:
            rows = []
        if len(rows) >= expected:
            time.sleep(1.0)  # anything more (a duplicate) would show up now
            return _rows(stack.database(DB))
        time.sleep(0.25)
    return rows


def _check_exactly_once(
    rows: list[tuple[int, int, int, str]], counts: dict[int, int], *, ordered: bool = True
) -> list[str]:
    problems = []
    seen: dict[str, int] = {}
    last: dict[int, int] = {}
    for _, producer, seq, cmd_id in rows:
        seen[cmd_id] = seen.get(cmd_id, 0) + 1
        if ordered and producer in last and seq != last[producer] + 1:
            problems.append(f"producer {producer}: seq {seq} after {last[producer]}")
        last[producer] = seq
    duplicated = sorted(k for k, v in seen.items() if v > 1)
    expected = {f"p{p}-{s}" for p, n in counts.items() for s in range(n)}
    lost = sorted(expected - set(seen))
    if duplicated:
        problems.append(f"{len(duplicated)} duplicated: {duplicated[:5]}")
    if lost:
        problems.append(f"{len(lost)} lost: {lost[:5]}")
    return problems


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.timeout(900)
def test_exactly_once_through_the_local_stack_with_kills_and_readers(tmp_path: Path) -> None:
    # GIVEN a local stack and 8 producers with 5,000 numbered commands between them
    total = 20_000 if harness.SOAK else 5_000
    producers_n, kills = 8, 10
    stack = LocalStack(
        tmp_path / "stack",
        migrations=_migrations(tmp_path),
        max_receive_count=1000,  # kills must not push valid commands to the DLQ here
    )
    stack.start()
    # Readers start before the database exists: until the writer has built and migrated it,
    # the only answer allowed is "database not found" (a new database appears whole).
    rng = random.Random(2026)
    producers = [
        Producer(i, total // producers_n, stack, rng=random.Random(i)) for i in range(producers_n)
    ]
    threads = [threading.Thread(target=p.run, daemon=True) for p in producers]
    kill_log: list[str] = []
    try:
        with Readers(stack, threads=2) as readers:
            for thread in threads:
                thread.start()
            # WHEN the writer or the whole stack is killed at 10 points while traffic flows
            for point in range(kills):
                if point % 2 == 0 and harness.STRACE:
                    k = rng.randint(4, 40)
                    stack.kill()
                    stack.start(
                        prefix=harness.strace_fault("fdatasync", "signal=KILL", k, threads=True)
                    )
                    died = stack.wait_dead(timeout=20)
                    kill_log.append(f"writer at fdatasync #{k}: {'killed' if died else 'idle'}")
                    if not died:
                        stack.kill()
                else:
                    time.sleep(rng.uniform(0.5, 2.5))
                    stack.kill()
                    kill_log.append("whole stack SIGKILL")
                stack.start()
            for thread in threads:
                thread.join(timeout=600)
            # THEN everything arrives: exactly once, in producer order
            rows = _wait_for_rows(stack, total, timeout=300)
            time.sleep(1.0)
    finally:
        stack.stop()
    print(
        f"\ne2e exactly-once: {total} commands, {sum(p.sent_twice for p in producers)} sent "
        f"twice, {sum(p.send_errors for p in producers)} send retries, kills: {kill_log}; "
        f"readers: {readers.answers} answers, {readers.retryable} retryable, "
        f"{readers.down} while down, {len(readers.wrong)} wrong; "
        f"down because: {readers.down_reasons.most_common(3)}; "
        f"snapshot refreshes: {dict(stack.refreshes().most_common(4))}"
    )
    assert all(p.error is None for p in producers), [p.error for p in producers]
    assert _integrity(stack.database(DB)) == "ok"
    counts = {p.index: p.count for p in producers}
    assert _check_exactly_once(rows, counts) == [], stack.tail()
    assert sum(p.sent_twice for p in producers) > total * 0.03
    # THEN readers never saw a wrong answer, and did get answers
    assert readers.wrong == []
    assert readers.answers > 0
    # AND no snapshot refresh was misled by the page log (how many patched depends on how
    # long each restart lasts: a new environment's first refresh copies the whole file)
    assert stack.misled_refreshes() == [], stack.refreshes()


def _dlq_depth(sqs: Any, dlq_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _open_gate(stack: LocalStack) -> None:
    """The operator's fix. A short write beside the writer: SQLite's locks serialize the two."""
    conn = sqlite3.connect(stack.database(DB), timeout=30, isolation_level=None)
    try:
        conn.execute("UPDATE gate SET open = 1 WHERE id = 1")
    finally:
        conn.close()


def _redrive(stack: LocalStack) -> dict[str, Any]:
    command = [sys.executable, "-m", "efsqlite", "redrive", "--data-dir", str(stack.data_dir)]
    done = subprocess.run(
        [*command, "--json", "--quiet"],
        capture_output=True,
        text=True,
        env=stack.env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.timeout(900)
def test_redrive_twice_under_traffic_applies_each_command_once(tmp_path: Path) -> None:
    from efsqlite.client import named_command

    # GIVEN a stack whose gated command fails until the gate opens (max 2 receives)
    stack = LocalStack(
        tmp_path / "stack",
        migrations=_migrations(tmp_path),
        commands="tests.faults.e2e_commands:registry",
        max_receive_count=2,
        visibility_timeout=1,
    )
    endpoints = stack.start()
    _migrated(stack)
    writer, _ = _clients(stack)
    sqs = writer.sqs
    gated = [
        named_command(
            DB, "gated_insert", {"producer": -1, "seq": i, "cmd_id": f"g-{i}"}, id=f"g-{i}"
        )
        for i in range(50)
    ]
    new_total, producers_n = 1000, 4
    producers = [
        Producer(
            i, new_total // producers_n, stack, resend_rate=0.0, rng=random.Random(i), pause_s=1.5
        )
        for i in range(producers_n)
    ]
    threads = [threading.Thread(target=p.run, daemon=True) for p in producers]
    try:
        with Readers(stack, threads=1, ordered=False) as readers:
            # WHEN 50 gated commands fail into the DLQ while 1,000 new commands flow
            for command in gated:
                writer.send(command)
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 300
            in_dlq, steady_since = 0, time.monotonic()
            while time.monotonic() < deadline:
                depth = _dlq_depth(sqs, endpoints["dlq_url"])
                if depth != in_dlq:
                    in_dlq, steady_since = depth, time.monotonic()
                elif in_dlq >= 50 and time.monotonic() - steady_since > 3.0:
                    break
                time.sleep(0.25)
            assert not [r for r in _rows(stack.database(DB)) if r[1] == -1], "gate was closed"
            # ... the operator fixes the cause (opens the gate) and redrives the DLQ while
            # the new traffic still flows
            _open_gate(stack)
            still_sending = sum(t.is_alive() for t in threads)
            first = _redrive(stack)
            for thread in threads:
                thread.join(timeout=600)
            rows = _wait_for_rows(stack, new_total + 50, timeout=180)
            first_bodies = [json.dumps(c) for c in gated]
            # WHEN the same 50 commands are put in the DLQ again and redriven again
            for i, body in enumerate(first_bodies):
                sqs.send_message(
                    QueueUrl=endpoints["dlq_url"],
                    MessageBody=body,
                    MessageGroupId=DB,
                    MessageDeduplicationId=f"second-copy-{i}",
                )
            second = _redrive(stack)
            time.sleep(3.0)
            rows = _wait_for_rows(stack, new_total + 50, timeout=60)
            final_dlq = _dlq_depth(sqs, endpoints["dlq_url"])
    finally:
        stack.stop()
    print(
        f"\nredrive: {in_dlq} in the DLQ before, first redrive {first} with {still_sending} "
        f"producers still sending, second {second}; "
        f"readers: {readers.answers} answers, {len(readers.wrong)} wrong; "
        f"snapshot refreshes: {dict(stack.refreshes().most_common(4))}"
    )
    # THEN every gated and every new command is applied exactly once (not in order: valid
    # commands stuck behind a failing one reach the DLQ too, and a redrive reorders them)
    assert in_dlq >= 50
    assert still_sending > 0, "the redrive should happen while new commands still flow"
    assert first["moved"] >= 50 and second["moved"] >= 50
    assert final_dlq == 0
    assert all(p.error is None for p in producers), [p.error for p in producers]
    counts = {p.index: p.count for p in producers}
    assert _check_exactly_once([r for r in rows if r[1] >= 0], counts, ordered=False) == []
    gated_ids = sorted(r[3] for r in rows if r[1] == -1)
    assert gated_ids == sorted(f"g-{i}" for i in range(50))
    assert _integrity(stack.database(DB)) == "ok"
    assert readers.wrong == []
    # AND the readers' snapshots were refreshed by patching, never misled by the page log
    assert stack.refreshes()["patch"] > 0, stack.refreshes()
    assert stack.misled_refreshes() == [], stack.refreshes()
