"""Crash safety: the writer is SIGKILLed at every fdatasync, pwrite64 and unlink of a run.

This is the crash-safety proof of the write path (issue "Foundation and the write path") and
the crash matrix of the fault suite. For each syscall and every K from 1 to the number of
such calls a fault-free run makes, a real writer process is killed by ``strace`` on entry to
its K-th call, in the middle of a commit. Before a new writer starts, a ``mode=ro`` reader
looks at the file. Then a new writer process gets the unacknowledged messages again, as SQS
redelivers them, until the queue is empty.

Pass, at every point: ``PRAGMA integrity_check`` is ok, the total balance is unchanged, every
command is applied exactly once (one ``transfers`` row per applied ledger row, none for
rejected ones), nothing acknowledged is missing, and the end state equals a fault-free run's
(same outcomes, same order, same position). The reader either is refused with
``SQLITE_READONLY_ROLLBACK`` (a hot journal) or sees a consistent state.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.conftest import Bank

pytestmark = pytest.mark.faults

#: Points run in parallel: each is mostly process start-up and waiting on strace.
WORKERS = 3


def _kill_point(
    bank: Bank, syscall: str, k: int, work: Path, mode: str = "DELETE"
) -> tuple[str, list[str]]:
    db = harness.fresh_copy(bank.template, work / f"{mode}-{syscall}-{k}")
    queue = harness.FifoQueue(bank.records)
    views: list[tuple[str, list[str]]] = []

    def look(q: harness.FifoQueue) -> None:
        views.append(harness.read_only_view(db, q.acknowledged))

    report = harness.drive(
        queue,
        db.parent,
        bank.migrations,
        first_prefix=harness.strace_fault(syscall, "signal=KILL", k),
        after_death=look,
        journal_mode=mode,
    )
    problems = []
    if report.deaths != [-9]:
        problems.append(f"expected one SIGKILL, got deaths {report.deaths}")
    if queue.pending:
        problems.append(f"{len(queue.pending)} messages never settled")
    problems += harness.check_run(harness.read_state(db), bank.reference, queue.acknowledged)
    for _, seen in views:
        problems += seen
    view = views[0][0] if views else "none"
    return view, [f"{mode} {syscall} K={k}: {p}" for p in problems]


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
    problems = [p for _, found in results for p in found]
    refused = sum(1 for view, _ in results if view == "refused")
    print(
        f"\ncrash matrix {syscall}: {total} kill points, {len(problems)} problems, "
        f"reader refused (hot journal) at {refused}, {elapsed:.1f}s"
    )
    assert not problems, "\n".join(problems[:20])


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
    problems = [p for _, found in results for p in found]
    print(f"\ncrash matrix {mode} {syscall}: {total} kill points, {len(problems)} problems")
    assert not problems, "\n".join(problems[:20])
