"""I/O errors: EIO on the K-th fdatasync or pwrite64 of a warm writer process.

``strace -e inject=SYSCALL:error=EIO:when=K`` makes exactly one call fail, the way a flaky
network filesystem does. The writer process keeps running (a warm Lambda): the event whose
commit hit the error must report its records in ``batchItemFailures``; the stand-in queue
hands them out again, and they settle on the next try.

Pass, at every point: no crash, the injected failure is reported (except the directory fsync
that SQLite itself deliberately ignores), nothing acknowledged is lost, integrity is ok, and
the end state equals a fault-free run's: every command applied exactly once, in order.

``make test`` injects at every call of a 3-batch run; ``make soak`` of a 10-batch run.
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


def _injected_path(log: Path) -> str | None:
    """The file the injected call was made on (``strace -y`` prints ``fd<path>``)."""
    for line in log.read_text().splitlines():
        if "(INJECTED)" in line and "<" in line:
            return line.split("<", 1)[1].split(">", 1)[0]
    return None


def _eio_point(bank: Bank, syscall: str, k: int, work: Path) -> tuple[str, list[str]]:
    db = harness.fresh_copy(bank.template, work / f"{syscall}-{k}")
    log = db.parent / "strace.log"
    queue = harness.FifoQueue(bank.records)
    report = harness.drive(
        queue,
        db.parent,
        bank.migrations,
        first_prefix=harness.strace_fault(syscall, "error=EIO", k, log),
    )
    problems = []
    if report.deaths or report.starts != 1:
        problems.append(f"writer died ({report.deaths}); stderr: {report.stderr[-400:]}")
    path = _injected_path(log)
    if path is None:
        problems.append("strace did not inject")
        kind = "none"
    elif path.endswith((".sqlite", ".sqlite-journal")):
        kind = "reported" if report.failed_ids else "unreported"
        if not report.failed_ids:
            problems.append(f"EIO on {Path(path).name} was not reported in batchItemFailures")
        odd = [t for t in report.failure_types if not t.startswith("SQLITE_IOERR")]
        if odd:
            problems.append(f"failures typed {odd}, expected SQLITE_IOERR_*")
    else:
        # unixSync() fsyncs the directory once after creating the journal and ignores the
        # result by design: the commit goes on and is correct.
        kind = "directory (ignored by SQLite)"
    if queue.pending:
        problems.append(f"{len(queue.pending)} messages never settled")
    problems += harness.check_run(harness.read_state(db), bank.reference, queue.acknowledged)
    return kind, [f"{syscall} K={k}: {p}" for p in problems]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("syscall", ["fdatasync", "pwrite64"])
def test_eio_fails_the_batch_and_loses_nothing(bank: Bank, syscall: str, tmp_path: Path) -> None:
    # GIVEN a batch run that makes `total` calls of `syscall` when nothing goes wrong
    total = bank.calls[syscall]
    points = list(range(1, total + 1))
    # WHEN the K-th call fails with EIO, for each K, and the queue is drained
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda k: _eio_point(bank, syscall, k, tmp_path), points))
    elapsed = time.monotonic() - started
    # THEN the failure was reported, redelivery settled it, and nothing was lost or doubled
    problems = [p for _, found in results for p in found]
    kinds: dict[str, int] = {}
    for kind, _ in results:
        kinds[kind] = kinds.get(kind, 0) + 1
    print(
        f"\nEIO {syscall}: {len(points)} points of {total}, {len(problems)} problems, "
        f"{kinds}, {elapsed:.1f}s"
    )
    assert not problems, "\n".join(problems[:20])


def test_eio_matrix_has_at_least_40_points(bank: Bank) -> None:
    # GIVEN the workload / WHEN the EIO points are counted
    points = bank.calls["fdatasync"] + bank.calls["pwrite64"]
    # THEN there are at least 40
    assert points >= 40, bank.calls
