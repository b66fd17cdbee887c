"""Snapshot refresh by patching: what a refresh reads from EFS, and warm queries under writes.

    python bench/bench_patch.py            # 1 GiB database, built once and cached (~7 min)
    python bench/bench_patch.py --quick    # 100 MiB database, rebuilt each time (~2 min)
    python bench/bench_patch.py --rebuild  # build the cached 1 GiB database again first

The database is one table of ~1 KB rows (``items``: id, balance, a 1,000-byte blob; four rows
per 4 KiB page). The real Writer creates it (the migration), then efsqlite's writer connection
(``open_writer_connection``, through the page VFS, so the page log exists) inserts rows in
transactions of :data:`BUILD_ROWS_PER_COMMIT` until the file reaches the target size (about
7-13 s for 1 GiB here). The 1 GiB build is kept under ``--scratch`` (default
``/tmp/efsqlite-bench-patch``, outside the git tree) and reused; each run's commands add
ledger rows to it (about 25 MiB), so it is built again once it is 5% over its size. It is
locked for the run: a second run at the same time stops at once. Each run's snapshots and
traces go to a folder of their own under ``--scratch`` (``/tmp``: local disk on Lambda, not
charged), deleted at the end.

Every change goes through the real Writer (Lambda-shaped SQS events): random rows across the
table, one single-row ``UPDATE`` command per row (each command also adds its ledger row),
:data:`BATCH` commands per SQS batch, so one commit per 10 rows; and one packed case, 10,000
rows in 10 commits of 10 packed messages of 100 commands (:data:`CASES`).

1. **Refresh.** A child process holds a ``DatabaseSnapshot``; between its refreshes it asks
   the parent to change rows (the parent then runs ``sync``, so the write-back of earlier
   copies' gigabytes does not land in the next timed refresh). Patched (patching on): per
   run and case, 1 row changed, a refresh (the spare is now one small step behind the current
   copy), the case's rows changed, then the measured refresh. The cases take turns; the
   small ones run 15 times, the 10,000-row ones 5 (``--quick``: 5 and 3). Full: patching
   off, the rows changed, then the measured refresh (a full copy, 1 MiB per read), once
   per case. Patching on, the first refresh (no snapshot yet) and one forced fallback (the
   spare dropped) are full copies too, which also write the twin spare. Wall time of
   ``refresh()`` in the child under the model (``efs_model.model_prefix``), the same child
   with zero delays (tracing's own cost), and, from a third run under the counting trace
   (``efs_model.trace_prefix``), the calls and bytes on the database files (the
   ``.sqlite``, its journal, its ``-pages`` log) of the measured refresh alone: the child
   brackets it with two marker ``openat`` calls of a path that does not exist. That run also
   samples the snapshot folder's allocated bytes every 20 ms (the ``/tmp`` space).
2. **Warm queries under writes.** A reader (the handler's ``Reader``, 1 s staleness window,
   patching on) in a child under the model does primary-key point queries on random rows,
   100 per second, while a writer child (also under the model) applies single-row commands,
   one commit each, at 0, 1 and 10 per second; in snapshot and in direct mode. Latency
   p50/p95/p99 from the timed run; from a counting run with markers around each query, the
   round trips of each query, grouped by what the snapshot did: nothing (inside the window),
   a check of the source, or a refresh.

Results: ``bench/results/patch.json`` (``patch-quick.json`` with ``--quick``) and the same
name with ``.md``; the Markdown is printed too. Goals are targets to report against.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "shared"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from efsqlite.core import engine, ledger, pagelog  # noqa: E402
from efsqlite.core.connections import (  # noqa: E402
    open_readonly_connection,
    open_writer_connection,
)
from efsqlite.read.connection import QueryLimits  # noqa: E402
from efsqlite.read.reader import Reader  # noqa: E402
from efsqlite.read.settings import ReaderSettings  # noqa: E402
from efsqlite.read.snapshot import DatabaseSnapshot, SnapshotStore  # noqa: E402
from efsqlite.write.settings import WriterSettings  # noqa: E402
from efsqlite.write.writer import Writer  # noqa: E402

from tests.support.events import sqs_event, sqs_record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import efs_model  # noqa: E402

MIB = 1 << 20
MIGRATION = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, data BLOB NOT NULL);\n"
)
ROW_BYTES = 1000
BUILD_ROWS_PER_COMMIT = 20_000
INSERT_SQL = (
    "WITH RECURSIVE r(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM r WHERE i < ?) "
    "INSERT INTO items (id, balance, data) SELECT i, 0, randomblob(?) FROM r"
)
UPDATE_SQL = "UPDATE items SET balance = balance + 1 WHERE id = ?"
POINT_SQL = "SELECT id, balance FROM items WHERE id = ?"
#: Commands per SQS batch: one commit per BATCH changed rows.
BATCH = 10
#: What changes between the last refresh and the measured one: name -> (rows, rows per
#: commit). One single-row command per row; 10 per SQS batch, or (``packed``) 10 packed
#: messages of 100 commands each per batch, as ``WriteClient.send_many`` sends them.
CASES: dict[str, tuple[int, int]] = {
    "1": (1, BATCH),
    "100": (100, BATCH),
    "10000": (10_000, BATCH),
    "10000-packed": (10_000, 1_000),
}
#: The cases a full copy is timed after (it reads the whole file whatever changed).
FULL_CASES = ("1", "100", "10000")
#: A marker ``openat`` of a path that does not exist: it brackets a measured span in a trace.
MARK_DIR = "/efsqlite-bench-mark"
_MARK = re.compile(re.escape(MARK_DIR) + r"/(begin|end)-([^\"]+)\"")
#: The snapshot's first query builds the copy: the settings' maximum timeout, not 2 s.
FIRST_QUERY_TIMEOUT_MS = 900_000
STALENESS_MS = 1000
DEFAULT_SCRATCH = Path(tempfile.gettempdir()) / "efsqlite-bench-patch"


#: The code this benchmark measures: a fingerprint of each goes with the results, taken at
#: the start and the end of a run (a file edited meanwhile makes the figures a mix).
MEASURED_FILES = (
    "shared/efsqlite/read/snapshot.py",
    "shared/efsqlite/read/reader.py",
    "shared/efsqlite/core/pagelog.py",
    "shared/efsqlite/core/pagevfs.py",
    "shared/efsqlite/core/connections.py",
    "shared/efsqlite/write/writer.py",
    "bench/efs_model.py",
    "bench/bench_patch.py",
)


def code_fingerprint() -> dict[str, str]:
    """SHA-256 (first 12 hex digits) of each of :data:`MEASURED_FILES`, and the commit."""
    out = {
        name: hashlib.sha256((REPO / name).read_bytes()).hexdigest()[:12] for name in MEASURED_FILES
    }
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    )
    out["git_head"] = head.stdout.strip() or "unknown"
    return out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def db_path(root: Path) -> Path:
    return root / "data" / "main.sqlite"


# -- building the database ------------------------------------------------------------------
def build(root: Path, target_bytes: int) -> dict[str, Any]:
    """The migration through the real Writer, then rows through the writer connection."""
    started = time.perf_counter()
    migrations = root / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / "0001_items.sql").write_text(MIGRATION)
    writer = Writer(
        WriterSettings(data_dir=root / "data", migrations_dir=migrations, databases="*")
    )
    writer.database("main")
    writer.close()
    path = db_path(root)
    conn = open_writer_connection(path)
    rows = 0
    try:
        chunk = BUILD_ROWS_PER_COMMIT
        while chunk > 0:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT_SQL, (rows + 1, rows + chunk, ROW_BYTES))
            conn.execute("COMMIT")
            rows += chunk
            size = path.stat().st_size
            # The last transaction stops close to the target: rows so far say a row's size.
            chunk = min(BUILD_ROWS_PER_COMMIT, max(target_bytes - size, 0) * rows // size)
    finally:
        conn.close()
    info = {
        "target_bytes": target_bytes,
        "rows": rows,
        "row_bytes": ROW_BYTES,
        "rows_per_commit": BUILD_ROWS_PER_COMMIT,
        "built_bytes": path.stat().st_size,
        "build_seconds": time.perf_counter() - started,
        "built_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (root / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def cached_build(root: Path, target_bytes: int, *, rebuild: bool) -> dict[str, Any]:
    """The database under ``root``, built unless a complete build of that size is there."""
    marker = root / "build.json"
    if not rebuild and marker.exists() and db_path(root).exists():
        info = json.loads(marker.read_text())
        # Each run's commands add ledger rows: past 5% over the target, build it again.
        grown = db_path(root).stat().st_size > target_bytes * 1.05
        same = info.get("target_bytes") == target_bytes and info.get("row_bytes") == ROW_BYTES
        if same and not grown:
            return {**info, "cached": True}
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return {**build(root, target_bytes), "cached": False}


class RowChanger:
    """The real Writer on the bench database: each changed row is one single-row command,
    :data:`BATCH` commands per SQS batch (one commit)."""

    def __init__(self, root: Path, rows: int, seed: int) -> None:
        # Sequence numbers above the database's position, whichever process wrote it.
        conn = open_readonly_connection(db_path(root))
        self.base = ledger.read_state(conn)[0].value
        conn.close()
        self.writer = Writer(
            WriterSettings(
                data_dir=root / "data", migrations_dir=root / "migrations", databases="*"
            )
        )
        self.rows = rows
        self.rng = random.Random(seed)
        self.n = 0

    def _command(self, row: int) -> dict[str, Any]:
        self.n += 1
        return {
            "v": 1,
            "id": f"patch-{self.base}-{self.n}",  # new ids: not duplicates of earlier runs
            "db": "main",
            "statements": [{"sql": UPDATE_SQL, "params": [row]}],
        }

    def change(self, count: int, per_commit: int = BATCH) -> None:
        """Change ``count`` distinct random rows, ``per_commit`` rows per SQS batch (one
        commit): single commands up to :data:`BATCH`, else :data:`BATCH` packed messages."""
        rows = self.rng.sample(range(1, self.rows + 1), count)
        per_message = max(per_commit // BATCH, 1)
        for start in range(0, count, per_commit):
            chunk = rows[start : start + per_commit]
            records = []
            for at in range(0, len(chunk), per_message):
                commands = [self._command(row) for row in chunk[at : at + per_message]]
                body = (
                    commands[0]
                    if per_message == 1
                    else {"v": 1, "db": "main", "commands": commands}
                )
                sequence = str(self.base + self.n * 1_000_000)
                records.append(sqs_record(body, sequence_number=sequence))
            result = self.writer.handle_event(sqs_event(*records))
            assert not result.failed_message_ids(), result.batches

    def close(self) -> None:
        self.writer.close()


# -- markers and the snapshot folder's size -------------------------------------------------
def mark(label: str) -> None:
    """An ``openat`` the counting trace shows: the start or end of a measured span."""
    with contextlib.suppress(FileNotFoundError):
        os.close(os.open(f"{MARK_DIR}/{label}", os.O_RDONLY))


def spans(text: str) -> dict[str, str]:
    """The trace lines between each ``begin-X`` and ``end-X`` marker, by ``X``."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        found = _MARK.search(line)
        if found:
            kind, label = found.groups()
            current = out.setdefault(label, []) if kind == "begin" else None
            continue
        if current is not None:
            current.append(line)
    return {label: "\n".join(lines) for label, lines in out.items()}


def allocated(folder: Path) -> int:
    """Bytes allocated on disk to the files in ``folder`` (sparse holes not counted)."""
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


class SpaceSampler:
    """The snapshot folder's allocated bytes every 20 ms: the peak since :meth:`reset`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.sample()

    def sample(self) -> int:
        now = allocated(self.folder)
        self.peak = max(self.peak, now)
        return now

    def reset(self) -> None:
        self.peak = self.sample()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _ask(out: TextIO, stdin: TextIO, request: str) -> None:
    out.write(request + "\n")
    out.flush()
    if stdin.readline() != "ok\n":
        raise SystemExit(f"the parent did not answer {request!r}")


# -- 1. refreshes ---------------------------------------------------------------------------
def refresh_plan(patching: bool, reps: Mapping[str, int]) -> list[list[Any]]:
    """Steps of a refresh child: ``[change, rows, per_commit]``, ``[refresh, label]``,
    ``[drop-spare]``. A measured refresh is labelled ``<rep>:<case>``; the cases take turns,
    each until it has its ``reps``."""
    plan: list[list[Any]] = [["refresh", "first"]]
    for rep in range(max(reps.values())):
        for case in (case for case, n in reps.items() if rep < n):
            if patching:
                plan += [["change", 1, BATCH], ["refresh", f"setup-{rep}-{case}"]]
            plan += [["change", *CASES[case]], ["refresh", f"{rep}:{case}"]]
    if patching:
        # A full copy with a current snapshot in place: what any doubt costs, and the
        # most /tmp space a refresh takes (current, new copy and its twin).
        plan += [["change", 100, BATCH], ["drop-spare"], ["refresh", "fallback"]]
    return plan


def refresh_child(argv: list[str]) -> None:
    """Refreshes of one ``DatabaseSnapshot`` following a plan; prints one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("snapshots", type=Path)
    parser.add_argument("patching", choices=("on", "off"))
    parser.add_argument("plan")
    parser.add_argument("--space", action="store_true", help="sample the snapshot folder")
    args = parser.parse_args(argv)
    store = SnapshotStore(args.snapshots)
    snap = DatabaseSnapshot(
        store,
        "main",
        db_path(args.root),
        busy_timeout_ms=5000,
        limits=QueryLimits(),
        max_staleness_s=0,
        patching=args.patching == "on",
    )
    sampler = SpaceSampler(store.folder) if args.space else None
    out = sys.stdout
    rows = []
    for step in json.loads(args.plan):
        if step[0] == "change":
            _ask(out, sys.stdin, f"w {step[1]} {step[2]}")
            continue
        if step[0] == "drop-spare":
            snap._drop_spare()  # forces the fallback any doubt would cause
            continue
        label = step[1]
        if sampler is not None:
            sampler.reset()
        mark(f"begin-{label}")
        cpu = time.process_time()
        started = time.perf_counter_ns()
        snap.refresh()
        took = time.perf_counter_ns() - started
        cpu_after = time.process_time()
        mark(f"end-{label}")
        build = snap.last_refresh
        assert build is not None
        row: dict[str, Any] = {
            "label": label,
            "ms": took / 1e6,
            # This process's CPU time (user + system): far less sensitive than wall time to
            # other work on the machine; the rest of the wall time is waiting (the model's
            # delays, strace resuming the process, the scheduler).
            "cpu_ms": (cpu_after - cpu) * 1000,
            "load_1m": os.getloadavg()[0],
            "patched": build.patched,
            "pages_read": build.pages_read,
            "read_bytes": build.read_bytes,
            "reason": None if build.patched else snap.last_full_copy_reason,
            "file_bytes": snap.source_path.stat().st_size,  # stat: neither charged nor counted
        }
        if sampler is not None:
            row["tmp_peak_bytes"] = max(sampler.peak, sampler.sample())
            row["tmp_after_bytes"] = sampler.sample()
        rows.append(row)
    if sampler is not None:
        sampler.close()
    result = {"refreshes": snap.refreshes, "patches": snap.patches, "rows": rows}
    snap.close()
    store.close()
    out.write(json.dumps(result) + "\n")
    out.flush()


def _drive(command: list[str], on_request: Callable[[str], None]) -> dict[str, Any]:
    """Run a child; answer each request line it prints (``w N``) after ``on_request``."""
    return efs_model.drive_child(command, on_request, cwd=REPO)


def refresh_run(
    root: Path,
    work: Path,
    rows: int,
    *,
    patching: bool,
    plan: list[list[Any]],
    how: str,
    seed: int,
) -> dict[str, Any]:
    """One refresh child under the model (``how='model'``), zero delays (``'zero'``) or the
    counting trace (``'trace'``, with the calls of each refresh and the /tmp space)."""
    paths = efs_model.database_paths(root / "data")
    command = [sys.executable, __file__, "refresh-child", str(root), str(work / "snapshots")]
    command += ["on" if patching else "off", json.dumps(plan)]
    trace: Path | None = None
    if how == "model":
        prefix = efs_model.model_prefix(paths)
    elif how == "zero":
        prefix = efs_model.model_prefix(paths, efs_model.ZERO_MODEL)
    else:
        handle, name = tempfile.mkstemp(prefix="patch-trace-", suffix=".txt", dir=work)
        os.close(handle)
        trace = Path(name)
        prefix = efs_model.trace_prefix(trace)
        command.append("--space")
    changer = RowChanger(root, rows, seed)
    changes: list[float] = []

    def change(line: str) -> None:
        started = time.perf_counter()
        _, rows_changed, per_commit = line.split()
        changer.change(int(rows_changed), int(per_commit))
        changes.append(time.perf_counter() - started)
        # Write back the dirty pages of earlier copies (GBs in /tmp) now, not during the
        # next measured refresh: each refresh is timed on its own work.
        os.sync()

    try:
        result = _drive([*prefix, *command], change)
        if trace is not None:
            found = spans(trace.read_text(errors="replace"))
            data = efs_model.in_folder(root / "data")
            for row in result["rows"]:
                text = found.get(row["label"], "")
                usage = efs_model.parse_trace(text, data)
                page_log = efs_model.parse_trace(text, lambda p: p.endswith("-pages"))
                row["usage"] = {
                    **efs_model.usage_summary(usage),
                    **{k: usage[k] for k in ("pread64", "fcntl", "openat", "read_bytes")},
                    "metered_read_bytes": usage["metered_read_bytes"],
                    "page_log_read_bytes": page_log["read_bytes"],
                    # What the model adds to these calls: the floor of the modelled time.
                    "model_delay_ms": sum(
                        usage[name] * us for name, us in efs_model.MODEL_US.items()
                    )
                    / 1000,
                    "page_log_pread64": page_log["pread64"],
                }
    finally:
        changer.close()
        if trace is not None:
            trace.unlink(missing_ok=True)
    result["change_seconds"] = changes
    return result


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def refreshes(root: Path, work: Path, rows: int, *, quick: bool) -> dict[str, Any]:
    """Patched and full refreshes after 1, 100 and 10,000 changed rows.

    A full copy does not depend on the rows changed: under the model it is timed once per
    N, with zero delays and under the counting trace once (after 100 rows).
    """
    size = db_path(root).stat().st_size
    # The small patches take milliseconds: more runs of them make their medians steadier.
    reps = (
        {"1": 5, "100": 5, "10000": 3, "10000-packed": 3}
        if quick
        else {"1": 15, "100": 15, "10000": 5, "10000-packed": 5}
    )
    counted = dict.fromkeys(CASES, 1) if quick else {**dict.fromkeys(CASES, 2), "100": 3}
    full = dict.fromkeys(FULL_CASES, 1)
    out: dict[str, Any] = {"database_bytes_at_start": size, "reps": reps}
    runs: dict[str, dict[str, Any]] = {}
    for name, patching, how, plan_reps in (
        ("patched_model", True, "model", reps),
        ("patched_zero", True, "zero", counted),
        ("patched_trace", True, "trace", counted),
        ("full_model", False, "model", full),
        ("full_zero", False, "zero", {"100": 1}),
        ("full_trace", False, "trace", {"100": 1}),
    ):
        plan = refresh_plan(patching, plan_reps)
        log(f"refresh: {name} ({len([s for s in plan if s[0] == 'refresh'])} refreshes)")
        runs[name] = refresh_run(
            root, work, rows, patching=patching, plan=plan, how=how, seed=len(runs)
        )
    out["runs"] = runs
    out["database_bytes_at_end"] = db_path(root).stat().st_size
    out["table"] = refresh_table(runs)
    out["fallbacks"] = fallbacks(runs)
    return out


def _case(label: str) -> str | None:
    """The case of a measured refresh's label (``<rep>:<case>``); None for the others."""
    rep, sep, case = label.partition(":")
    return case if sep and rep.isdigit() else None


def _case_title(case: str) -> str:
    rows, per_commit = CASES[case]
    return f"{rows:,} rows, {per_commit:,} per commit"


def _median_usage(usages: list[dict[str, float]]) -> dict[str, float] | None:
    if not usages:
        return None
    return {key: statistics.median(u[key] for u in usages) for key in usages[0]}


def _of_case(case: str, patched: bool | None = None) -> Callable[[dict[str, Any]], bool]:
    """A filter: measured refreshes of ``case`` (and, unless None, patched or not)."""

    def match(row: dict[str, Any]) -> bool:
        return _case(row["label"]) == case and (patched is None or row["patched"] is patched)

    return match


def refresh_table(runs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per refresh kind and case: wall times (median, min, max) under the model and
    with zero delays, counts (median of the counted runs) from the trace.

    With patching on, the refreshes of one case that fell back to a full copy get a row of
    their own: a median over both kinds would describe neither.
    """
    groups: list[tuple[str, str, str, Callable[[dict[str, Any]], bool]]] = []
    for case in CASES:
        for patched in (True, False):
            title = f"patched, {_case_title(case)}"
            if not patched:
                title = f"patching on, {_case_title(case)}: fell back to a full copy"
            groups.append(
                (
                    title,
                    case,
                    "patched",
                    _of_case(case, patched),
                )
            )
    groups += [
        (
            f"full copy (patching off), {_case_title(case)}",
            case,
            "full",
            _of_case(case),
        )
        for case in FULL_CASES
    ]
    groups += [
        ("first refresh, patching on (full copy + twin)", "first", "patched",
         lambda r: r["label"] == "first"),
        ("forced fallback, patching on (spare dropped; full copy + twin)", "fallback",
         "patched", lambda r: r["label"] == "fallback"),
    ]  # fmt: skip
    table = []
    for title, key, kind, match in groups:
        timed = [r for r in runs[f"{kind}_model"]["rows"] if match(r)]
        zero = [r for r in runs[f"{kind}_zero"]["rows"] if match(r)]
        counted = [r for r in runs[f"{kind}_trace"]["rows"] if match(r)]
        if not timed and not counted:
            continue
        usage = _median_usage([r["usage"] for r in counted])
        every = timed + zero + counted
        fractions = [r["usage"]["read_bytes"] / r["file_bytes"] for r in counted]
        table.append(
            {
                "refresh": title,
                "key": key,
                "kind": kind,
                "patched": all(r["patched"] for r in every),
                "runs": len(timed),
                "ms": _summary([r["ms"] for r in timed]) if timed else None,
                "cpu_ms": _summary([r["cpu_ms"] for r in timed]) if timed else None,
                "load_1m": _summary([r["load_1m"] for r in timed]) if timed else None,
                "zero_delay_ms": _summary([r["ms"] for r in zero]) if zero else None,
                "counted_runs": len(counted),
                "reasons": sorted({r["reason"] for r in every if r["reason"]}),
                "pages_read": statistics.median(r["pages_read"] for r in every),
                "usage": usage,
                "read_fraction": statistics.median(fractions) if fractions else None,
                "tmp_peak_bytes": max((r["tmp_peak_bytes"] for r in counted), default=None),
                "tmp_after_bytes": counted[-1]["tmp_after_bytes"] if counted else None,
            }
        )
    return table


def fallbacks(runs: Mapping[str, Any]) -> dict[str, Any]:
    """Measured refreshes with patching on that copied the whole file, by case."""
    out: dict[str, Any] = {}
    for name in ("patched_model", "patched_zero", "patched_trace"):
        for row in runs[name]["rows"]:
            case = _case(row["label"])
            if case is None:
                continue
            entry = out.setdefault(case, {"refreshes": 0, "full_copies": 0, "reasons": []})
            entry["refreshes"] += 1
            if not row["patched"]:
                entry["full_copies"] += 1
                if row["reason"] not in entry["reasons"]:
                    entry["reasons"].append(row["reason"])
    return out


# -- 2. warm queries under writes -----------------------------------------------------------
def query_child(argv: list[str]) -> None:
    """A warm reader's paced point queries; prints one JSON line.

    Builds its snapshot first (``ready`` on stdout), waits for ``go``, then queries for
    ``seconds``. With ``--mark`` each query sits between two markers for the counting trace.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("snapshots", type=Path)
    parser.add_argument("mode", choices=("snapshot", "direct"))
    parser.add_argument("seconds", type=float)
    parser.add_argument("qps", type=float)
    parser.add_argument("rows", type=int)
    parser.add_argument("--mark", action="store_true")
    args = parser.parse_args(argv)
    reader = Reader(
        ReaderSettings(
            data_dir=args.root / "data",
            snapshot_dir=args.snapshots,
            read_mode=args.mode,
            max_staleness_ms=STALENESS_MS,
            max_timeout_ms=FIRST_QUERY_TIMEOUT_MS,
        )
    )
    rng = random.Random(7)
    first = reader.handle(
        {"db": "main", "sql": POINT_SQL, "params": [1], "timeout_ms": FIRST_QUERY_TIMEOUT_MS}
    )
    assert "error" not in first, first
    for _ in range(200):
        answer = reader.handle(
            {"db": "main", "sql": POINT_SQL, "params": [rng.randint(1, args.rows)]}
        )
        assert "error" not in answer, answer
    snap = reader._snapshots.get("main")  # to tell what each query did: check, refresh
    _ask(sys.stdout, sys.stdin, "ready")
    samples: list[int] = []
    kinds: list[str] = []
    stale = errors = 0
    interval = 1 / args.qps
    clock = time.perf_counter_ns
    started = time.monotonic()
    due = started
    i = 0
    while time.monotonic() - started < args.seconds:
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        before = (snap.last_check, snap.refreshes) if snap is not None else None
        if args.mark:
            mark(f"begin-{i}")
        t0 = clock()
        answer = reader.handle(
            {"db": "main", "sql": POINT_SQL, "params": [rng.randint(1, args.rows)]}
        )
        took = clock() - t0
        if args.mark:
            mark(f"end-{i}")
        if snap is None or before is None:
            kind = "direct"
        elif snap.refreshes != before[1]:
            kind = "refresh"
        elif snap.last_check != before[0]:
            kind = "check"
        else:
            kind = "window"
        if "error" in answer or not answer["rows"]:
            errors += 1
        elif answer["stale"]:
            stale += 1
        samples.append(took)
        kinds.append(kind)
        i += 1
        due = max(due + interval, time.monotonic())
    result: dict[str, Any] = {"samples_ns": samples, "kinds": kinds, "stale": stale}
    result["errors"] = errors
    result["seconds"] = time.monotonic() - started
    if snap is not None:
        result["patches"] = snap.patches
        result["refreshes"] = snap.refreshes
        result["last_full_copy_reason"] = snap.last_full_copy_reason
    reader.close()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def writer_child(argv: list[str]) -> None:
    """Single-row commands, one commit each, at ``rate`` per second until stdin closes."""
    root, rows, rate, seed = Path(argv[0]), int(argv[1]), float(argv[2]), int(argv[3])
    changer = RowChanger(root, rows, seed)
    changer.change(1)  # opens and checks the database before the clock starts
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    interval = 1 / rate
    started = time.monotonic()
    due = started
    writes = 0
    commit_s: list[float] = []
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], max(due - time.monotonic(), 0))
        if ready:
            break  # the parent closed stdin
        t0 = time.perf_counter()
        changer.change(1)
        commit_s.append(time.perf_counter() - t0)
        writes += 1
        due = max(due + interval, time.monotonic())
    elapsed = time.monotonic() - started
    changer.close()
    result = {"writes": writes, "seconds": elapsed, "commit_ms_p50": 0.0}
    if commit_s:
        result["commit_ms_p50"] = statistics.median(commit_s) * 1000
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a child process ended early (exit status {proc.wait()})")
    return line


def query_run(
    root: Path,
    work: Path,
    mode: str,
    rate: float,
    seconds: float,
    qps: float,
    rows: int,
    *,
    counted: bool,
) -> dict[str, Any]:
    """A query child (under the model, or the counting trace) with a writer child at
    ``rate`` writes per second (under the model) for the timed part."""
    paths = efs_model.database_paths(root / "data")
    command = [sys.executable, __file__, "query-child", str(root), str(work / "snapshots")]
    command += [mode, str(seconds), str(qps), str(rows)]
    trace: Path | None = None
    if counted:
        handle, name = tempfile.mkstemp(prefix="patch-trace-", suffix=".txt", dir=work)
        os.close(handle)
        trace = Path(name)
        command = [*efs_model.trace_prefix(trace), *command, "--mark"]
    else:
        command = [*efs_model.model_prefix(paths), *command]
    reader = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    writer: subprocess.Popen[str] | None = None
    assert reader.stdin is not None and reader.stdout is not None
    try:
        if _readline(reader) != "ready\n":
            raise RuntimeError("the query child did not get ready")
        if rate > 0:
            writer = subprocess.Popen(
                [
                    *efs_model.model_prefix(paths),
                    sys.executable,
                    __file__,
                    "writer-child",
                    str(root),
                    str(rows),
                    str(rate),
                    str(int(rate * 1000) + int(counted)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            if _readline(writer) != "ready\n":
                raise RuntimeError("the writer child did not get ready")
        reader.stdin.write("ok\n")
        reader.stdin.flush()
        result: dict[str, Any] = json.loads(_readline(reader))
        reader.stdin.close()
        if reader.wait() != 0:
            raise RuntimeError("the query child failed")
        if writer is not None:
            assert writer.stdin is not None
            writer.stdin.close()
            result["writer"] = json.loads(_readline(writer))
            writer.wait()
        if trace is not None:
            found = spans(trace.read_text(errors="replace"))
            data = efs_model.in_folder(root / "data")
            result["round_trips"] = [
                efs_model.round_trips(efs_model.parse_trace(found.get(str(i), ""), data))
                for i in range(len(result["samples_ns"]))
            ]
    finally:
        for proc in (reader, writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if trace is not None:
            trace.unlink(missing_ok=True)
    return result


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def latency_summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(s / 1e6 for s in samples_ns)
    return {
        "p50_ms": _pct(ordered, 0.50),
        "p95_ms": _pct(ordered, 0.95),
        "p99_ms": _pct(ordered, 0.99),
        "max_ms": ordered[-1],
        "queries": len(ordered),
    }


def queries(
    root: Path, work: Path, rows: int, *, quick: bool, rates: tuple[float, ...]
) -> dict[str, Any]:
    """Warm point queries in snapshot and direct mode while a writer writes at ``rates``."""
    seconds, counted_seconds, qps = (6.0, 4.0, 100.0) if quick else (20.0, 10.0, 100.0)
    out: dict[str, Any] = {"seconds": seconds, "counted_seconds": counted_seconds, "qps": qps}
    rows_out = []
    for rate in rates:
        for mode in ("snapshot", "direct"):
            log(f"queries: {mode}, {rate:g} writes/s")
            timed = query_run(root, work, mode, rate, seconds, qps, rows, counted=False)
            count = query_run(root, work, mode, rate, counted_seconds, qps, rows, counted=True)
            by_kind: dict[str, Any] = {}
            for kind in sorted(set(timed["kinds"]) | set(count["kinds"])):
                lat = [
                    s for s, k in zip(timed["samples_ns"], timed["kinds"], strict=True) if k == kind
                ]
                trips = [
                    t
                    for t, k in zip(count["round_trips"], count["kinds"], strict=True)
                    if k == kind
                ]
                by_kind[kind] = {
                    "queries": len(lat),
                    "latency": latency_summary(lat) if lat else None,
                    "counted_queries": len(trips),
                    "round_trips_mean": statistics.fmean(trips) if trips else None,
                    "round_trips_max": max(trips) if trips else None,
                    "with_round_trips": sum(t > 0 for t in trips),
                }
            writer = timed.get("writer", {})
            rows_out.append(
                {
                    "mode": mode,
                    "rate": rate,
                    "writes_per_s": writer["writes"] / writer["seconds"] if writer else 0.0,
                    "writer_commit_ms_p50": writer.get("commit_ms_p50"),
                    "latency": latency_summary(timed["samples_ns"]),
                    "round_trips_mean": statistics.fmean(count["round_trips"]),
                    "by_kind": by_kind,
                    "stale": timed["stale"] + count["stale"],
                    "errors": timed["errors"] + count["errors"],
                    "patches": timed.get("patches"),
                    "refreshes": timed.get("refreshes"),
                    "last_full_copy_reason": timed.get("last_full_copy_reason"),
                }
            )
    out["rows"] = rows_out
    return out


# -- goals and report -----------------------------------------------------------------------
def goals(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, measured. With ``--quick`` the database is 100 MiB, not 1 GB."""
    size = results["database"]["bytes"]
    where = f"{size / MIB:,.0f} MiB database"
    ref = results["refresh"]
    out = []
    fell = ref["fallbacks"].get("100", {"refreshes": 0, "full_copies": 0})
    patched = next(
        (r for r in ref["table"] if r["kind"] == "patched" and r["key"] == "100" and r["patched"]),
        None,
    )
    if patched is not None and patched["usage"] is not None:
        fraction = patched["read_fraction"]
        out.append(
            {
                "goal": f"refresh after 100 changed rows: bytes read from EFS ({where})",
                "target": "<= 1% of the file",
                "measured": f"{fraction * 100:.3f}% ({patched['usage']['read_bytes'] / MIB:.2f} "
                f"MiB); {fell['full_copies']} of {fell['refreshes']} fell back to a full copy",
                "value": fraction,
                "met": fraction <= 0.01 and fell["full_copies"] == 0,
            }
        )
    timed = [
        r["ms"]
        for r in ref["runs"]["patched_model"]["rows"]
        if _case(r["label"]) == "100"  # patched or not: what a reader got
    ]
    if timed:
        ms = statistics.median(timed)
        out.append(
            {
                "goal": f"refresh after 100 changed rows, wall time under the model ({where})",
                "target": "<= 50 ms",
                "measured": f"{ms:.1f} ms (median of {len(timed)}; {min(timed):.1f}-"
                f"{max(timed):.1f})",
                "value": ms,
                "met": ms <= 50,
            }
        )
    window = [
        q["by_kind"]["window"]
        for q in results["queries"]["rows"]
        if q["mode"] == "snapshot" and "window" in q["by_kind"]
    ]
    if window:
        worst = max(w["round_trips_max"] or 0 for w in window)
        counted = sum(w["counted_queries"] for w in window)
        out.append(
            {
                "goal": "warm snapshot queries inside the 1 s staleness window: EFS round trips",
                "target": "0",
                "measured": f"{worst:g} at most, over {counted:,} counted queries at "
                + ", ".join(
                    f"{q['rate']:g}" for q in results["queries"]["rows"] if q["mode"] == "snapshot"
                )
                + " writes/s",
                "value": worst,
                "met": worst == 0,
            }
        )
    return out


def _mib(value: float) -> str:
    return f"{value / MIB:,.2f}"


def space_lines(table: list[dict[str, Any]], size: int) -> list[str]:
    """The snapshot folder's measured size in /tmp, against the database's."""
    rows = {row["refresh"]: row for row in table}
    parts = []
    for title, label, key in (
        ("patched, 100 rows, 10 per commit", "patching on, after a patch", "tmp_after_bytes"),
        ("forced fallback, patching on (spare dropped; full copy + twin)",
         "patching on, peak during a full copy with a snapshot in place", "tmp_peak_bytes"),
        ("first refresh, patching on (full copy + twin)", "patching on, peak during the first "
         "copy", "tmp_peak_bytes"),
        ("full copy (patching off), 100 rows, 10 per commit", "patching off, peak during a "
         "copy", "tmp_peak_bytes"),
        ("full copy (patching off), 100 rows, 10 per commit", "patching off, after it",
         "tmp_after_bytes"),
    ):  # fmt: skip
        row = rows.get(title)
        if row is not None and row.get(key) is not None:
            parts.append(f"{label} {_mib(row[key])} MiB ({row[key] / size:.2f}x)")
    if not parts:
        return []
    return [
        "Space in /tmp (the snapshot folder's allocated bytes, sampled every 20 ms in the "
        f"counted runs; the database is {_mib(size)} MiB at the end): " + "; ".join(parts) + "."
    ]


def markdown(results: Mapping[str, Any]) -> str:
    db = results["database"]
    ref = results["refresh"]
    size = db["bytes"]
    lines = [
        f"## Snapshot refresh by patching ({results['label']})",
        "",
        f"`{results['command']}`, {results['seconds']:.0f} s. Database: {size / MIB:,.1f} MiB "
        f"({size:,} bytes at the end), {db['rows']:,} rows of {ROW_BYTES:,}-byte blobs, "
        f"{'cached build' if db['cached'] else 'built'} in {db['build_seconds']:.0f} s "
        f"({db['path']}). EFS model: {efs_model.describe_model()}. Load average (1 min): "
        f"{results['load_average_at_start']:.1f} at the start, "
        f"{results['load_average_after_refreshes']:.1f} after the refreshes, "
        f"{results['load_average_at_end']:.1f} at the end.",
        "",
        "Code measured (SHA-256, 12 digits; git HEAD "
        f"{results['code']['git_head']}, working tree as it was): "
        + ", ".join(
            f"{Path(name).name} {digest}"
            for name, digest in results["code"].items()
            if name != "git_head"
        )
        + "."
        + (
            " CHANGED DURING THE RUN: " + ", ".join(results["code_changed_during_run"])
            if results.get("code_changed_during_run")
            else ""
        ),
        "",
        f"Changes: random rows, one single-row UPDATE command each, {BATCH} commands per SQS "
        "batch (one commit per 10 rows; in the packed case 10 messages of 100 commands, 1,000 "
        "rows per commit), through the real Writer. Wall time of `refresh()` in "
        f"a child under the model, median of the runs (min-max); counts (median of the counted "
        "runs) under the counting trace (the measured refresh only). The model's delays: "
        "those counts times the model's delay per call, the floor of the modelled time; CPU: "
        "the child's user + system time in the refresh (median). Bytes read: `pread64` on the "
        "database files (the page log included); metered at EFS's 32 KiB minimum per read.",
        "",
        "| refresh | runs | ms under the model, median (min-max) | the model's delays, ms "
        "| CPU ms | ms, zero delays | pages copied from EFS | pread64 | round trips | MiB read "
        "| % of file | of it, page log KiB | MiB metered | /tmp peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ref["table"]:
        ms, zero, usage = row["ms"], row["zero_delay_ms"], row["usage"]
        peak = row["tmp_peak_bytes"]

        def counted(key: str, shown: Callable[[float], str], usage: Any = usage) -> str:
            return "-" if usage is None else shown(usage[key])

        timed = "-" if ms is None else f"{ms['median']:,.1f} ({ms['min']:,.1f}-{ms['max']:,.1f})"
        fraction = "-" if row["read_fraction"] is None else f"{row['read_fraction'] * 100:.3f}"
        lines.append(
            f"| {row['refresh']} | {row['runs']} | {timed} "
            f"| {counted('model_delay_ms', '{:,.1f}'.format)} "
            f"| {'-' if row['cpu_ms'] is None else format(row['cpu_ms']['median'], ',.1f')} "
            f"| {'-' if zero is None else format(zero['median'], ',.1f')} "
            f"| {row['pages_read']:,.0f} | {counted('pread64', '{:,.0f}'.format)} "
            f"| {counted('round_trips', '{:,.0f}'.format)} | {counted('read_bytes', _mib)} "
            f"| {fraction} | {counted('page_log_read_bytes', lambda v: f'{v / 1024:,.1f}')} "
            f"| {counted('metered_read_bytes', _mib)} "
            f"| {'-' if peak is None else _mib(peak)} |"
        )
    lines += ["", "Measured refreshes with patching on that copied the whole file, by case:"]
    for case, fell in ref["fallbacks"].items():
        why = "; ".join(f"'{r}'" for r in fell["reasons"]) or "none"
        lines.append(
            f"- {_case_title(case)}: {fell['full_copies']} of {fell['refreshes']} (why: {why})"
        )
    lines += ["", *space_lines(ref["table"], size)]
    log_info = results.get("page_log_after_refreshes")
    if log_info and log_info["commit_entry_bytes_median"] is not None:
        lines += [
            "",
            f"Page log after the refreshes: {log_info['bytes']:,} bytes, "
            f"{log_info['entries']:,} entries; a commit's entry (median) "
            f"{log_info['commit_entry_bytes_median']:,.0f} bytes for "
            f"{log_info['commit_entry_pages_median']:,.0f} pages. The writer keeps the newest "
            f"half of the log once it passes {pagelog.MAX_LOG_BYTES:,} bytes.",
        ]
    q = results["queries"]
    lines += [
        "",
        f"Warm point queries on random rows of the same database (SQLite's page cache holds "
        f"only part of it), paced at {q['qps']:g}/s, a reader child under "
        f"the model ({q['seconds']:g} s timed; round trips from a {q['counted_seconds']:g} s "
        "counting run with markers around each query), while a writer child under the model "
        "applies single-row commands (one commit each). Snapshot mode: 1 s staleness window, "
        "patching on. 'window' queries found the snapshot inside its window; 'check' checked "
        "the source (unchanged); 'refresh' refreshed it.",
        "",
        "| mode | writes/s (achieved) | queries | p50 ms | p95 ms | p99 ms | max ms "
        "| round trips per query | by kind: queries timed/counted, p50 ms, round trips mean/max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in q["rows"]:
        lat = row["latency"]
        kinds = "; ".join(
            f"{kind} {k['queries']}/{k['counted_queries']}, "
            f"{'-' if k['latency'] is None else format(k['latency']['p50_ms'], '.3f')}, "
            + (
                "-"
                if not k["counted_queries"]
                else f"{k['round_trips_mean']:.1f}/{k['round_trips_max']:g}"
            )
            for kind, k in row["by_kind"].items()
        )
        lines.append(
            f"| {row['mode']} | {row['rate']:g} ({row['writes_per_s']:.1f}) | {lat['queries']} "
            f"| {lat['p50_ms']:.3f} | {lat['p95_ms']:.3f} | {lat['p99_ms']:.3f} "
            f"| {lat['max_ms']:.1f} | {row['round_trips_mean']:.2f} | {kinds} |"
        )
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in results["goals"]:
        lines.append(
            f"| {g['goal']} | {g['target']} | {g['measured']} | {'yes' if g['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def page_log_info(root: Path) -> dict[str, Any]:
    """The page log's size, entries, and the median size and pages of its commit entries.

    Taken after the refreshes, the log's entries are those of the last runs' changes: the
    full-copy runs' commits of 10 rows, about 1,000 of them."""
    path = pagelog.sidecar_path(db_path(root))
    entries, _ = pagelog.read_log(path)
    sizes = [len(e.encode()) for e in entries if e.kind == pagelog.KIND_COMMIT]
    return {
        "bytes": path.stat().st_size if path.exists() else 0,
        "entries": len(entries),
        "commit_entry_bytes_median": statistics.median(sizes) if sizes else None,
        "commit_entry_pages_median": statistics.median(
            sum(count for _, count in e.runs) for e in entries if e.kind == pagelog.KIND_COMMIT
        )
        if sizes
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 MiB database, fewer runs")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/patch.json)")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH)
    parser.add_argument("--rebuild", action="store_true", help="build the cached database again")
    parser.add_argument("--size-mib", type=int, help="database size (default 1024, quick 100)")
    args, rest = parser.parse_known_args(argv)
    if rest and rest[0] == "refresh-child":
        refresh_child(rest[1:])
        return 0
    if rest and rest[0] == "query-child":
        query_child(rest[1:])
        return 0
    if rest and rest[0] == "writer-child":
        writer_child(rest[1:])
        return 0
    if rest:
        parser.error(f"unknown arguments {rest}")
    if efs_model.strace_path() is None:
        print("strace is required (apt-get install strace)", file=sys.stderr)
        return 2
    name = "patch-quick.json" if args.quick else "patch.json"
    out_path = args.out or REPO / "bench" / "results" / name
    size_mib = args.size_mib or (100 if args.quick else 1024)
    started = time.monotonic()
    args.scratch.mkdir(parents=True, exist_ok=True)
    # The quick database is rebuilt in a temporary folder each time; the big one is cached,
    # and locked for the run: two runs writing one database would measure each other.
    temporary = args.quick
    root = (
        Path(tempfile.mkdtemp(prefix="db-", dir=args.scratch))
        if temporary
        else args.scratch / f"db-{size_mib}mib"
    )
    lock = os.open(args.scratch / f"{root.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another run is using {root}; wait for it or pass --scratch", file=sys.stderr)
        return 2
    # This run's snapshots and traces: another run's are never touched.
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.scratch))
    command = " ".join(
        ["python", "bench/bench_patch.py", *(argv if argv is not None else sys.argv[1:])]
    )
    try:
        log(f"database: {size_mib} MiB under {root}")
        info = cached_build(root, size_mib * MIB, rebuild=args.rebuild or temporary)
        how = "cached" if info["cached"] else f"built in {info['build_seconds']:.0f} s"
        now = db_path(root).stat().st_size
        log(f"database ready ({how}): {now:,} bytes, {info['rows']:,} rows")
        rows = info["rows"]
        results: dict[str, Any] = {
            "label": "quick" if args.quick else "full",
            "command": command.strip(),
            "python": sys.version.split()[0],
            "sqlite": engine.sqlite_version(),
            "model": efs_model.describe_model(),
            "load_average_at_start": os.getloadavg()[0],
            "database": {**info, "path": str(db_path(root))},
            "code": code_fingerprint(),
        }
        results["refresh"] = refreshes(root, work, rows, quick=args.quick)
        results["page_log_after_refreshes"] = page_log_info(root)
        results["load_average_after_refreshes"] = os.getloadavg()[0]
        results["queries"] = queries(root, work, rows, quick=args.quick, rates=(0, 1, 10))
        results["load_average_at_end"] = os.getloadavg()[0]
        at_end = code_fingerprint()
        results["git_head_at_end"] = at_end.pop("git_head")
        results["code_changed_during_run"] = [
            name for name, digest in at_end.items() if results["code"][name] != digest
        ]
        results["database"]["bytes"] = db_path(root).stat().st_size
        results["goals"] = goals(results)
        results["seconds"] = time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
            (args.scratch / f"{root.name}.lock").unlink(missing_ok=True)
        os.close(lock)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    out_path.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\n(written to {out_path} and {out_path.with_suffix('.md').name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
