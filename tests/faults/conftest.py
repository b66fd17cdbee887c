"""Fixtures of the fault tests: a migrated template database, a workload, a reference run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults import harness


@dataclass(frozen=True)
class Bank:
    """A workload and what a fault-free writer makes of it."""

    template: Path
    migrations: Path
    records: list[dict[str, Any]]
    reference: harness.State
    calls: dict[str, int]


@pytest.fixture(scope="session")
def strace() -> str:
    if harness.STRACE is None:
        pytest.skip("strace is not installed (make system-tools installs it on Debian-like hosts)")
    return harness.STRACE


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory, strace: str) -> Iterator[Bank]:
    # 30 messages = 3 full batches of 10; soak runs 100 (10 commits).
    messages = 100 if harness.SOAK else 30
    root = tmp_path_factory.mktemp("bank")
    template, migrations = harness.make_template(root)
    records = harness.build_workload(messages, seed=7)
    reference_db = harness.fresh_copy(template, root / "reference")
    queue = harness.FifoQueue(records)
    report = harness.drive(queue, reference_db.parent, migrations)
    assert not report.deaths and not report.failed_ids, report.stderr
    reference = harness.read_state(reference_db)
    assert reference.integrity == "ok" and reference.total == harness.TOTAL
    assert not reference.applied_once()
    assert "rejected" in reference.ledger.values(), "the workload should exercise rejections"
    calls = harness.count_calls(template, migrations, records, root)
    yield Bank(template, migrations, records, reference, calls)
