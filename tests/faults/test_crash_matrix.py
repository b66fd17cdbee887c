"""Crash safety: the writer is SIGKILLed at every fdatasync, pwrite64 and unlink of a run.

This is the crash-safety proof of the write path (issue "Foundation and the write path") and
the crash matrix of the fault suite. For each syscall and every K from 1 to the number of
such calls a fault-free run makes, a real writer process is killed by ``strace`` on entry to
its K-th call, in the middle of a commit. Before a new writer starts, a ``mode=ro`` reader
looks at the file. Then a new writer process gets the unacknowledged messages again, as SQS
redelivers them, until the queue is empty.

A snapshot-mode reader process (``snapshot_child.py``, patching on) looks on at every point:
it has a snapshot from before the run, refreshes before the second batch (so its next
refresh spans several commits), after the kill and after recovery. Each commit's page log
entry is written and synced before the commit point, so a kill can leave an entry for a
commit that never happened; the reader must never patch with it. The page log's sync runs
in a thread of its own, which the matrix's ``strace`` (main thread only) never stops at: a
separate test kills the writer there, at each commit.

Pass, at every point: ``PRAGMA integrity_check`` is ok, the total balance is unchanged, every
command is applied exactly once (one ``transfers`` row per applied ledger row, none for
rejected ones), nothing acknowledged is missing, and the end state equals a fault-free run's
(same outcomes, same order, same position). The reader either is refused with
``SQLITE_READONLY_ROLLBACK`` (a hot journal) or sees a consistent state. The snapshot reader
answers what a direct read answers, fresh, from a snapshot equal to the source's pages byte
for byte, or, while a direct read is refused (a hot journal), its last good answer, stale.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.conftest import Bank
from tests.faults.snapshot_reader import SnapshotWatch

pytestmark = pytest.mark.faults

#: Points run in parallel: each is mostly process start-up and waiting on strace.
WORKERS = 3
#: Messages per event (the stand-in queue hands out 10 at a time): one commit each.
BATCH = 10


@dataclass
class Point:
    """What one kill point found: the reader's view after the kill, the snapshot reader's."""

    view: str
    problems: list[str]
    #: The snapshot reader's refreshes: "patch" or why it copied the whole file.
    refreshes: list[str] = field(default_factory=list)


def _kill_point(
    bank: Bank,
    syscall: str,
    k: int,
    work: Path,
    mode: str = "DELETE",
    *,
    prefix: list[str] | None = None,
    plain_events: int = 0,
) -> Point:
    """Kill the writer (at its K-th ``syscall``, or as ``prefix`` says after ``plain_events``
    events of a writer run plainly), restart it until the queue is empty, and check."""
    folder = work / f"{mode}-{syscall}-{k}"
    db = harness.fresh_copy(bank.template, folder)
    queue = harness.FifoQueue(bank.records)
    views: list[tuple[str, list[str]]] = []
    # A snapshot-mode reader with a snapshot from before the run refreshes before the second
    # batch only (so its next refresh spans several commits, and a kill's log entry for a
    # commit that never happened), after the kill and after recovery, each time checked
    # against a direct read and the source's bytes.
    watch = SnapshotWatch(db, work / f"{folder.name}-snapshots")
    watch.look("before the run")

    def look(q: harness.FifoQueue) -> None:
        views.append(harness.read_only_view(db, q.acknowledged))
        watch.look(f"after the kill ({len(q.acknowledged)} acknowledged)")

    def between(_: harness.DriveReport, q: harness.FifoQueue) -> None:
        if len(q.acknowledged) == BATCH:
            watch.look("before the second batch")

    report = harness.DriveReport()
    if plain_events:
        report = harness.drive(
            queue,
            db.parent,
            bank.migrations,
            max_events=plain_events,
            journal_mode=mode,
            before_event=between,
        )
    rest = harness.drive(
        queue,
        db.parent,
        bank.migrations,
        first_prefix=prefix or harness.strace_fault(syscall, "signal=KILL", k),
        after_death=look,
        journal_mode=mode,
        before_event=between,
    )
    watch.look("after recovery")
    watch.close()
    problems = []
    if report.deaths + rest.deaths != [-9]:
        problems.append(f"expected one SIGKILL, got deaths {report.deaths + rest.deaths}")
    if queue.pending:
        problems.append(f"{len(queue.pending)} messages never settled")
    problems += harness.check_run(harness.read_state(db), bank.reference, queue.acknowledged)
    for _, seen in views:
        problems += seen
    problems += watch.problems
    view = views[0][0] if views else "none"
    return Point(view, [f"{mode} {syscall} K={k}: {p}" for p in problems], watch.refreshes)


def _snapshot_summary(points: list[Point]) -> str:
    found = collections.Counter(r for point in points for r in point.refreshes)
    return f"snapshot refreshes {dict(found.most_common())}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("syscall", ["fdatasync", "pwrite64", "unlink"])
def test_crash_safety_writer_sigkilled_at_every_call_loses_and_duplicates_nothing(
    bank: Bank, syscall: str, tmp_path: Path
) -> None:
    # GIVEN a batch run that makes `total` calls of `syscall` when nothing goes wrong
    total = bank.calls[syscall]
    assert total > 0
    # WHEN the writer is killed on entry to its K-th call, for every K, and restarted
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(
            pool.map(lambda k: _kill_point(bank, syscall, k, tmp_path), range(1, total + 1))
        )
    elapsed = time.monotonic() - started
    # THEN every point ends intact, exactly once, equal to the fault-free run
    problems = [p for point in results for p in point.problems]
    refused = sum(1 for point in results if point.view == "refused")
    print(
        f"\ncrash matrix {syscall}: {total} kill points, {len(problems)} problems, "
        f"reader refused (hot journal) at {refused}, {_snapshot_summary(results)}, "
        f"{elapsed:.1f}s"
    )
    assert not problems, "\n".join(problems[:20])
    # AND the snapshot reader beside the points did patch
    assert any("patch" in point.refreshes for point in results)


@pytest.mark.timeout(300)
def test_writer_sigkilled_at_its_page_log_sync_misleads_no_snapshot_reader(
    bank: Bank, tmp_path: Path
) -> None:
    # GIVEN a run of one commit per batch of 10 messages; each commit's page log entry is
    # written, then synced in a thread of its own while the database file syncs, before the
    # commit point (the matrix above traces the main thread only: it never stops there)
    commits = -(-len(bank.records) // BATCH)
    # WHEN the writer is killed on entry to that sync at commit N (a plain writer made the
    # N-1 commits before), for every N, and restarted; a snapshot reader looks on
    results = [
        _kill_point(
            bank,
            "page-log-fdatasync",
            n,
            tmp_path,
            prefix=harness.strace_page_log_fault(
                tmp_path / f"DELETE-page-log-fdatasync-{n}" / bank.template.name
            ),
            plain_events=n - 1,
        )
        for n in range(1, commits + 1)
    ]
    # THEN every point ends intact, exactly once, equal to the fault-free run, and the
    # snapshot reader served the state a direct read saw, byte for byte (a log entry for a
    # commit that never happened made it copy the whole file, never patch wrongly)
    problems = [p for point in results for p in point.problems]
    print(
        f"\npage log sync kills: {commits} kill points, {len(problems)} problems, "
        f"{_snapshot_summary(results)}"
    )
    assert not problems, "\n".join(problems[:20])
    assert all(point.view == "refused" for point in results)


def test_crash_matrix_has_at_least_75_kill_points(bank: Bank) -> None:
    # GIVEN the workload the matrix runs / WHEN its calls are counted
    points = bank.calls["fdatasync"] + bank.calls["pwrite64"] + bank.calls["unlink"]
    # THEN the three parametrized tests above kill the writer at least 75 times
    assert points >= 75, bank.calls


SOAK_MODES = [
    ("TRUNCATE", "fdatasync"),
    ("TRUNCATE", "pwrite64"),
    ("TRUNCATE", "ftruncate"),
    ("PERSIST", "fdatasync"),
    ("PERSIST", "pwrite64"),
]


@pytest.mark.timeout(1800)
@pytest.mark.skipif(not harness.SOAK, reason="soak only (make soak): other journal modes")
@pytest.mark.parametrize(("mode", "syscall"), SOAK_MODES)
def test_crash_matrix_in_other_journal_modes(
    bank: Bank, mode: str, syscall: str, tmp_path: Path
) -> None:
    # GIVEN the same workload in journal mode `mode`, and its count of `syscall` calls
    calls = harness.count_calls(bank.template, bank.migrations, bank.records, tmp_path, mode)
    total = calls[syscall]
    assert total > 0
    # WHEN the writer is killed at every one of them and restarted (in the same mode)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(
            pool.map(lambda k: _kill_point(bank, syscall, k, tmp_path, mode), range(1, total + 1))
        )
    # THEN every point ends intact, exactly once, equal to the fault-free run
    problems = [p for point in results for p in point.problems]
    print(f"\ncrash matrix {mode} {syscall}: {total} kill points, {len(problems)} problems")
    assert not problems, "\n".join(problems[:20])
