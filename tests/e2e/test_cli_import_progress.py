"""``efsqlite import`` as a real process against a running stack: progress while ``--wait``
waits, Ctrl-C mid-import (a newline, a hint, exit 130), and a resumed run counting only its
own rows."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import REPO, Stack


def _csv(path: Path, rows: int, prefix: str) -> Path:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["id", "title"])
        for i in range(rows):
            out.writerow([f"{prefix}-{i:06d}", f"title {i}"])
    return path


def _count(stack: Stack, prefix: str, progress: Path) -> object:
    last = json.loads(progress.read_text())["last"]["sequence_number"]
    return stack.rows(f"SELECT count(*) FROM todos WHERE id LIKE '{prefix}-%'", min_position=last)


def test_wait_shows_the_writer_settling(stack: Stack, tmp_path: Path) -> None:
    # GIVEN 3,000 rows at 10 rows per command (300 commands to settle)
    path = _csv(tmp_path / "settle.csv", 3000, "settle")
    # WHEN imported with --wait
    result = stack.cli(
        "import",
        str(path),
        "--db",
        "main",
        "--table",
        "todos",
        "--rows-per-command",
        "10",
        "--wait",
    )
    # THEN stderr shows the writer's progress, on the same line style, up to all rows
    assert result.returncode == 0, result.stderr
    seen = [
        int(m.group(1))
        for m in re.finditer(
            r"import: waiting for the writer: (\d+)/3000 rows settled", result.stderr
        )
    ]
    assert seen and seen[-1] == 3000, result.stderr
    assert any(n < 3000 for n in seen), result.stderr
    assert seen == sorted(seen)
    assert result.stderr.endswith("rows settled\n"), result.stderr[-200:]
    assert json.loads(result.stdout)["rejected"] == 0


def test_ctrl_c_ends_the_line_hints_resume_and_a_rerun_counts_its_own_rows(
    stack: Stack, tmp_path: Path
) -> None:
    # GIVEN an import long enough to interrupt (20,000 rows, 2 per command)
    path = _csv(tmp_path / "big.csv", 20_000, "sigint")
    progress = Path(f"{path}.import-progress.json")
    argv = ["import", str(path), "--db", "main", "--table", "todos", "--rows-per-command", "2"]
    argv += ["--data-dir", str(stack.data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFSQLITE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "efsqlite", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # WHEN Ctrl-C arrives after some chunks went out
    deadline = time.monotonic() + 60
    while not progress.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    stderr = err.decode()
    # THEN it exits 130, ends the progress line with a newline, and says how to resume
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and out == b""
    assert re.search(
        r"rows\n(\r)?import: interrupted with \d+ rows sent; run the same command", stderr
    )
    assert "\r" not in stderr.rsplit("\n", 2)[-2], stderr[-300:]
    sent_before = json.loads(progress.read_text())["rows_sent"]
    assert 0 < sent_before < 20_000

    # WHEN the same command runs again
    again = stack.cli(*argv[:-2], "--wait", timeout=300)
    # THEN it resumes, reports only the rows it sent, and no row is doubled
    assert again.returncode == 0, again.stderr
    assert f"resuming after {sent_before} rows" in again.stderr
    summary = json.loads(again.stdout)
    assert summary["rows"] == 20_000 - sent_before
    assert summary["resumed_from"] == sent_before and summary["total_rows"] == 20_000
    assert summary["commands"] == (20_000 - sent_before) // 2
    assert _count(stack, "sigint", progress) == [[20_000]]
