"""The page log: its format, the chain a reader plans from it, and the writer's VFS shim.

The format and chain tests are pure; the VFS tests open real writer connections
(``open_writer_connection``) on real files and read back the sidecar they write.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import apsw
import pytest
from efsqlite.core import pagelog
from efsqlite.core.connections import open_source_connection, open_writer_connection
from efsqlite.core.pagelog import KIND_COMMIT, KIND_START, NO_TRUNCATION, ChainError, Entry
from hypothesis import given, settings
from hypothesis import strategies as st

SEG = b"a" * 16
OTHER = b"b" * 16


def commit(counter: int, pages: dict[int, int], *, count: int = 10, segment: bytes = SEG) -> Entry:
    runs = pagelog.runs_of(pages)
    crcs = tuple(pages[p] for first, n in runs for p in range(first, first + n))
    return Entry(KIND_COMMIT, segment, counter, 4096, count, NO_TRUNCATION, 0, runs, crcs)


def start(counter: int, *, count: int = 10, segment: bytes = SEG) -> Entry:
    return Entry(KIND_START, segment, counter, 4096, count, NO_TRUNCATION, 0)


def log_bytes(*entries: Entry) -> bytes:
    return pagelog.MAGIC + b"".join(entry.encode() for entry in entries)


# -- format ---------------------------------------------------------------------------------
def test_entries_round_trip_and_know_where_they_end() -> None:
    entries = [start(5), commit(6, {1: 11, 2: 22, 9: 99}), commit(7, {1: 12})]
    data = log_bytes(*entries)
    parsed = pagelog.parse(data)
    assert parsed == entries
    assert [e.end for e in parsed][-1] == len(data)
    assert parsed[1].runs == ((1, 2), (9, 1)) and parsed[1].crcs == (11, 22, 99)
    # the tail from an entry's end parses on its own (what a reader reads next time)
    assert pagelog.parse(data[parsed[0].end :], parsed[0].end) == entries[1:]


def test_a_torn_or_damaged_tail_ends_the_log() -> None:
    data = log_bytes(start(5), commit(6, {1: 1}), commit(7, {1: 2}))
    for cut in range(len(pagelog.MAGIC), len(data)):
        parsed = pagelog.parse(data[:cut])
        assert all(e.end <= cut for e in parsed)
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    assert [e.counter for e in pagelog.parse(bytes(flipped))] == [5, 6]
    assert pagelog.parse(b"not a page log" + data) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 300))
def test_any_bytes_parse_to_entries_or_nothing(data: bytes, offset: int) -> None:
    # a careless or hostile sidecar: never an exception, never an entry with a bad CRC
    for text in (data, pagelog.MAGIC + data):
        for entry in pagelog.parse(text, 0) + pagelog.parse(text, offset):
            assert entry.kind in (KIND_START, KIND_COMMIT)
            assert len(entry.crcs) == sum(n for _, n in entry.runs)


def test_runs_merge_adjacent_pages() -> None:
    assert pagelog.runs_of([5, 1, 2, 3, 9, 10, 2]) == ((1, 3), (5, 1), (9, 2))
    assert pagelog.runs_of([]) == ()


# -- planning a chain ----------------------------------------------------------------------
def test_a_chain_unions_pages_with_their_latest_crc() -> None:
    entries = [start(4), commit(5, {1: 1, 3: 3}), commit(6, {1: 10, 4: 4})]
    chain = pagelog.plan_chain(
        entries, segment=SEG, start_counter=4, start_page_count=10, end_counter=6
    )
    assert chain.pages == {1: 10, 3: 3, 4: 4}
    assert chain.page_count == 10 and chain.low_water == 10 and chain.last == entries[-1]
    # from a later start, only the newer entries count
    later = pagelog.plan_chain(
        entries, segment=SEG, start_counter=5, start_page_count=10, end_counter=6
    )
    assert later.pages == {1: 10, 4: 4}


def test_shrinking_lowers_the_low_water_and_drops_pages_beyond_it() -> None:
    truncated = Entry(KIND_COMMIT, SEG, 6, 4096, 3, 3, 0, ((1, 1),), (1,))
    entries = [start(4), commit(5, {8: 8, 2: 2}, count=10), truncated, commit(7, {9: 9}, count=9)]
    chain = pagelog.plan_chain(
        entries, segment=SEG, start_counter=4, start_page_count=10, end_counter=7
    )
    # page 8 was cut off by the truncation, then the file grew to 9 writing only page 9:
    # pages 4..8 read back as zeros in the source, so the copy is cut at the low water (3)
    assert chain.low_water == 3 and chain.page_count == 9
    assert chain.pages == {1: 1, 2: 2, 9: 9}


@pytest.mark.parametrize(
    ("entries", "start_counter", "end_counter", "why"),
    [
        ([], 4, 5, "empty"),
        ([start(4), commit(5, {1: 1})], 4, 6, "ends at counter 5"),
        ([start(4), commit(6, {1: 1})], 4, 6, "gap"),
        ([start(4), commit(5, {1: 1}, segment=OTHER)], 4, 5, "new segment"),
        ([start(4, segment=OTHER), start(5)], 4, 5, "gap"),
        ([commit(9, {1: 1}), commit(10, {1: 1})], 4, 10, "no longer reaches back"),
        # the snapshot is ahead of the file (the counter went backwards)
        ([start(4), commit(5, {1: 1})], 7, 5, "gap"),
    ],
)
def test_any_doubt_is_a_chain_error(
    entries: list[Entry], start_counter: int, end_counter: int, why: str
) -> None:
    with pytest.raises(ChainError, match=why):
        pagelog.plan_chain(
            entries,
            segment=SEG,
            start_counter=start_counter,
            start_page_count=10,
            end_counter=end_counter,
        )


def test_the_counter_wraps() -> None:
    entries = [start(0xFFFFFFFF), commit(0, {1: 1}), commit(1, {2: 2})]
    chain = pagelog.plan_chain(
        entries, segment=SEG, start_counter=0xFFFFFFFF, start_page_count=10, end_counter=1
    )
    assert chain.pages == {1: 1, 2: 2}


# -- the writer's log ----------------------------------------------------------------------
def entry_for(
    log: pagelog.PageLogWriter, counter: int, pages: dict[int, int], *, count: int = 3
) -> Entry:
    """The entry ``log`` would append for a commit at ``counter`` (4 KiB pages, no cut)."""
    return log.entry_for(
        counter=counter,
        page_size=4096,
        page_count=count,
        truncated_to=NO_TRUNCATION,
        page1_crc=0,
        pages=pages,
    )


def test_the_writer_continues_a_segment_only_when_the_counter_follows(tmp_path: Path) -> None:
    log = pagelog.PageLogWriter(tmp_path / "db.sqlite-pages")
    log.prepare()
    first = entry_for(log, 5, {})
    assert first.kind == KIND_START
    log.append(first)
    follows = entry_for(log, 6, {1: 1})
    assert follows.kind == KIND_COMMIT and follows.segment == first.segment
    log.append(follows)
    # a commit the log never saw (a crash after the commit, another tool) starts over
    jump = entry_for(log, 8, {1: 1})
    assert jump.kind == KIND_START and jump.segment != first.segment
    log.close()
    # a new writer process reads the log's end and continues from it
    again = pagelog.PageLogWriter(tmp_path / "db.sqlite-pages")
    again.prepare()
    resumed = entry_for(again, 7, {1: 1})
    assert resumed.kind == KIND_COMMIT and resumed.segment == first.segment
    again.close()


def test_a_torn_tail_is_cut_before_the_next_entry(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite-pages"
    whole = log_bytes(start(5), commit(6, {1: 1}))
    path.write_bytes(whole + commit(7, {1: 2}).encode()[:9])
    log = pagelog.PageLogWriter(path)
    log.prepare()
    entry = entry_for(log, 7, {2: 2}, count=10)
    log.append(entry)
    log.close()
    assert [e.counter for e in pagelog.parse(path.read_bytes())] == [5, 6, 7]


def test_a_full_log_keeps_its_newest_half(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagelog, "MAX_LOG_BYTES", 2000)
    path = tmp_path / "db.sqlite-pages"
    log = pagelog.PageLogWriter(path)
    log.prepare()
    for counter in range(1, 200):
        log.append(entry_for(log, counter, {1: counter}, count=10))
    log.close()
    entries = pagelog.parse(path.read_bytes())
    assert path.stat().st_size <= 2000 + 100
    assert entries[-1].counter == 199 and len({e.segment for e in entries}) == 1
    # a reader a few commits behind still patches; one far behind copies in full
    recent = pagelog.plan_chain(
        entries, segment=entries[0].segment, start_counter=190, start_page_count=10, end_counter=199
    )
    assert recent.pages == {1: 199}
    with pytest.raises(ChainError, match="no longer reaches back"):
        pagelog.plan_chain(
            entries,
            segment=entries[0].segment,
            start_counter=3,
            start_page_count=10,
            end_counter=199,
        )


# -- the VFS shim on real connections --------------------------------------------------------
def counter_of(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[24:28], "big")


def test_every_commit_of_a_writer_connection_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "main.sqlite"
    conn = open_writer_connection(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    for size in (100, 5000, 20000):
        conn.execute("INSERT INTO t (v) VALUES (randomblob(?))", (size,))
    conn.execute("DELETE FROM t")
    conn.close()
    entries, _ = pagelog.read_log(pagelog.sidecar_path(path))
    # one entry per commit, keyed by the header's change counter, one segment
    assert [e.counter for e in entries] == list(range(1, counter_of(path) + 1))
    assert [e.kind for e in entries] == [KIND_START] + [KIND_COMMIT] * (len(entries) - 1)
    assert len({e.segment for e in entries}) == 1
    # the last entry describes the file as it is: page count, page 1, each page's CRC
    data = path.read_bytes()
    last = entries[-1]
    assert last.page_count * last.page_size == len(data)
    assert last.page1_crc == zlib.crc32(data[: last.page_size])
    for page, crc in zip(last.pages(), last.crcs, strict=True):
        assert zlib.crc32(data[(page - 1) * 4096 : page * 4096]) == crc


def test_a_log_that_cannot_be_written_does_not_fail_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "main.sqlite"
    pagelog.sidecar_path(path).mkdir()  # in the way: the log cannot be opened
    conn = open_writer_connection(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    conn.close()


def test_only_read_write_opens_of_sqlite_files_are_logged(tmp_path: Path) -> None:
    staging = tmp_path / "main.sqlite.new"
    conn = open_writer_connection(staging)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert not pagelog.sidecar_path(staging).exists()
    path = tmp_path / "main.sqlite"
    os.rename(staging, path)
    source, raw = open_source_connection(path)
    assert source.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    # the source's raw file reads through SQLite's own descriptor
    assert raw.read(16, 0) == b"SQLite format 3\x00" and raw.size() == path.stat().st_size
    source.close()
    assert not pagelog.sidecar_path(path).exists()


def test_vacuum_logs_the_shrink(tmp_path: Path) -> None:
    path = tmp_path / "main.sqlite"
    conn = open_writer_connection(path)
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.execute("INSERT INTO t VALUES (randomblob(50000))")
    conn.execute("DELETE FROM t")
    before = path.stat().st_size // 4096
    conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 1)
    conn.execute("VACUUM")
    conn.execute("CREATE TABLE u (x)")  # the truncation goes with the next entry
    conn.close()
    entries, _ = pagelog.read_log(pagelog.sidecar_path(path))
    chain = pagelog.plan_chain(
        entries,
        segment=entries[0].segment,
        start_counter=entries[-3].counter,
        start_page_count=before,
        end_counter=entries[-1].counter,
    )
    assert chain.page_count == path.stat().st_size // 4096 < before
    assert chain.low_water <= chain.page_count
    assert entries[-1].truncated_to == entries[-2].page_count
