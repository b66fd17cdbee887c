"""SQLITE_FULL: the writer's filesystem runs out of space mid-run, then space comes back.

A small tmpfs holds the database and a filler file. Commands carry large rows, so the file
soon cannot grow. Pass: the batches that cannot commit are reported in ``batchItemFailures``
(none acknowledged), the writer does not crash, nothing acknowledged is lost, integrity is
ok; once the filler is deleted, the same warm writer process settles everything, exactly once, and
the end state equals a run that never ran out of space.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import harness

pytestmark = pytest.mark.faults

TMPFS_BYTES = 512 * 1024
FREE_BYTES = 160 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_without_acknowledging_and_recovers(
    small_disk: Path, tmp_path: Path
) -> None:
    # GIVEN a migrated database on a nearly full tmpfs, and a workload of large rows
    template, migrations = harness.make_template(tmp_path / "setup")
    records = harness.build_workload(30, seed=11, note_bytes=6000)
    reference_db = harness.fresh_copy(template, tmp_path / "reference")
    assert not harness.drive(harness.FifoQueue(records), reference_db.parent, migrations).deaths
    reference = harness.read_state(reference_db)
    shutil.copy(template, small_disk / template.name)
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - FREE_BYTES))
    queue = harness.FifoQueue(records)
    seen: dict[str, object] = {}

    def free_space_after_a_while(report: harness.DriveReport, q: harness.FifoQueue) -> None:
        if len(report.responses) == 12 and filler.exists():
            # THEN (at the 12th event) the batches that could not commit were handed back,
            # none acknowledged, and the file is intact with everything acknowledged in it
            seen["failed"] = list(report.failed_ids)
            seen["types"] = set(report.failure_types)
            seen["pending"] = len(q.pending)
            seen["state"] = harness.read_state(small_disk / template.name)
            seen["acknowledged"] = harness.command_ids(q.acknowledged)
            # WHEN space comes back
            filler.unlink()

    # WHEN the warm writer runs until the disk is full and it keeps failing
    report = harness.drive(queue, small_disk, migrations, before_event=free_space_after_a_while)

    assert seen["failed"], "the disk never filled up"
    assert seen["pending"], "everything fit: the test's sizes are wrong"
    assert seen["types"] == {"SQLITE_FULL"}, seen["types"]
    state = seen["state"]
    assert isinstance(state, harness.State)
    assert state.integrity == "ok"
    assert state.total == harness.TOTAL
    assert not state.applied_once()
    assert seen["acknowledged"] <= set(state.ledger)  # type: ignore[operator]
    # THEN the same process settled everything exactly once, as if the disk never filled
    assert report.starts == 1 and not report.deaths, report.stderr
    assert not queue.pending
    final = harness.read_state(small_disk / template.name)
    assert harness.check_run(final, reference, queue.acknowledged) == []
