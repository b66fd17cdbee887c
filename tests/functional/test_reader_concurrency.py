"""Readers in separate processes while a real writer process commits transfers.

Every transfer moves money between two accounts inside one command, so the sum over all
accounts is an invariant: a torn snapshot or a dirty read would break it.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reader_db import ACCOUNTS, TOTAL, make_reader, make_writer, seed_accounts
from tests.support.reader_procs import reader_loop

ROOT = Path(__file__).resolve().parents[2]
READERS = 2
TRANSFERS = 150


@pytest.mark.parametrize("mode", ["snapshot", "direct"])
def test_readers_see_consistent_states_under_concurrent_writes(tmp_path: Path, mode: str) -> None:
    # GIVEN a database seeded by the real writer, and reader processes already reading
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    writer.close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    stop = ctx.Event()
    readies = [ctx.Event() for _ in range(READERS)]
    procs = [
        ctx.Process(target=reader_loop, args=(str(tmp_path), mode, 20_000, 60.0, ready, stop, out))
        for ready in readies
    ]
    for proc in procs:
        proc.start()
    for ready in readies:
        assert ready.wait(30)
    # WHEN a writer process commits transfers (one command per SQS event, one commit each)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.reader_procs",
            "writer",
            str(tmp_path),
            str(TRANSFERS),
            "7",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    stop.set()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    final = make_reader(tmp_path, read_mode="direct").handle(
        {"db": "main", "sql": "SELECT count(*) FROM _efsqlite_commands"}
    )
    # THEN every answer is either a retryable error or a consistent state
    seen_positions: set[str] = set()
    for answers in results:
        ok = [a for a in answers if "error" not in a]
        errors = [a["error"] for a in answers if "error" in a]
        assert ok, answers
        assert set(errors) <= {"Unavailable"}, errors
        assert all(a["count"] == ACCOUNTS and a["sum"] == TOTAL for a in ok)
        assert not any(a["stale"] for a in ok)
        # AND positions never go backwards within one reader
        positions = [int(a["position"]) for a in ok]
        assert positions == sorted(positions)
        seen_positions.update(a["position"] for a in ok)
        # AND the answer after the writer finished shows its last commit
        assert "error" not in answers[-1]
    assert final["rows"] == [[TRANSFERS + 1]]
    last = {answers[-1]["position"] for answers in results}
    assert len(last) == 1
    # AND the readers saw the database move while they read (first and last states differ)
    assert len(seen_positions) >= 2
