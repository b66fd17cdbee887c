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

5. Under the EFS model (``bench/efs_model.py``): a warm reader's point queries in direct mode
   and in snapshot mode (1 s staleness window, and checking the source on every call), and
   the same right after a write landed (the parent process applies one write through the
   real Writer before each query: the direct reader re-reads pages, the snapshot reader
   refreshes its copy). Per query: latency p50/p99 in a child under ``model_prefix``, and,
   from traced runs of N and 2N queries, round trips, data and metadata operations, bytes
   and metered bytes on the database files. A refresh's cost per MB of database is the
   difference between the small and the big database over their difference in size.
6. The bytes the reader's handler (``functions/reader/app.py``) logs per successful query.

Results go to ``bench/results/reader.json`` (``usage`` holds the read side of
``bench/results/usage.json``); a Markdown summary is printed. ``--quick`` runs smaller sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from efsqlite.core import engine, ledger  # noqa: E402
from efsqlite.core.connections import open_readonly_connection  # noqa: E402
from efsqlite.read.connection import QueryLimits  # noqa: E402
from efsqlite.read.reader import Reader  # noqa: E402
from efsqlite.read.settings import ReaderSettings  # noqa: E402
from efsqlite.read.snapshot import DatabaseSnapshot, SnapshotStore  # noqa: E402
from efsqlite.write.settings import WriterSettings  # noqa: E402
from efsqlite.write.writer import Writer  # noqa: E402

from tests.support.events import sqs_event, sqs_record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import efs_model  # noqa: E402

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
            ledger.read_state(conn)
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


# -- 5. under the EFS model: latency, round trips and metered bytes per query --------------
UPDATE_SQL = "UPDATE accounts SET balance = balance + 1 WHERE id = ?"
#: Warm-up stride: one query every WARM_STRIDE ids touches every leaf of ``accounts``.
WARM_STRIDE = 50
#: name -> (read mode, staleness ms, patching). Refreshes patch by default; the full-copy
#: variant measures what a refresh costs per MB when the page log cannot help.
EFS_VARIANTS = {
    "direct": ("direct", 0, True),
    "snapshot": ("snapshot", 1000, True),
    "snapshot_check_every_call": ("snapshot", 0, True),
    "snapshot_full_copy_every_call": ("snapshot", 0, False),
}


def efs_child(argv: list[str]) -> None:
    """One warm reader doing point queries, in a child under the model or the tracer.

    With ``--after-write`` it asks the parent for a write before each query (``w`` on
    stdout, then waits for ``ok`` on stdin), so every query comes right after a write landed.
    ``--timeout-ms`` raises the settings' timeouts; ``--query-timeout-ms`` is the timed
    queries' own ``timeout_ms``. With ``--allow-stale`` stale answers and errors are counted,
    not fatal, and a first query (the first snapshot, with ``--query-timeout-ms``) comes
    before the warm-up. Prints one JSON line: the query latencies in ns and those counts.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("mode")
    parser.add_argument("staleness_ms", type=int)
    parser.add_argument("calls", type=int)
    parser.add_argument("accounts", type=int)
    parser.add_argument("--after-write", action="store_true")
    parser.add_argument("--timeout-ms", type=int, default=None)
    parser.add_argument("--query-timeout-ms", type=int, default=None)
    parser.add_argument("--allow-stale", action="store_true")
    parser.add_argument("--no-patch", action="store_true")
    args = parser.parse_args(argv)
    limits = {}
    if args.timeout_ms is not None:
        limits = {"max_timeout_ms": args.timeout_ms, "default_timeout_ms": args.timeout_ms}
    reader = Reader(
        ReaderSettings(
            data_dir=args.root / "data",
            snapshot_dir=args.root / f"snap-efs-{os.getpid()}",
            read_mode=args.mode,
            max_staleness_ms=args.staleness_ms,
            snapshot_patch=not args.no_patch,
            **limits,
        )
    )
    clock = time.perf_counter_ns

    def query(n: int) -> tuple[dict[str, Any], int]:
        payload: dict[str, Any] = {"db": "main", "sql": POINT_SQL, "params": [n]}
        if args.query_timeout_ms is not None:
            payload["timeout_ms"] = args.query_timeout_ms
        started = clock()
        answer = reader.handle(payload)
        return answer, clock() - started

    out: dict[str, Any] = {"stale": 0, "errors": 0}
    if args.allow_stale:
        answer, took = query(0)
        out["first_query_ms"] = took / 1e6
        out["first_query_error"] = answer["error"]["type"] if "error" in answer else None
    position = None
    for i in range(0, args.accounts, WARM_STRIDE):
        answer = reader.handle({"db": "main", "sql": POINT_SQL, "params": [i]})
        assert "error" not in answer, answer
        position = answer["position"]
    samples = []
    for i in range(args.calls):
        if args.after_write:
            os.write(1, b"w\n")
            if sys.stdin.readline() != "ok\n":
                raise SystemExit("the parent did not write")
        answer, took = query((i * 7919) % args.accounts)
        samples.append(took)
        if "error" in answer or not answer["rows"]:
            if not args.allow_stale:
                raise SystemExit(f"query failed: {answer}")
            out["errors"] += 1
            continue
        if args.after_write and (answer["position"] == position or answer["stale"]):
            if not args.allow_stale:
                raise SystemExit(f"the query did not see the write: {answer}")
            out["stale"] += 1
        position = answer["position"]
    reader.close()
    out["samples_ns"] = samples
    os.write(1, (json.dumps(out) + "\n").encode())


class BenchWriter:
    """The real Writer on a bench database, applying one single-row UPDATE per call."""

    def __init__(self, root: Path, accounts: int) -> None:
        self.writer = Writer(
            WriterSettings(
                data_dir=root / "data", migrations_dir=root / "migrations", databases="*"
            )
        )
        self.accounts = accounts
        self.n = 0
        # Sequence numbers above the database's position, whichever process wrote it.
        conn = open_readonly_connection(root / "data" / "main.sqlite")
        self.base = ledger.read_state(conn)[0].value
        conn.close()

    def write(self) -> None:
        self.n += 1
        command = {
            "v": 1,
            "id": f"efs-write-{self.base}-{self.n}",  # new ids: not duplicates of earlier runs
            "db": "main",
            "statements": [{"sql": UPDATE_SQL, "params": [(self.n * 31) % self.accounts]}],
        }
        sequence = str(self.base + self.n * 1_000_000)
        result = self.writer.handle_event(sqs_event(sqs_record(command, sequence_number=sequence)))
        assert not result.failed_message_ids(), result.batches

    def close(self) -> None:
        self.writer.close()


def _drive(command: list[str], writer: BenchWriter | None) -> dict[str, Any]:
    """Run an ``efs_child`` command; apply a write each time it asks; return its JSON."""
    on_request = None if writer is None else (lambda _line: writer.write())
    return efs_model.drive_child(command, on_request, cwd=REPO)


#: The big database's refresh under the model outlasts the default 2 s ``timeout_ms`` (the
#: reader would serve the stale copy), so it runs with this one (the settings' maximum).
REFRESH_TIMEOUT_MS = 900_000
DEFAULT_TIMEOUT_MS = next(
    f.default for f in dataclasses.fields(ReaderSettings) if f.name == "default_timeout_ms"
)


def _child_command(
    root: Path, variant: str, calls: int, accounts: int, after: bool, timeout_ms: int | None
) -> list[str]:
    mode, staleness, patching = EFS_VARIANTS[variant]
    command = [sys.executable, __file__, "efs-child", str(root), mode, str(staleness)]
    command += [str(calls), str(accounts)]
    if not patching:
        command.append("--no-patch")
    if timeout_ms is not None:
        command += ["--timeout-ms", str(timeout_ms)]
    return [*command, "--after-write"] if after else command


def efs_usage(
    root: Path,
    variant: str,
    calls: int,
    accounts: int,
    *,
    after_write: bool = False,
    timeout_ms: int | None = None,
) -> dict[str, float]:
    """Steady-state calls and EFS usage per query: traced runs of N and 2N queries."""
    writer = BenchWriter(root, accounts) if after_write else None
    runs = []
    try:
        for n in (calls, 2 * calls):
            handle, name = tempfile.mkstemp(prefix="reader-trace-", suffix=".txt", dir=root)
            os.close(handle)
            trace = Path(name)
            command = _child_command(root, variant, n, accounts, after_write, timeout_ms)
            _drive([*efs_model.trace_prefix(trace), *command], writer)
            runs.append(
                efs_model.parse_trace(trace.read_text(), efs_model.in_folder(root / "data"))
            )
            trace.unlink()
    finally:
        if writer is not None:
            writer.close()
    return efs_model.difference(runs[1], runs[0], calls)


def efs_latency(
    root: Path,
    variant: str,
    calls: int,
    accounts: int,
    *,
    after_write: bool = False,
    model: dict[str, int] = efs_model.MODEL_US,
    timeout_ms: int | None = None,
) -> dict[str, float]:
    """Query latency under the latency model (p50, p99, mean in ms), in one child."""
    writer = BenchWriter(root, accounts) if after_write else None
    try:
        prefix = efs_model.model_prefix(efs_model.database_paths(root / "data"), model)
        result = _drive(
            [*prefix, *_child_command(root, variant, calls, accounts, after_write, timeout_ms)],
            writer,
        )
    finally:
        if writer is not None:
            writer.close()
    ordered = sorted(result["samples_ns"])
    n = len(ordered)
    return {
        "p50_ms": ordered[n // 2] / 1e6,
        "p99_ms": ordered[min(n - 1, int(n * 0.99))] / 1e6,
        "mean_ms": statistics.fmean(ordered) / 1e6,
        "calls": n,
    }


def efs_row(
    root: Path,
    variant: str,
    calls: int,
    timed: int,
    accounts: int,
    *,
    after_write: bool = False,
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    options: dict[str, Any] = {"after_write": after_write, "timeout_ms": timeout_ms}
    per_query = efs_usage(root, variant, calls, accounts, **options)
    tracing = efs_latency(root, variant, timed, accounts, model=efs_model.ZERO_MODEL, **options)
    return {
        "variant": variant,
        **options,
        "latency": efs_latency(root, variant, timed, accounts, **options),
        # The same strace stopping the same calls, without delays: tracing's own cost.
        "tracing_only_p50_ms": tracing["p50_ms"],
        "per_query": per_query,
        "usage": efs_model.usage_summary(per_query),
    }


def efs_queries(root: Path, accounts: int, *, quick: bool) -> dict[str, Any]:
    """Warm point queries, and queries right after a write, under the EFS model."""
    calls, timed = (200, 300) if quick else (1000, 2000)
    after_calls, after_timed = (20, 40) if quick else (100, 200)
    out: dict[str, Any] = {"model": efs_model.describe_model(), "accounts": accounts}
    out["database_mb"] = round((root / "data" / "main.sqlite").stat().st_size / 1e6, 3)
    warm = ("direct", "snapshot", "snapshot_check_every_call")
    out["warm"] = {v: efs_row(root, v, calls, timed, accounts) for v in warm}
    out["after_write"] = {
        v: efs_row(root, v, after_calls, after_timed, accounts, after_write=True)
        for v in ("direct", "snapshot_check_every_call", "snapshot_full_copy_every_call")
    }
    return out


def efs_refresh(
    small_root: Path, small: dict[str, Any], big_root: Path, accounts: int, *, quick: bool
) -> dict[str, Any]:
    """A full-copy snapshot refresh under the model: its cost per MB of database.

    The query right after a write with the source checked on every call, patching off,
    copies the whole file each time. Measured on the small database (``small``) and on a big
    one, the difference over the difference in size is the cost per MB (10^6 bytes) of
    database; the fixed part (check, locks, open) cancels out. (A patched refresh costs what
    the write changed, not the file: ``snapshot_check_every_call`` after a write.)
    """
    calls, timed = 2, 3  # each call copies the whole big database
    big = efs_row(
        big_root,
        "snapshot_full_copy_every_call",
        calls,
        timed,
        accounts,
        after_write=True,
        timeout_ms=REFRESH_TIMEOUT_MS,
    )
    # The same at the default timeout_ms (2 s): does the copy finish, or is the stale copy
    # served (the refresh gets half the time left when a stale copy could answer)?
    writer = BenchWriter(big_root, accounts)
    try:
        prefix = efs_model.model_prefix(efs_model.database_paths(big_root / "data"))
        command = _child_command(
            big_root, "snapshot_full_copy_every_call", 3, accounts, True, REFRESH_TIMEOUT_MS
        )
        default_ms = str(DEFAULT_TIMEOUT_MS)
        at_default = _drive(
            [*prefix, *command, "--allow-stale", "--query-timeout-ms", default_ms], writer
        )
    finally:
        writer.close()
    big_mb = (big_root / "data" / "main.sqlite").stat().st_size / 1e6
    small_mb = (small_root / "data" / "main.sqlite").stat().st_size / 1e6
    row = small["after_write"]["snapshot_full_copy_every_call"]
    span = big_mb - small_mb
    per_mb = {
        key: (big["per_query"].get(key, 0.0) - row["per_query"].get(key, 0.0)) / span
        for key in (*efs_model.COUNTED, *efs_model.USAGE_KEYS)
    }
    return {
        "database_mb": round(big_mb, 3),
        "small_database_mb": round(small_mb, 3),
        "big": big,
        "default_timeout": {
            "timeout_ms": DEFAULT_TIMEOUT_MS,
            "first_query_ms": at_default["first_query_ms"],
            "first_query_error": at_default["first_query_error"],
            "queries": len(at_default["samples_ns"]),
            "stale_answers": at_default["stale"],
            "errors": at_default["errors"],
            "p50_ms": statistics.median(at_default["samples_ns"]) / 1e6,
        },
        "per_mb": {
            **efs_model.usage_summary(per_mb),
            "pread64": per_mb["pread64"],
            "modelled_ms": (big["latency"]["p50_ms"] - row["latency"]["p50_ms"]) / span,
        },
    }


def reader_log_child(argv: list[str]) -> None:
    """The reader Lambda's handler (``functions/reader/app.py``): bytes it logs per query.

    Logging as Lambda's Python runtime sets it up without a configured log level: one handler
    on the root logger, the root level left at WARNING. Descriptors 1 and 2 go to a file for
    the timed queries; the service's START/END/REPORT lines are not part of it.
    """
    import logging

    root, calls = Path(argv[0]), int(argv[1])
    os.environ.update(
        {
            "EFSQLITE_DATA_DIR": str(root / "data"),
            "EFSQLITE_SNAPSHOT_DIR": str(root / f"snap-logs-{os.getpid()}"),
            "POWERTOOLS_SERVICE_NAME": "efsqlite-reader",
            "POWERTOOLS_METRICS_NAMESPACE": "efsqlite",
        }
    )
    logging.getLogger().addHandler(logging.StreamHandler(sys.stdout))
    sys.path.insert(0, str(REPO / "functions" / "reader"))
    import app  # type: ignore[import-not-found]

    for i in range(50):
        assert "error" not in app.lambda_handler(
            {"db": "main", "sql": POINT_SQL, "params": [i]}, None
        )
    answers, logged = efs_model.printed(
        lambda: [
            app.lambda_handler({"db": "main", "sql": POINT_SQL, "params": [i]}, None)
            for i in range(calls)
        ]
    )
    app.reader.close()
    assert all("error" not in answer for answer in answers)
    line = {"calls": calls, "log_bytes": len(logged), "log_lines": logged.count(b"\n")}
    os.write(1, (json.dumps(line) + "\n").encode())


def reader_log_bytes(root: Path, calls: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "log-child", str(root), str(calls)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "calls": calls,
        "bytes_per_invocation": result["log_bytes"] / calls,
        "lines_per_invocation": result["log_lines"] / calls,
    }


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


# -- the cost model's figures ----------------------------------------------------------------
def usage(results: dict[str, Any]) -> dict[str, Any]:
    """The read side of ``bench/results/usage.json`` (per query, steady state; None if absent)."""
    efs = results.get("efs")
    logs = results.get("log_bytes", {})
    out: dict[str, Any] = {
        "query": None,
        "reader_log_bytes_per_invocation": logs.get("bytes_per_invocation"),
    }
    if efs is None:
        return out

    def op(row: dict[str, Any]) -> dict[str, float]:
        return {**row["usage"], "modelled_ms": row["latency"]["p50_ms"]}

    per_mb = efs.get("refresh", {}).get("per_mb")
    out["query"] = {
        "direct": op(efs["warm"]["direct"]),
        "snapshot": op(efs["warm"]["snapshot"]),
        "direct_after_write": op(efs["after_write"]["direct"]),
        "snapshot_patch_after_write": op(efs["after_write"]["snapshot_check_every_call"]),
        "snapshot_refresh_per_mb": None
        if per_mb is None
        else {"metered_bytes": per_mb["metered_bytes"], "modelled_ms": per_mb["modelled_ms"]},
    }
    return out


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
    if "efs" in results:
        lines += ["", *efs_markdown(results["efs"])]
    logs = results.get("log_bytes")
    if logs:
        lines += [
            "",
            f"Reader handler logs per successful query: {logs['bytes_per_invocation']:.0f} bytes "
            f"({logs['lines_per_invocation']:.2f} lines; {logs['calls']} queries; root logger at "
            "WARNING as Lambda's runtime leaves it; Lambda's START/END/REPORT lines not included).",
        ]
    return "\n".join(lines)


def efs_markdown(efs: dict[str, Any]) -> list[str]:
    kib = 1024
    lines = [
        f"Under the EFS model ({efs['model']}), a {efs['database_mb']} MB database of "
        f"{efs['accounts']:,} accounts written by the real Writer; per query, steady state "
        "(traced runs of N and 2N queries), latencies of the handler in a child under the "
        "model; 'zero delays' is the same strace stopping the same calls without delaying "
        "them: what tracing alone costs (an upper bound of its share in the modelled latency, "
        "as part of it overlaps the delays):",
        "",
        "| variant | p50 ms | p99 ms | p50 ms, zero delays | round trips | fcntl | pread64 "
        "| data ops | metadata ops | bytes | metered KiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(f"{v}, warm", r) for v, r in efs["warm"].items()]
    rows += [(f"{v}, right after a write", r) for v, r in efs["after_write"].items()]
    refresh = efs.get("refresh")
    if refresh:
        rows.append(
            (f"snapshot_full_copy_every_call, after a write, {refresh['database_mb']:.1f} MB "
             "database", refresh["big"])
        )  # fmt: skip
    for label, row in rows:
        lat, pq, us = row["latency"], row["per_query"], row["usage"]
        lines.append(
            f"| {label} | {lat['p50_ms']:.3f} | {lat['p99_ms']:.3f} | "
            f"{row['tracing_only_p50_ms']:.3f} | {us['round_trips']:.2f} | "
            f"{pq['fcntl']:.2f} | {pq['pread64']:.2f} | {us['data_ops']:.2f} | "
            f"{us['metadata_ops']:.2f} | {us['bytes']:,.0f} | {us['metered_bytes'] / kib:,.1f} |"
        )
    warm = efs["warm"]
    direct, snap = warm["direct"], warm["snapshot"]
    du, su = direct["usage"], snap["usage"]
    ratio = direct["latency"]["p50_ms"] / max(snap["latency"]["p50_ms"], 1e-9)
    lines += [
        "",
        f"Direct against snapshot (1 s window), warm: {ratio:.0f}x the p50 latency, "
        f"{du['round_trips']:.2f} vs {su['round_trips']:.2f} round trips, "
        f"{du['metered_bytes'] / kib:.1f} vs {su['metered_bytes'] / kib:.1f} KiB metered "
        "per query.",
    ]
    if refresh:
        pm = refresh["per_mb"]
        lines += [
            "",
            f"A full-copy snapshot refresh per MB of database (difference between the "
            f"{refresh['database_mb']:.1f} MB and {refresh['small_database_mb']:.2f} MB "
            f"databases): {pm['pread64']:.0f} pread64, {pm['bytes'] / 1e6:.2f} MB read, "
            f"{pm['metered_bytes'] / 1e6:.2f} MB metered, {pm['modelled_ms']:.0f} ms under the "
            f"model. The big database's row ran with timeout_ms {REFRESH_TIMEOUT_MS:,}.",
        ]
        dt = refresh["default_timeout"]
        first = dt["first_query_error"] or "an answer"
        lines += [
            "",
            f"At the default timeout_ms ({dt['timeout_ms']:,}) under the model, on the "
            f"{refresh['database_mb']:.1f} MB database: a fresh reader's first query gave "
            f"{first} after {dt['first_query_ms']:.0f} ms; of {dt['queries']} queries right "
            f"after a write (the copy made with a longer timeout), {dt['stale_answers']} were "
            f"answered from the stale copy and {dt['errors']} failed (p50 {dt['p50_ms']:.0f} ms).",
        ]
    return lines


# -- report ------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reader.json")
    args, rest = parser.parse_known_args(argv)
    if rest and rest[0] == "child":
        child_calls(Path(rest[1]), rest[2], int(rest[3]), int(rest[4]))
        return 0
    if rest and rest[0] == "efs-child":
        efs_child(rest[1:])
        return 0
    if rest and rest[0] == "log-child":
        reader_log_child(rest[1:])
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
        if shutil.which("strace") is not None:
            results["efs"] = efs_queries(root / "small", accounts, quick=args.quick)
        results["log_bytes"] = reader_log_bytes(root / "small", 100 if args.quick else 1000)
        big = build(root / "big", accounts, refresh_mb)
        results["refresh"] = refresh(root / "big", big, 2 if args.quick else 3)
        if "efs" in results:
            results["efs"]["refresh"] = efs_refresh(
                root / "small", results["efs"], root / "big", accounts, quick=args.quick
            )
        results["usage"] = usage(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
