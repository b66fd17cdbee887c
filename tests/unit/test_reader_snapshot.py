"""Snapshot mode: leftovers never served, swaps without renaming open files, staleness rules."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from efsqlite.read.reader import Reader

from tests.support.reader_db import (
    TOTAL,
    make_reader,
    make_writer,
    seed_accounts,
    transfer_statements,
    write,
)
from tests.support.sqlite_files import open_db

SUM = {"db": "main", "sql": "SELECT sum(balance), max(balance) FROM accounts"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    writer = make_writer(tmp_path)
    seed_accounts(writer)
    writer.close()
    return tmp_path


def all_files(reader: Reader) -> list[str]:
    """Every file in this reader's snapshot folder: copies, spares, anything half-made."""
    store = reader._store
    assert store is not None
    return sorted(p.name for p in store.folder.iterdir())


def snapshot_files(reader: Reader) -> list[str]:
    """The copies a reader may serve (``.sqlite``); spares (``.spare``) are never opened."""
    return [name for name in all_files(reader) if name.endswith(".sqlite")]


def plant_leftovers(snapshots: Path) -> list[Path]:
    """What a timed-out environment leaves in /tmp: torn copies, a wrong copy, strays."""
    snapshots.mkdir(parents=True)
    dead = snapshots / "1-deadbeef"
    dead.mkdir()
    (snapshots / "1-deadbeef.lock").write_bytes(b"")
    torn = dead / "main-1.tmp"
    torn.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    garbage = dead / "main-2.sqlite"
    garbage.write_bytes(os.urandom(8192))
    wrong = dead / "main-3.sqlite"
    with open_db(wrong) as conn:  # a valid database holding wrong data
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, balance INT)")
        conn.execute("INSERT INTO accounts VALUES (1, 'x', -5)")
    stray = snapshots / "main.sqlite"
    stray.write_bytes(wrong.read_bytes())
    orphan = snapshots / "2-cafebabe"  # a folder whose lock file is already gone
    orphan.mkdir()
    (orphan / "main-1.sqlite").write_bytes(wrong.read_bytes())
    return [torn, garbage, wrong, stray, dead, orphan]


def test_leftover_snapshots_are_never_served_and_are_removed(root: Path) -> None:
    # GIVEN torn, corrupt and wrong snapshot files left in the snapshot dir by a dead process
    planted = plant_leftovers(root / "snapshots")
    reader = make_reader(root)
    # WHEN the first query comes  THEN the answer comes from a fresh copy of the source
    answer = reader.handle(SUM)
    assert answer["rows"] == [[TOTAL, 1000]]
    assert answer["stale"] is False
    # AND every leftover is gone, while this process's own snapshot remains
    assert not any(path.exists() for path in planted)
    assert snapshot_files(reader) == ["main-1.sqlite"]
    reader.close()


def test_a_live_process_snapshots_are_left_alone(root: Path) -> None:
    # GIVEN one reader serving from its snapshot (holding its owner lock)
    first = make_reader(root)
    assert first.handle(SUM)["rows"] == [[TOTAL, 1000]]
    # WHEN a second reader starts on the same snapshot dir (and cleans up)
    second = make_reader(root)
    assert second.handle(SUM)["rows"] == [[TOTAL, 1000]]
    # THEN the first one's snapshot is still there and still serves
    assert snapshot_files(first) == ["main-1.sqlite"]
    assert first.handle(SUM)["rows"] == [[TOTAL, 1000]]
    store = first._store
    assert store is not None
    lock_fd = os.open(store.root / (store.folder.name + ".lock"), os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(lock_fd)
    second.close()
    first.close()


def test_refresh_swaps_to_a_new_name_and_deletes_the_old(root: Path) -> None:
    # GIVEN a reader with a snapshot (patching off), then a write
    reader = make_reader(root, snapshot_patch=False)
    first = reader.handle(SUM)
    writer = make_writer(root)
    _, position = write(writer, transfer_statements(1, 2, 7))
    # WHEN the next query comes (max staleness 0)  THEN it sees the write from a new file
    second = reader.handle(SUM)
    assert second["rows"] == [[TOTAL, 1007]]
    assert second["position"] == position and int(position) > int(first["position"])
    assert snapshot_files(reader) == ["main-2.sqlite"]
    # AND with no write in between, no refresh happens
    reader.handle(SUM)
    assert snapshot_files(reader) == ["main-2.sqlite"]
    assert reader._snapshots["main"].refreshes == 2
    writer.close()
    reader.close()


def test_a_patched_refresh_keeps_the_old_copy_closed_as_the_spare(root: Path) -> None:
    # GIVEN a reader with a snapshot (its full copy also wrote a twin, the spare)
    reader = make_reader(root)
    reader.handle(SUM)
    assert all_files(reader) == ["main-1.sqlite", "main-2.spare"]
    writer = make_writer(root)
    # WHEN a write comes and then a query
    write(writer, transfer_statements(1, 2, 7))
    assert reader.handle(SUM)["rows"] == [[TOTAL, 1007]]
    # THEN the spare was patched into the new current copy under a new name, and the old
    # current copy, closed, is the next spare
    snap = reader._snapshots["main"]
    assert (snap.refreshes, snap.patches) == (2, 1)
    assert all_files(reader) == ["main-1.spare", "main-3.sqlite"]
    assert snap.last_refresh is not None and snap.last_refresh.patched
    # AND the next write patches again, reading only the pages that changed
    write(writer, transfer_statements(2, 3, 1))
    assert reader.handle(SUM)["rows"] == [[TOTAL, 1006]]
    assert (snap.refreshes, snap.patches) == (3, 2)
    assert all_files(reader) == ["main-3.spare", "main-4.sqlite"]
    assert 0 < snap.last_refresh.pages_read < snap.current.image.page_count
    writer.close()
    reader.close()


def test_staleness_window_and_min_position(root: Path) -> None:
    # GIVEN a reader allowed to be 60 s stale, warmed, and then a write
    reader = make_reader(root, max_staleness_ms=60_000)
    before = reader.handle(SUM)
    writer = make_writer(root)
    _, position = write(writer, transfer_statements(3, 4, 9))
    # WHEN asked without min_position  THEN the snapshot is served, not re-checked
    assert reader.handle(SUM)["position"] == before["position"]
    # WHEN asked with min_position = the write's position  THEN it refreshes at once
    fresh = reader.handle(dict(SUM, min_position=position))
    assert fresh["position"] == position
    assert fresh["rows"] == [[TOTAL, 1009]]
    writer.close()
    reader.close()


def test_migration_without_position_change_refreshes(root: Path) -> None:
    # GIVEN a reader with a snapshot  WHEN the writer applies a new migration on cold start
    reader = make_reader(root)
    assert reader.handle(SUM)["schema_version"] == 1
    (root / "migrations" / "0002_more.sql").write_text("CREATE TABLE more (x INTEGER);")
    writer = make_writer(root)
    writer.database("main")
    # THEN the reader sees the new schema version even though no command moved the position
    answer = reader.handle({"db": "main", "sql": "SELECT count(*) FROM more"})
    assert answer["schema_version"] == 2 and answer["rows"] == [[0]]
    writer.close()
    reader.close()


_CORRUPT_SCRIPT = """
import sqlite3, sys
path = sys.argv[1]
conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
(root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'accounts'").fetchone()
(size,) = conn.execute("PRAGMA page_size").fetchone()
conn.close()
with open(path, "r+b") as f:
    f.seek((root - 1) * size)
    f.write(b"\\x00" * 16)
"""


@pytest.mark.parametrize("patching", [False, True], ids=["full-copy", "patch"])
def test_a_corrupt_copy_is_never_served(root: Path, patching: bool) -> None:
    # GIVEN a reader serving a good snapshot
    reader = make_reader(root, snapshot_patch=patching)
    good = reader.handle(SUM)
    assert good["rows"] == [[TOTAL, 1000]]
    # AND then the source moves on (a commit that writes the accounts page) and that table
    # page gets damaged after the commit (in another process: this one holds connections to
    # the file, and a plain open/close here would drop their locks)
    writer = make_writer(root)
    write(writer, transfer_statements(1, 2, 5))
    writer.close()
    path = root / "data" / "main.sqlite"
    subprocess.run([sys.executable, "-c", _CORRUPT_SCRIPT, str(path)], check=True)
    # WHEN the reader refreshes  THEN the copy fails its check and the last good one is
    # served, marked stale
    # (patching: the page's CRC differs from its page log entry, so the reader copies the
    # whole file instead, and that copy fails quick_check)
    answer = reader.handle(SUM)
    assert answer["stale"] is True
    assert answer["rows"] == good["rows"] and answer["position"] == good["position"]
    assert all_files(reader) == ["main-1.sqlite"]
    snap = reader._snapshots["main"]
    assert snap.patches == 0
    if patching:
        reason = snap.last_full_copy_reason or ""
        assert re.fullmatch(r"page \d+ differs from its page log entry", reason), reason
    # AND a reader with no good snapshot answers a retryable error and keeps no file
    cold = make_reader(root)
    failed = cold.handle(SUM)
    assert failed["error"]["type"] == "Unavailable" and failed["error"]["retryable"] is True
    assert snapshot_files(cold) == []
    cold.close()
    reader.close()


def test_least_recently_used_databases_are_closed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN room for two open databases and three databases written by the writer
    monkeypatch.setattr("efsqlite.read.reader.MAX_OPEN_DATABASES", 2)
    writer = make_writer(root)
    for db in ("second", "third"):
        seed_accounts(writer, db)
    writer.close()
    reader = make_reader(root)
    # WHEN all three are read, "main" last touched first
    for db in ("main", "second", "main", "third"):
        assert reader.handle(dict(SUM, db=db))["rows"] == [[TOTAL, 1000]]
    # THEN only the two most recently used keep a snapshot in /tmp
    assert sorted(reader._snapshots) == ["main", "third"]
    assert [name.split("-")[0] for name in snapshot_files(reader)] == ["main", "third"]
    reader.close()


def test_unusable_snapshot_dir_is_a_retryable_error(root: Path) -> None:
    # GIVEN a snapshot dir that cannot be created (a file is in the way)
    (root / "blocked").write_text("not a folder")
    reader = make_reader(root, snapshot_dir=root / "blocked" / "snapshots")
    # WHEN asked  THEN "Unavailable", retryable, not an internal error
    answer = reader.handle(SUM)
    assert answer["error"]["type"] == "Unavailable" and answer["error"]["retryable"] is True
    reader.close()
