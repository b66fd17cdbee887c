"""Read-path benchmark: the reader handler against a bare SQLite point query, same file, same run.

Measures, on databases written by the real Writer:

1. Warm handler latency of a primary-key point query (p50, p99) over many calls, in snapshot
   and direct modes, against a bare persistent connection (same SQLite build) running the
   same query.
2. Filesystem syscalls per call (``strace -f -c``), by subtracting a run of 0 calls from a run
   of N calls in a child process: the cost of the staleness check (snapshot mode, checked on
   every call and on the default 1 s window) and of a direct read. On EFS each is roughly a
   network round trip.
3. Reader cold-start imports: ``python -X importtime -c "import app"`` in ``functions/reader``,
   median of several runs.
4. Snapshot refresh of a ~100 MB database (backup API + ``quick_check`` + swap) against a plain
   file copy of the same, quiescent file (made in a child process: this process holds
   connections to it, and a plain ``open()``/``close()`` here would drop their locks).

Results go to ``bench/results/reader.json``; a Markdown summary is printed. ``--quick`` runs
smaller sizes in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "shared"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from efsqlite.core import engine  # noqa: E402
from efsqlite.core.connections import open_readonly_connection  # noqa: E402
from efsqlite.read.connection import QueryLimits  # noqa: E402
from efsqlite.read.reader import Reader  # noqa: E402
from efsqlite.read.settings import ReaderSettings  # noqa: E402
from efsqlite.read.snapshot import DatabaseSnapshot, SnapshotStore, _read_state  # noqa: E402
from efsqlite.write.settings import WriterSettings  # noqa: E402
from efsqlite.write.writer import Writer  # noqa: E402

from tests.support.events import sqs_event, sqs_record  # noqa: E402

POINT_SQL = "SELECT id, name, balance FROM accounts WHERE id = ?"
MIGRATION = (
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);"
    "CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
)
FS_CALLS = {
    "openat",
    "open",
    "close",
    "fcntl",
    "flock",
    "pread64",
    "pwrite64",
    "read",
    "write",
    "lseek",
    "fstat",
    "newfstatat",
    "stat",
    "lstat",
    "access",
    "faccessat",
    "faccessat2",
    "statx",
    "unlink",
    "unlinkat",
    "fsync",
    "fdatasync",
    "rename",
    "renameat",
    "renameat2",
}


# -- building databases through the real writer ----------------------------------------------
def build(root: Path, accounts: int, filler_mb: int) -> Path:
    """Write ``accounts`` rows and about ``filler_mb`` MB of blobs through the real Writer."""
    migrations = root / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / "0001_bench.sql").write_text(MIGRATION)
    writer = Writer(
        WriterSettings(data_dir=root / "data", migrations_dir=migrations, databases="*")
    )
    chunk = 1000
    n = 0

    def command(statements: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal n
        n += 1
        return sqs_record({"v": 1, "id": f"b-{n}", "db": "main", "statements": statements})

    records = []
    for start in range(0, accounts, chunk):
        statements = [
            {
                "sql": "INSERT INTO accounts (id, name, balance) VALUES (?, ?, ?)",
                "params": [i, f"acct-{i}", 1000],
            }
            for i in range(start, min(start + chunk, accounts))
        ]
        records.append(command(statements))
    blobs = filler_mb * 1000
    for start in range(0, blobs, chunk):
        statements = [
            {"sql": "INSERT INTO filler (id, data) VALUES (?, randomblob(1000))", "params": [i]}
            for i in range(start, min(start + chunk, blobs))
        ]
        records.append(command(statements))
    for start in range(0, len(records), 10):
        result = writer.handle_event(sqs_event(*records[start : start + 10]))
        assert not result.failed_message_ids(), result.batches
    writer.close()
    return root / "data" / "main.sqlite"


# -- 1. warm latency ---------------------------------------------------------------------------
def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "p50_us": ordered[n // 2] / 1000,
        "p99_us": ordered[min(n - 1, int(n * 0.99))] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "calls": n,
    }


def time_handler(reader: Reader, calls: int, accounts: int) -> dict[str, float]:
    for i in range(200):  # warm: snapshot built, statements cached
        reader.handle({"db": "main", "sql": POINT_SQL, "params": [i % accounts]})
    samples = []
    clock = time.perf_counter_ns
    for i in range(calls):
        payload = {"db": "main", "sql": POINT_SQL, "params": [(i * 7919) % accounts]}
        started = clock()
        answer = reader.handle(payload)
        samples.append(clock() - started)
        if "error" in answer:
            raise RuntimeError(answer)
    return percentiles(samples)


def time_bare(path: Path, calls: int, accounts: int) -> dict[str, float]:
    conn = open_readonly_connection(path)
    for i in range(200):
        conn.execute(POINT_SQL, (i % accounts,)).fetchall()
    samples = []
    clock = time.perf_counter_ns
    for i in range(calls):
        started = clock()
        rows = conn.execute(POINT_SQL, ((i * 7919) % accounts,)).fetchall()
        samples.append(clock() - started)
        assert rows
    conn.close()
    return percentiles(samples)


def latency(root: Path, path: Path, calls: int, accounts: int) -> dict[str, Any]:
    out: dict[str, Any] = {"bare_sqlite": time_bare(path, calls, accounts)}
    variants = {
        "snapshot": {"read_mode": "snapshot", "max_staleness_ms": 1000},
        "snapshot_check_every_call": {"read_mode": "snapshot", "max_staleness_ms": 0},
        "direct": {"read_mode": "direct"},
    }
    for name, overrides in variants.items():
        settings = ReaderSettings(
            data_dir=root / "data", snapshot_dir=root / f"snap-{name}", **overrides
        )
        reader = Reader(settings)
        out[name] = time_handler(reader, calls, accounts)
        reader.close()
    bare = out["bare_sqlite"]["p50_us"]
    for name in variants:
        out[name]["overhead_p50_us"] = out[name]["p50_us"] - bare
    return out


# -- 2. syscalls per call ----------------------------------------------------------------------
def child_calls(root: Path, mode: str, staleness_ms: int, calls: int) -> None:
    """In a child under strace: warm up, then ``calls`` point queries (or reopen-checks)."""
    if mode == "reopen":
        # The alternative to a persistent source connection: open, read the state, close.
        path = root / "data" / "main.sqlite"
        for _ in range(calls):
            conn = open_readonly_connection(path)
            _read_state(conn)
            conn.close()
        return
    settings = ReaderSettings(
        data_dir=root / "data",
        snapshot_dir=root / f"snap-strace-{os.getpid()}",
        read_mode=mode,  # type: ignore[arg-type]
        max_staleness_ms=staleness_ms,
    )
    reader = Reader(settings)
    for i in range(50):
        reader.handle({"db": "main", "sql": POINT_SQL, "params": [i]})
    for i in range(calls):
        answer = reader.handle({"db": "main", "sql": POINT_SQL, "params": [i % 1000]})
        assert "error" not in answer, answer
    reader.close()


def strace_counts(root: Path, mode: str, staleness_ms: int, calls: int) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".strace", delete=False) as tmp:
        out_path = tmp.name
    subprocess.run(
        [
            "strace",
            "-f",
            "-c",
            "-o",
            out_path,
            sys.executable,
            __file__,
            "child",
            str(root),
            mode,
            str(staleness_ms),
            str(calls),
        ],
        check=True,
        capture_output=True,
    )
    counts: dict[str, int] = {}
    for line in Path(out_path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit():
            name = parts[-1]
            try:
                counts[name] = int(parts[3])
            except ValueError:
                continue
    os.unlink(out_path)
    return counts


def syscalls(root: Path, calls: int) -> dict[str, Any]:
    if shutil.which("strace") is None:
        return {"skipped": "strace not installed"}
    out: dict[str, Any] = {"calls": calls}
    for name, mode, staleness in [
        ("snapshot_check_every_call", "snapshot", 0),
        ("snapshot_default_1s", "snapshot", 1000),
        ("direct", "direct", 0),
        ("reopen_per_check_instead", "reopen", 0),
    ]:
        base = strace_counts(root, mode, staleness, 0)
        full = strace_counts(root, mode, staleness, calls)
        per_call = {
            k: round((full.get(k, 0) - base.get(k, 0)) / calls, 2)
            for k in sorted(set(full) | set(base))
            if k in FS_CALLS
        }
        per_call = {k: v for k, v in per_call.items() if v > 0}
        out[name] = {"per_call": per_call, "fs_total_per_call": round(sum(per_call.values()), 2)}
    return out


# -- 3. cold start -----------------------------------------------------------------------------
def import_times(runs: int) -> dict[str, Any]:
    reader_dir = REPO / "functions" / "reader"
    env = dict(os.environ, EFSQLITE_DATA_DIR="/nonexistent", PYTHONPATH=str(REPO / "shared"))
    totals, walls, baseline, cpus, bare_cpus = [], [], [], [], []
    top: dict[str, list[float]] = {}
    for _ in range(runs):
        started = time.perf_counter()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import app"],
            cwd=reader_dir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        walls.append((time.perf_counter() - started) * 1000)
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(
            (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
            * 1000
        )
        started = time.perf_counter()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        baseline.append((time.perf_counter() - started) * 1000)
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        bare_cpus.append(
            (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
            * 1000
        )
        total = 0
        for line in done.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if match and match.group(3) == "":
                cumulative = int(match.group(2))
                total += cumulative
                top.setdefault(match.group(4), []).append(cumulative / 1000)
        totals.append(total / 1000)
    heaviest = sorted(
        ((name, statistics.median(ms)) for name, ms in top.items()), key=lambda x: -x[1]
    )[:8]
    return {
        "runs": runs,
        "imports_ms_median": statistics.median(totals),
        "imports_ms_min": min(totals),
        "process_cpu_ms_median": statistics.median(cpus),
        # CPU time is far less sensitive than wall time to other processes on the machine.
        "import_cpu_ms_median": statistics.median(cpus) - statistics.median(bare_cpus),
        "load_average_1m": os.getloadavg()[0],
        "process_wall_ms_median": statistics.median(walls),
        "bare_python_wall_ms_median": statistics.median(baseline),
        "heaviest_top_level_ms": dict(heaviest),
    }


# -- 4. snapshot refresh -----------------------------------------------------------------------
def refresh(root: Path, path: Path, runs: int) -> dict[str, Any]:
    size_mb = path.stat().st_size / 1e6
    copy_script = (
        "import shutil, sys, time; t = time.perf_counter(); "
        "shutil.copyfile(sys.argv[1], sys.argv[2]); print(time.perf_counter() - t)"
    )
    copies, refreshes, backups = [], [], []
    for run in range(runs):
        target = root / f"plain-copy-{run}.sqlite"
        done = subprocess.run(
            [sys.executable, "-c", copy_script, str(path), str(target)],
            capture_output=True,
            text=True,
            check=True,
        )
        copies.append(float(done.stdout) * 1000)
        target.unlink()
    store = SnapshotStore(root / "snap-refresh")
    snap = DatabaseSnapshot(
        store, "main", path, busy_timeout_ms=5000, limits=QueryLimits(), max_staleness_s=0
    )
    for _ in range(runs):
        started = time.perf_counter()
        snap.refresh()
        refreshes.append((time.perf_counter() - started) * 1000)
    source = open_readonly_connection(path)
    for run in range(runs):
        target_path = root / f"backup-only-{run}.sqlite"
        started = time.perf_counter()
        target = engine.Connection(str(target_path))
        target.execute("PRAGMA journal_mode=OFF")
        target.execute("PRAGMA synchronous=OFF")
        with target.backup("main", source, "main") as backup:
            backup.step(-1)
        target.close()
        backups.append((time.perf_counter() - started) * 1000)
        target_path.unlink()
    source.close()
    snap.close()
    store.close()
    return {
        "database_mb": round(size_mb, 1),
        "runs": runs,
        "plain_copy_ms_median": statistics.median(copies),
        "backup_api_only_ms_median": statistics.median(backups),
        "refresh_ms_median": statistics.median(refreshes),
        "note": "warm page cache; refresh = backup inside a read transaction + quick_check + "
        "rename + open + swap",
    }


# -- report ------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    lat = results["latency"]
    lines = [
        f"## Reader benchmark ({results['label']})",
        "",
        f"Point query by primary key, {lat['bare_sqlite']['calls']} warm calls each:",
        "",
        "| variant | p50 µs | p99 µs | overhead vs bare at p50 µs |",
        "|---|---|---|---|",
    ]
    for name, row in lat.items():
        overhead = row.get("overhead_p50_us")
        shown = "-" if overhead is None else f"{overhead:.1f}"
        lines.append(f"| {name} | {row['p50_us']:.1f} | {row['p99_us']:.1f} | {shown} |")
    sc = results["syscalls"]
    lines += ["", f"Filesystem syscalls per call (strace -f -c, {sc.get('calls')} calls):", ""]
    for name, row in sc.items():
        if isinstance(row, dict) and "per_call" in row:
            detail = ", ".join(f"{k} {v}" for k, v in row["per_call"].items()) or "none"
            lines.append(f"- {name}: {row['fs_total_per_call']} ({detail})")
    cold = results["cold_start"]
    lines += [
        "",
        f"Cold start: imports {cold['imports_ms_median']:.1f} ms median, "
        f"{cold['imports_ms_min']:.1f} ms min of {cold['runs']} runs "
        f"(`python -X importtime -c 'import app'`); process wall "
        f"{cold['process_wall_ms_median']:.1f} ms (CPU {cold['process_cpu_ms_median']:.1f} ms) "
        f"vs bare python {cold['bare_python_wall_ms_median']:.1f} ms; CPU spent importing "
        f"(process CPU minus bare python CPU) {cold['import_cpu_ms_median']:.1f} ms; "
        f"load average {cold['load_average_1m']:.1f}.",
    ]
    ref = results["refresh"]
    lines += [
        "",
        f"Snapshot refresh of a {ref['database_mb']} MB database (median of {ref['runs']}): "
        f"refresh {ref['refresh_ms_median']:.0f} ms (backup API alone "
        f"{ref['backup_api_only_ms_median']:.0f} ms) vs plain copy of the quiescent file "
        f"{ref['plain_copy_ms_median']:.0f} ms.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reader.json")
    args, rest = parser.parse_known_args(argv)
    if rest and rest[0] == "child":
        child_calls(Path(rest[1]), rest[2], int(rest[3]), int(rest[4]))
        return 0
    calls = 2_000 if args.quick else 20_000
    accounts = 10_000
    strace_calls = 500 if args.quick else 2_000
    refresh_mb = 10 if args.quick else 100
    with tempfile.TemporaryDirectory(prefix="efsqlite-bench-reader-") as tmp:
        root = Path(tmp)
        path = build(root / "small", accounts, 0)
        results: dict[str, Any] = {
            "label": "quick" if args.quick else "full",
            "python": sys.version.split()[0],
            "sqlite": engine.sqlite_version(),
            "latency": latency(root / "small", path, calls, accounts),
            "syscalls": syscalls(root / "small", strace_calls),
            "cold_start": import_times(3 if args.quick else 7),
        }
        big = build(root / "big", accounts, refresh_mb)
        results["refresh"] = refresh(root / "big", big, 2 if args.quick else 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
