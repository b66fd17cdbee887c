"""What a deadline cannot stop: SQLite work done inside one VM step, and snapshot copy steps.

    python bench/bench_single_step.py        # prints JSON, one entry per case

The reader's deadline is checked by the progress handler between VM steps, so a single
function call that loops internally runs to its end. Each case runs once on a connection set
up as the reader's is (the 5 MB ``SQLITE_LIMIT_LENGTH``, a deadline of 100 ms through the
progress handler) and reports the wall time and the outcome. The copy cases copy a
41 MB file into a scratch folder as a snapshot's full copy does, in reads of
``efsqlite.read.snapshot.COPY_CHUNK_BYTES`` and in one read: the median of 5 copies. The
single-step cases run on a plain connection (SQLite's own functions, as before
``efsqlite.core.singlestep``); the ``overrides`` section times scans of 100,000 rows with
SQLite's functions and with the bounded overrides every writer and reader connection installs.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import apsw
from efsqlite.core import engine, singlestep
from efsqlite.core.connections import open_source_connection
from efsqlite.read import snapshot
from efsqlite.read.connection import PROGRESS_STEPS

LENGTH_LIMIT = 5_000_000
DEADLINE_S = 0.1
CASES = {
    "printf('%.*c', 2147483647, 'x')": ("SELECT length(printf('%.*c', 2147483647, 'x'))", ()),
    "printf('%.*c', 200000000, 'x')": ("SELECT length(printf('%.*c', 200000000, 'x'))", ()),
    # Every character of X is the last one of Y: each trimmed character scans all of Y.
    "trim(X, Y), 40,000 characters each": (
        "SELECT length(trim(?, ?))",
        ("a" * 40_000, "b" * 39_999 + "a"),
    ),
    "trim(X, Y), 80,000 characters each": (
        "SELECT length(trim(?, ?))",
        ("a" * 80_000, "b" * 79_999 + "a"),
    ),
    "instr(X, Y), 200,000 and 100,000 bytes": (
        "SELECT instr(?, ?)",
        ("a" * 200_000, "a" * 99_999 + "b"),
    ),
    "replace(X, Y, ''), 400,000 and 200,000 bytes": (
        "SELECT length(replace(?, ?, ''))",
        ("a" * 400_000, "a" * 199_999 + "b"),
    ),
    "hex(zeroblob(2,000,000))": ("SELECT length(hex(zeroblob(2000000)))", ()),
    "upper(X), 5,000,000 characters": ("SELECT length(upper(?))", ("a" * 4_999_000,)),
    "quote(randomblob(2,000,000))": ("SELECT length(quote(randomblob(2000000)))", ()),
    "json_valid(X), a 5 MB array": (
        "SELECT json_valid(?)",
        ("[" + ",".join(["1"] * 2_400_000) + "]",),
    ),
    # '%' then a long literal: SQLite tries the literal at every offset of X.
    "X LIKE '%<40,000 a>b', X 1,000,000 characters": (
        "SELECT ? LIKE ?",
        ("a" * 1_000_000, "%" + "a" * 40_000 + "b"),
    ),
    "X GLOB '*<40,000 a>b', X 1,000,000 characters": (
        "SELECT ? GLOB ?",
        ("a" * 1_000_000, "*" + "a" * 40_000 + "b"),
    ),
    "X LIKE Y, 100,000 characters and 1,000 wildcards": (
        "SELECT ? LIKE ?",
        ("a" * 100_000, "%a" * 1_000 + "b"),
    ),
    # The sort of a stored table runs before the first row comes out.
    "ORDER BY randomblob(60) of 2,000,000 rows (first row)": (
        "SELECT x FROM t ORDER BY randomblob(60)",
        (),
    ),
}
#: Rows of the table the sort case reads, stored before the deadline starts.
SORT_ROWS = 2_000_000


def single_step(sql: str, params: tuple[str, ...]) -> dict[str, object]:
    conn = apsw.Connection(":memory:")
    if " FROM t " in sql:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute(
            "INSERT INTO t WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
            f"WHERE x < {SORT_ROWS}) SELECT x FROM r"
        )
    conn.limit(apsw.SQLITE_LIMIT_LENGTH, LENGTH_LIMIT)
    deadline = time.monotonic() + DEADLINE_S
    conn.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
    started = time.perf_counter()
    try:
        outcome = repr(conn.execute(sql, params).fetchall()[0][0])
    except (apsw.Error, MemoryError) as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    conn.close()
    return {"seconds": round(seconds, 4), "outcome": outcome}


def copy_steps(folder: Path) -> dict[str, object]:
    """The snapshot's full copy (``snapshot._copy_range``, through the source connection's
    own file handle inside a read transaction), in reads of ``COPY_CHUNK_BYTES`` with a
    deadline check between them, and in one single read."""
    source_path = folder / "source.sqlite"
    writer = apsw.Connection(str(source_path))
    writer.execute("BEGIN; CREATE TABLE t (b BLOB)")
    writer.executemany("INSERT INTO t VALUES (randomblob(4000))", [()] * 10_000)
    writer.execute("COMMIT")
    writer.close()
    size = source_path.stat().st_size
    results: dict[str, object] = {"file_bytes": size}
    source, raw = open_source_connection(source_path)
    chunk = snapshot.COPY_CHUNK_BYTES
    for label, per_read in (("stepped", chunk), ("one_read", size)):
        snapshot.COPY_CHUNK_BYTES = per_read
        totals = []
        for n in range(5):
            fd = os.open(folder / f"{label}-{n}.sqlite", os.O_RDWR | os.O_CREAT, 0o600)
            started = time.perf_counter()
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # the shared lock
            snapshot._copy_range(raw, [fd], 0, size, math.inf)
            source.execute("COMMIT")
            totals.append(time.perf_counter() - started)
            os.close(fd)
        results[label] = {
            "median_ms": round(statistics.median(totals) * 1000, 2),
            "reads": math.ceil(size / per_read),
        }
    snapshot.COPY_CHUNK_BYTES = chunk
    source.close()
    return results


#: Per-row cost of the bounded overrides (efsqlite.core.singlestep) against SQLite's own functions.
SCAN_ROWS = 100_000
SCANS = {
    "LIKE '%99%'": "SELECT count(*) FROM t WHERE x LIKE '%99%'",
    "LIKE 'item 1%'": "SELECT count(*) FROM t WHERE x LIKE 'item 1%'",
    "GLOB '*99*'": "SELECT count(*) FROM t WHERE x GLOB '*99*'",
    "instr(x, '99')": "SELECT count(*) FROM t WHERE instr(x, '99')",
    "replace(x, 'item', 'thing')": "SELECT sum(length(replace(x, 'item', 'thing'))) FROM t",
    "trim(x, 'i0')": "SELECT sum(length(trim(x, 'i0'))) FROM t",
}


def override_costs() -> dict[str, object]:
    """Median of 5 scans of 100,000 rows, SQLite's own function against the override."""
    plain = apsw.Connection(":memory:")
    guarded = apsw.Connection(":memory:")
    singlestep.install(guarded)
    for conn in (plain, guarded):
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [(f"item {i}",) for i in range(SCAN_ROWS)])
    out: dict[str, object] = {"rows": SCAN_ROWS}
    for label, sql in SCANS.items():
        times: dict[str, list[float]] = {"builtin": [], "override": []}
        for _ in range(5):
            for side, conn in (("builtin", plain), ("override", guarded)):
                started = time.perf_counter()
                conn.execute(sql).fetchall()
                times[side].append(time.perf_counter() - started)
        builtin, override = (statistics.median(times[k]) * 1000 for k in ("builtin", "override"))
        out[label] = {
            "builtin_ms": round(builtin, 2),
            "override_ms": round(override, 2),
            "ratio": round(override / builtin, 1),
        }
    return out


def main() -> None:
    report: dict[str, object] = {"sqlite_version": engine.sqlite_version()}
    report["single_step"] = {name: single_step(*case) for name, case in CASES.items()}
    with tempfile.TemporaryDirectory() as folder:
        report["copy"] = copy_steps(Path(folder))
    report["overrides"] = override_costs()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
