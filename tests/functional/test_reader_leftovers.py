"""A reader process killed mid-refresh (as a Lambda timeout does) leaves a torn copy in /tmp.

Lambda keeps ``/tmp`` when it restarts an environment, so the next reader process finds the
dead one's files. It must never serve them, and it cleans them up.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reader_db import TOTAL, make_reader, make_writer, seed_accounts, write

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
ROOT = Path(__file__).resolve().parents[2]
SUM = {"db": "main", "sql": "SELECT count(*), sum(balance) FROM accounts"}

_READER_SCRIPT = """
import sys
from pathlib import Path
from tests.support.reader_db import make_reader
reader = make_reader(Path(sys.argv[1]))
print(reader.handle({"db": "main", "sql": "SELECT count(*) FROM accounts"}), flush=True)
"""


def test_torn_copy_from_a_killed_reader_is_never_served(tmp_path: Path) -> None:
    # GIVEN a database of about 4 MiB: a copy writes it 1 MiB at a time, to the copy and to
    # its twin (the spare the next refresh patches), so it takes 8 writes
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    write(
        writer,
        [("INSERT INTO blobs (id, data) VALUES (?, randomblob(100000))", [i]) for i in range(40)],
    )
    writer.close()
    # WHEN a reader process is SIGKILLed at its 5th pwrite64 (inside its first snapshot copy,
    # 2 MiB into the copy and its twin; the reader writes nothing else)
    killed = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=pwrite64",
            "-e",
            "inject=pwrite64:signal=KILL:when=5",
            sys.executable,
            "-c",
            _READER_SCRIPT,
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -9
    assert killed.stdout == ""  # it never answered
    snapshots = tmp_path / "snapshots"
    torn = list(snapshots.glob("*/main-*.tmp"))  # the copy and its twin
    assert len(torn) == 2 and all(p.stat().st_size > 0 for p in torn)
    # AND a second reader process is SIGKILLed after answering (its copy is complete)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _READER_SCRIPT + "import os; os.kill(os.getpid(), 9)\n",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert len(list(snapshots.glob("*/main-*.sqlite"))) == 1
    # WHEN the next reader starts in the same /tmp
    reader = make_reader(tmp_path)
    answer = reader.handle(SUM)
    # THEN it answers from its own fresh copy, and the dead readers' files are gone
    assert answer["rows"] == [[10, TOTAL]] and answer["stale"] is False
    store = reader._store
    assert store is not None
    assert sorted(p.name for p in snapshots.iterdir()) == sorted(
        [store.folder.name, store.folder.name + ".lock"]
    )
    assert not any(p.exists() for p in torn)
    reader.close()
