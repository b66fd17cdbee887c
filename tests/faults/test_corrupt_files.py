"""Corrupt input files: random byte flips in a copy of a database, served by the reader.

A database written by the real writer is copied, and each copy gets a few random bytes
flipped: anywhere in the file, or aimed at the structures SQLite depends on (the header and
b-tree page headers). The reader Lambda's handler (``functions/reader/app.py``, in a separate
process so a crash is seen) then answers queries on each copy, in snapshot and direct mode.

Pass: the process never crashes; every answer is a result or a typed error
(``{"error": {"type", "message", "retryable"}}`` of a public type, never ``internal``); when
SQLite's ``quick_check`` finds the copy damaged, snapshot mode refuses to build a snapshot
from it (an error, and no snapshot file left behind).

What this cannot catch: SQLite pages carry no checksums, so a flipped byte inside a stored
value reads back as a different value. That is documented in docs/reliability.md.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import harness

pytestmark = pytest.mark.faults

CHILD = Path(__file__).with_name("reader_child.py")
QUERIES = [
    {"db": harness.DB, "sql": "SELECT sum(balance) AS total FROM accounts"},
    {"db": harness.DB, "sql": "SELECT cmd_id, amount FROM transfers ORDER BY n"},
    {"db": harness.DB, "sql": "SELECT count(*) FROM transfers WHERE amount > ?", "params": [30]},
    {"db": harness.DB, "command_id": "t-3-1"},
]
PUBLIC_ERRORS = {
    "InvalidRequest",
    "NotAllowed",
    "SQLError",
    "QueryTimeout",
    "TooLarge",
    "DatabaseNotFound",
    "NotYetAtPosition",
    "Recovering",
    "Unavailable",
}
TRIALS = 500 if harness.SOAK else 100


def _flip(data: bytearray, rng: random.Random) -> None:
    page_size = int.from_bytes(data[16:18], "big") or 65536
    for _ in range(rng.randint(1, 8)):
        where = rng.random()
        if where < 0.3:
            offset = rng.randrange(0, 100)  # the database header
        elif where < 0.6:
            page = rng.randrange(0, len(data) // page_size)
            offset = page * page_size + (100 if page == 0 else 0) + rng.randrange(0, 12)
        else:
            offset = rng.randrange(0, len(data))
        data[offset] ^= 1 << rng.randrange(8)


def _quick_check(path: Path) -> str:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return str(conn.execute("PRAGMA quick_check").fetchone()[0])
        finally:
            conn.close()
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        # A damaged schema can put invalid UTF-8 in SQLite's error message: Python then
        # raises UnicodeDecodeError instead of sqlite3.DatabaseError.
        return f"{type(exc).__name__}: {exc}"


def _problems(answer: object) -> list[str]:
    if not isinstance(answer, dict):
        return [f"answer is not an object: {answer!r}"]
    if "error" in answer:
        error = answer["error"]
        if not isinstance(error, dict) or set(error) < {"type", "message", "retryable"}:
            return [f"malformed error {error!r}"]
        if error["type"] not in PUBLIC_ERRORS:
            return [f"error type {error['type']!r}: {error['message']}"]
        return []
    if not ("rows" in answer or "state" in answer or "command_id" in answer):
        return [f"neither result nor error: {sorted(answer)}"]
    return []


@pytest.fixture(scope="module")
def written_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    template, migrations = harness.make_template(root)
    db = harness.fresh_copy(template, root / "written")
    queue = harness.FifoQueue(harness.build_workload(60, seed=3, note_bytes=600))
    report = harness.drive(queue, db.parent, migrations)
    assert not report.deaths and not queue.pending
    return db


@pytest.mark.parametrize("mode", ["snapshot", "direct"])
def test_reader_answers_corrupt_files_with_typed_errors(
    written_db: Path, mode: str, tmp_path: Path
) -> None:
    # GIVEN copies of a written database, each with random bytes flipped
    rng = random.Random(f"corrupt-{mode}")
    trials: dict[str, str] = {}
    original = written_db.read_bytes()
    for i in range(TRIALS):
        folder = tmp_path / f"trial-{i:03d}"
        folder.mkdir()
        data = bytearray(original)
        _flip(data, rng)
        (folder / written_db.name).write_bytes(bytes(data))
        trials[folder.name] = _quick_check(folder / written_db.name)
    # WHEN the reader handler answers queries on each copy
    done = subprocess.run(
        [sys.executable, str(CHILD), mode, str(tmp_path / "snapshots"), json.dumps(QUERIES)],
        input="".join(f"{tmp_path / name}\n" for name in trials),
        capture_output=True,
        text=True,
        timeout=240,
        env=harness.child_env(),
    )
    # THEN it never crashed, and every answer is a result or a typed error
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == TRIALS
    problems: list[str] = []
    damaged = refused = 0
    for line in lines:
        name, answers = line["trial"], line["answers"]
        for answer in answers:
            found = _problems(answer)
            problems += [f"{name}: {p}" for p in found]
        data_answers = [a for a in answers[:3] if "error" not in a]
        if trials[name] != "ok":
            damaged += 1
            refused += not data_answers
            # THEN in snapshot mode a damaged copy is never served and never kept
            if mode == "snapshot" and (data_answers or line["left"]):
                problems.append(f"{name}: damaged ({trials[name][:80]}) but served {line}")
    print(
        f"\ncorrupt files, {mode}: {TRIALS} copies, {damaged} damaged per quick_check, "
        f"{refused} of those refused outright, {len(problems)} problems"
    )
    assert damaged > TRIALS // 4, "the flips should damage a good share of the copies"
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("mode", ["snapshot", "direct"])
def test_reader_types_a_schema_name_that_is_not_utf8(
    written_db: Path, mode: str, tmp_path: Path
) -> None:
    # GIVEN a copy whose schema names a table with an invalid UTF-8 byte
    data = bytearray(written_db.read_bytes())
    at = data.find(b"tabletransferstransfers")
    assert at > 0
    data[at + 5] = data[at + 14] = 0xE5
    folder = tmp_path / "trial-utf8"
    folder.mkdir()
    (folder / written_db.name).write_bytes(bytes(data))
    # WHEN the reader handler answers queries on it
    done = subprocess.run(
        [sys.executable, str(CHILD), mode, str(tmp_path / "snapshots"), json.dumps(QUERIES)],
        input=f"{folder}\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=harness.child_env(),
    )
    # THEN no crash, and typed errors only (no 'internal'), and no snapshot kept
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    problems = [p for answer in line["answers"] for p in _problems(answer)]
    assert problems == []
    assert line["left"] == []
