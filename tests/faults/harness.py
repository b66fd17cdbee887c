"""Shared machinery of the fault tests: a transfer workload, an SQS FIFO stand-in, checks.

Everything here is real: real writer processes (``writer_child.py``) running the real
``Writer`` on real SQLite files, faults injected from outside with ``strace``. Nothing of
efsqlite is mocked.

The workload moves money between accounts. Each command is three statements (debit, credit,
and a row in ``transfers``), so:

- the total balance is an invariant that any half-applied command would break;
- ``transfers`` has no unique key, so a command applied twice shows up as two rows;
- a transfer that would overdraw an account violates a CHECK and is *rejected* (acknowledged,
  recorded, no effect), which exercises the rejection path under faults too.

The stand-in queue behaves as SQS FIFO does for one message group: it hands out up to 10
records from the head, deletes the ones a response acknowledges, and hands the rest out again
(same message id and sequence number, a higher receive count) in the same order.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.events import next_sequence_number, redelivered, sqs_event, sqs_record

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("writer_child.py")
DB = "bank"
ACCOUNTS = 8
OPENING_BALANCE = 100
TOTAL = ACCOUNTS * OPENING_BALANCE
STRACE = shutil.which("strace")
SOAK = os.environ.get("EFSQLITE_SOAK", "") not in ("", "0")

MIGRATION = f"""
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE transfers (
    n INTEGER PRIMARY KEY,
    cmd_id TEXT NOT NULL,
    src INTEGER NOT NULL,
    dst INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    note TEXT NOT NULL
);
WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {ACCOUNTS})
INSERT INTO accounts (id, balance) SELECT i, {OPENING_BALANCE} FROM k;
"""


def transfer(command_id: str, src: int, dst: int, amount: int, note: str = "") -> dict[str, Any]:
    """One v1 command moving ``amount`` from ``src`` to ``dst``, atomically."""
    return {
        "v": 1,
        "id": command_id,
        "db": DB,
        "statements": [
            {
                "sql": "UPDATE accounts SET balance = balance - ? WHERE id = ?",
                "params": [amount, src],
            },
            {
                "sql": "UPDATE accounts SET balance = balance + ? WHERE id = ?",
                "params": [amount, dst],
            },
            {
                "sql": "INSERT INTO transfers (cmd_id, src, dst, amount, note) "
                "VALUES (?, ?, ?, ?, ?)",
                "params": [command_id, src, dst, amount, note],
            },
        ],
    }


def build_workload(messages: int, *, seed: int, note_bytes: int = 200) -> list[dict[str, Any]]:
    """Lambda-shaped records for one group: single commands, packed ones and resends.

    Every 4th message packs 3 commands; every 9th is a producer's resend of an earlier
    message's body under a new message id and sequence number (the ledger must skip it).
    """
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    bodies: list[str] = []
    counter = 0
    for index in range(messages):
        if index % 9 == 8 and bodies:
            body = rng.choice(bodies)
        else:
            commands = []
            for _ in range(3 if index % 4 == 3 else 1):
                counter += 1
                src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
                note = rng.randbytes(note_bytes // 2).hex()
                commands.append(transfer(f"t-{seed}-{counter}", src, dst, rng.randint(1, 60), note))
            if len(commands) == 1:
                body = json.dumps(commands[0])
            else:
                body = json.dumps({"v": 1, "db": DB, "commands": commands})
            bodies.append(body)
        records.append(
            sqs_record(
                body,
                group=DB,
                sequence_number=next_sequence_number(),
                message_id=f"m-{seed}-{index:05d}",
            )
        )
    return records


def make_migrations(root: Path) -> Path:
    folder = root / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0001_bank.sql").write_text(MIGRATION)
    return folder


def make_template(root: Path) -> tuple[Path, Path]:
    """A migrated, empty database and its migrations folder, made by the real writer."""
    from efsqlite.write.settings import WriterSettings
    from efsqlite.write.writer import Writer

    migrations = make_migrations(root)
    data = root / "template"
    writer = Writer(WriterSettings(data_dir=data, migrations_dir=migrations, databases="*"))
    writer.database(DB)
    writer.close()
    return data / f"{DB}.sqlite", migrations


class FifoQueue:
    """One SQS FIFO message group, as the event source mapping sees it."""

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        self.pending: list[dict[str, Any]] = [json.loads(json.dumps(r)) for r in records]
        self.acknowledged: list[dict[str, Any]] = []
        self.in_flight: list[dict[str, Any]] = []

    def receive(self, limit: int = 10) -> list[dict[str, Any]]:
        """The next batch from the head of the group (never past an unacknowledged record)."""
        self.in_flight = self.pending[:limit]
        return self.in_flight

    def settle(self, response: dict[str, Any]) -> list[str]:
        """Delete what the response acknowledges; the rest comes back, redelivered."""
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        batch, rest = self.in_flight, self.pending[len(self.in_flight) :]
        kept = [redelivered(r) for r in batch if r["messageId"] in failed]
        self.acknowledged += [r for r in batch if r["messageId"] not in failed]
        self.pending = kept + rest
        self.in_flight = []
        return sorted(failed)

    def abandon(self) -> None:
        """The invocation died: its batch becomes visible again after the timeout."""
        n = len(self.in_flight)
        self.pending = [redelivered(r) for r in self.pending[:n]] + self.pending[n:]
        self.in_flight = []


@dataclass
class DriveReport:
    """What happened while draining a queue through writer processes."""

    starts: int = 0
    deaths: list[int] = field(default_factory=list)  # return codes of processes that died
    responses: list[dict[str, Any]] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)
    failure_types: list[str] = field(default_factory=list)
    stderr: str = ""


def child_command(data_dir: Path, migrations: Path, journal_mode: str = "DELETE") -> list[str]:
    return [sys.executable, str(CHILD), str(data_dir), str(migrations), journal_mode]


def child_env() -> dict[str, str]:
    """The environment of child processes: the package from this checkout, no bytecode."""
    return dict(os.environ, PYTHONPATH=str(REPO / "shared"), PYTHONDONTWRITEBYTECODE="1")


def drive(
    queue: FifoQueue,
    data_dir: Path,
    migrations: Path,
    *,
    first_prefix: Sequence[str] = (),
    journal_mode: str = "DELETE",
    max_starts: int = 20,
    stop_after_first_death: bool = False,
    after_death: Callable[[FifoQueue], None] | None = None,
    max_events: int | None = None,
    before_event: Callable[[DriveReport, FifoQueue], None] | None = None,
) -> DriveReport:
    """Feed ``queue`` to writer processes until it is empty.

    The first process runs under ``first_prefix`` (an ``strace`` fault injector); when a
    process dies, the next one starts plainly on the same messages, as SQS redelivers them.
    """
    report = DriveReport()
    env = child_env()
    while queue.pending and report.starts < max_starts:
        prefix = list(first_prefix) if report.starts == 0 else []
        report.starts += 1
        proc = subprocess.Popen(
            [*prefix, *child_command(data_dir, migrations, journal_mode)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        alive = proc.stdout.readline().strip() == '{"ready": true}'
        while alive and queue.pending:
            if max_events is not None and len(report.responses) >= max_events:
                break
            if before_event is not None:
                before_event(report, queue)
            batch = queue.receive()
            try:
                proc.stdin.write(json.dumps(sqs_event(*batch)) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                alive = False
                break
            line = proc.stdout.readline()
            if not line:
                alive = False
                break
            response = json.loads(line)
            report.responses.append(response)
            report.failure_types += response.get("failure_types", [])
            report.failed_ids += queue.settle(response)
        if not alive:
            queue.abandon()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.stdout.read()
        assert proc.stderr is not None
        report.stderr += proc.stderr.read()
        proc.wait(timeout=60)
        if proc.returncode != 0:
            report.deaths.append(proc.returncode)
            if after_death is not None:
                after_death(queue)
            if stop_after_first_death:
                break
        if max_events is not None and len(report.responses) >= max_events:
            break
    return report


def strace_fault(
    syscall: str, action: str, when: int, log: Path | None = None, *, threads: bool = False
) -> list[str]:
    """``strace`` arguments that inject ``action`` (``signal=KILL``, ``error=EIO``) at call K.

    With ``threads`` every thread is traced (``-f``) and K counts per thread.
    """
    assert STRACE is not None
    args = [STRACE, "-f"] if threads else [STRACE]
    args += ["-qq", "-y", "-e", f"trace={syscall}"]
    args += ["-e", f"inject={syscall}:{action}:when={when}"]
    args += ["-o", str(log) if log else "/dev/null"]
    return args


def strace_page_log_fault(db: Path, action: str = "signal=KILL") -> list[str]:
    """``strace`` arguments that inject ``action`` at the first ``fdatasync`` of ``db``'s page
    log. The writer syncs the log in a thread of its own at each commit (in parallel with the
    database's sync), so every thread is traced (``-f``) and only calls on the log (``-P``)."""
    from efsqlite.core.pagelog import sidecar_path

    assert STRACE is not None
    args = [STRACE, "-f", "-qq", "-P", str(sidecar_path(db)), "-e", "trace=fdatasync"]
    return [*args, "-e", f"inject=fdatasync:{action}:when=1", "-o", "/dev/null"]


def count_calls(
    template: Path,
    migrations: Path,
    records: Sequence[dict[str, Any]],
    work: Path,
    journal_mode: str = "DELETE",
) -> dict[str, int]:
    """How many fdatasync, pwrite64, unlink and ftruncate calls one writer makes for the run."""
    assert STRACE is not None
    data = work / f"count-{journal_mode}"
    data.mkdir(parents=True)
    shutil.copy(template, data / template.name)
    log = work / f"count-{journal_mode}.strace"
    names = ("fdatasync", "pwrite64", "unlink", "ftruncate")
    prefix = [STRACE, "-qq", "-e", "trace=" + ",".join(names), "-o", str(log)]
    report = drive(
        FifoQueue(records), data, migrations, first_prefix=prefix, journal_mode=journal_mode
    )
    assert report.starts == 1 and not report.deaths, report.stderr
    counts = dict.fromkeys(names, 0)
    for line in log.read_text().splitlines():
        name = line.split("(", 1)[0].strip()
        if name in counts:
            counts[name] += 1
    return counts


@dataclass(frozen=True)
class State:
    """Everything the checks compare: data, ledger and position."""

    integrity: str
    total: int
    balances: tuple[tuple[int, int], ...]
    transfers: tuple[str, ...]
    ledger: dict[str, str]
    position: str | None

    def applied_once(self) -> list[str]:
        """Problems with 'the ledger agrees with the data' (empty when it does)."""
        problems = []
        seen: dict[str, int] = {}
        for cmd in self.transfers:
            seen[cmd] = seen.get(cmd, 0) + 1
        for cmd, n in seen.items():
            if n != 1:
                problems.append(f"{cmd} has {n} transfer rows")
            if self.ledger.get(cmd) != "applied":
                problems.append(f"{cmd} has a transfer row but ledger says {self.ledger.get(cmd)}")
        for cmd, outcome in self.ledger.items():
            if outcome == "applied" and cmd not in seen:
                problems.append(f"{cmd} is applied in the ledger but has no transfer row")
        return problems


def read_state(path: Path) -> State:
    """Open ``path`` as the writer would (a read-write connection rolls a hot journal back)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        balances = tuple(conn.execute("SELECT id, balance FROM accounts ORDER BY id"))
        total = sum(b for _, b in balances)
        transfers = tuple(r[0] for r in conn.execute("SELECT cmd_id FROM transfers ORDER BY n"))
        ledger = dict(conn.execute("SELECT id, outcome FROM _efsqlite_commands"))
        row = conn.execute("SELECT value FROM _efsqlite_state WHERE key = 'position'").fetchone()
    finally:
        conn.close()
    return State(integrity, total, balances, transfers, ledger, row[0] if row else None)


def command_ids(records: Sequence[dict[str, Any]]) -> set[str]:
    ids: set[str] = set()
    for record in records:
        body = json.loads(record["body"])
        for command in body.get("commands", [body]):
            ids.add(command["id"])
    return ids


def check_run(state: State, reference: State, acknowledged: Sequence[dict[str, Any]]) -> list[str]:
    """Every problem with a faulted run's end state (an empty list is a pass)."""
    problems = []
    if state.integrity != "ok":
        problems.append(f"integrity_check: {state.integrity}")
    if state.total != TOTAL:
        problems.append(f"invariant broken: total {state.total} != {TOTAL}")
    problems += state.applied_once()
    lost = sorted(command_ids(acknowledged) - set(state.ledger))
    if lost:
        problems.append(f"acknowledged but not in the ledger: {lost[:5]}")
    if state.ledger != reference.ledger:
        diff = {k for k in set(state.ledger) | set(reference.ledger)} - {
            k for k in state.ledger if reference.ledger.get(k) == state.ledger[k]
        }
        problems.append(f"ledger differs from the fault-free run on {sorted(diff)[:5]}")
    if state.transfers != reference.transfers:
        problems.append("transfers differ from the fault-free run (order or count)")
    if state.balances != reference.balances:
        problems.append("balances differ from the fault-free run")
    if state.position != reference.position:
        problems.append(f"position {state.position} != {reference.position}")
    return problems


def read_only_view(path: Path, acknowledged: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """What a reader (``mode=ro``) sees of a file a writer just died on.

    Returns ("refused", []) when SQLite refuses because of a hot journal
    (``SQLITE_READONLY_ROLLBACK``: only a read-write connection may roll it back), or
    ("read", problems) with what is wrong with the state it read.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
        ledger = {r[0] for r in conn.execute("SELECT id FROM _efsqlite_commands")}
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == 776:  # SQLITE_READONLY_ROLLBACK
            return ("refused", [])
        return ("read", [f"reader got {type(exc).__name__}: {exc}"])
    finally:
        conn.close()
    problems = []
    if integrity != "ok":
        problems.append(f"reader saw integrity_check {integrity}")
    if total != TOTAL:
        problems.append(f"reader saw total {total}")
    lost = command_ids(acknowledged) - ledger
    if lost:
        problems.append(f"reader misses acknowledged commands {sorted(lost)[:5]}")
    return ("read", problems)


def fresh_copy(template: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    target = folder / template.name
    shutil.copy(template, target)
    return target
