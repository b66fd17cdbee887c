"""Read-only at the system-call level: a reader process never opens EFS files for writing.

A real reader process runs normal and hostile queries under ``strace``; every ``open`` of a
path in the data folder must be read-only, and nothing there is created, renamed, truncated
or deleted. Snapshot files in the snapshot folder are the reader's own and may be written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reader_db import make_writer, seed_accounts, tree_digest

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
ROOT = Path(__file__).resolve().parents[2]

_READER_SCRIPT = """
import sys
from pathlib import Path
from tests.support.reader_db import make_reader
root, mode = Path(sys.argv[1]), sys.argv[2]
reader = make_reader(root, read_mode=mode)
statements = [
    "SELECT sum(balance) FROM accounts",
    "DELETE FROM accounts",
    "ATTACH DATABASE '" + str(root / "data" / "evil.sqlite") + "' AS evil",
    "VACUUM INTO '" + str(root / "data" / "copy.sqlite") + "'",
    "VACUUM",
    "PRAGMA query_only=0",
    "PRAGMA journal_mode=WAL",
    "CREATE TEMP TABLE t AS SELECT * FROM accounts",
    "SELECT * FROM accounts a, accounts b ORDER BY random()",
]
for _ in range(3):
    for sql in statements:
        reader.handle({"db": "main", "sql": sql})
    reader.handle({"db": "main", "command_id": "c-1"})
reader.close()
"""
_WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
_CHANGES = re.compile(r"^\d+\s+(unlink|unlinkat|rename|renameat2?|truncate|ftruncate|mkdir)\(")


@pytest.mark.parametrize("mode", ["snapshot", "direct"])
def test_reader_opens_efs_files_read_only(tmp_path: Path, mode: str) -> None:
    # GIVEN a database written by the real writer
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    writer.close()
    data = tmp_path / "data"
    before = tree_digest(data)
    trace = tmp_path / "trace.txt"
    # WHEN a reader process runs normal and hostile queries under strace
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            str(trace),
            "-e",
            "trace=open,openat,creat,unlink,unlinkat,rename,renameat,renameat2,truncate,mkdir",
            sys.executable,
            "-c",
            _READER_SCRIPT,
            str(tmp_path),
            mode,
        ],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    lines = trace.read_text().splitlines()
    efs = [line for line in lines if str(data) in line]
    # THEN the database was opened, and every open in the data folder was read-only
    assert any("main.sqlite" in line and "O_RDONLY" in line for line in efs)
    assert [line for line in efs if _WRITE_FLAGS.search(line)] == []
    # AND nothing in the data folder was created, renamed, truncated or deleted
    assert [line for line in efs if _CHANGES.search(line)] == []
    assert tree_digest(data) == before
