"""A writer killed mid-commit leaves a hot journal: readers never serve a torn state.

The writer is the real Writer in a real process; strace kills it with SIGKILL at its K-th
``fdatasync``, which leaves ``main.sqlite-journal`` hot. Read-only opens then fail with
SQLITE_READONLY_ROLLBACK until a read-write connection (the writer's next run) rolls it back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.reader_db import (
    TOTAL,
    function_url_event,
    make_reader,
    make_writer,
    seed_accounts,
    tree_digest,
    write,
)

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
SUM = {"db": "main", "sql": "SELECT count(*), sum(balance) FROM accounts"}


def kill_writer_mid_commit(root: Path, at_sync: int) -> int:
    """Run one transfer in a real writer process, SIGKILLed at its ``at_sync``-th fdatasync."""
    done = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fdatasync",
            "-e",
            f"inject=fdatasync:signal=KILL:when={at_sync}",
            sys.executable,
            "-m",
            "tests.support.reader_procs",
            "writer",
            str(root),
            "1",
            str(at_sync),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode


def error_type(answer: dict[str, Any]) -> str | None:
    return answer["error"]["type"] if "error" in answer else None


def test_hot_journal_gives_recovering_or_stale_then_recovers(tmp_path: Path) -> None:
    # GIVEN a seeded database and readers that have already answered (snapshot taken)
    writer = make_writer(tmp_path)
    _, seeded_at = write(writer, [("SELECT 1", [])])
    seed_accounts(writer)
    writer.close()
    snap = make_reader(tmp_path, read_mode="snapshot")
    direct = make_reader(tmp_path, read_mode="direct")
    before = snap.handle(SUM)
    assert before["rows"] == [[10, TOTAL]]
    assert direct.handle(SUM)["rows"] == [[10, TOTAL]]
    journal = tmp_path / "data" / "main.sqlite-journal"
    # WHEN a writer process is killed mid-commit, at the first sync that leaves a hot journal
    probe = make_reader(tmp_path, read_mode="direct")
    for at_sync in range(1, 9):
        assert kill_writer_mid_commit(tmp_path, at_sync) == -9
        if journal.exists() and error_type(probe.handle(SUM)) == "Recovering":
            break
    else:
        pytest.fail("no kill point left a hot journal")
    probe.close()
    on_disk = tree_digest(tmp_path / "data")
    # THEN direct reads answer "Recovering", retryable
    answer = direct.handle(SUM)
    assert error_type(answer) == "Recovering" and answer["error"]["retryable"] is True
    assert error_type(direct.handle({"db": "main", "command_id": "t-1-0"})) == "Recovering"
    # AND a snapshot reader serves its last good snapshot, marked stale
    stale = snap.handle(SUM)
    assert stale["stale"] is True
    assert stale["rows"] == [[10, TOTAL]] and stale["position"] == before["position"]
    assert snap.handle({"db": "main", "command_id": "t-1-0"})["stale"] is True
    # AND asking it for a newer position says "Recovering", with the position it has
    ahead = str(int(before["position"]) + 1)
    waited = snap.handle(dict(SUM, min_position=ahead, timeout_ms=50))
    assert error_type(waited) == "Recovering"
    assert waited["error"]["position"] == before["position"]
    # AND a snapshot reader without a snapshot yet says "Recovering"
    cold = make_reader(tmp_path, read_mode="snapshot")
    assert error_type(cold.handle(SUM)) == "Recovering"
    # AND through the Function URL that is a 503 with Retry-After
    response = direct.handle(function_url_event("POST", "/query", body=SUM))
    assert response["statusCode"] == 503 and response["headers"]["retry-after"] == "1"
    assert json.loads(response["body"])["error"]["type"] == "Recovering"
    # AND the readers repaired nothing: the file and its hot journal are untouched
    assert tree_digest(tmp_path / "data") == on_disk
    assert journal.exists()
    # WHEN the writer runs once (its read-write open rolls the journal back)
    touched = subprocess.run(
        [sys.executable, "-m", "tests.support.reader_procs", "touch", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert touched.returncode == 0, touched.stderr
    # THEN every reader answers again, fresh and consistent
    for reader in (direct, snap, cold):
        answer = reader.handle(SUM)
        assert answer["rows"] == [[10, TOTAL]], answer
        assert answer["stale"] is False
        assert int(answer["position"]) > int(before["position"]) > int(seeded_at)
    assert not journal.exists()
    for reader in (direct, snap, cold):
        reader.close()
