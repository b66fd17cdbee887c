"""Write-path benchmark: efsqlite's writer against raw SQLite and the naive design.

Each measurement is a separate worker process (``python bench/bench_write.py worker ...``), so
the latency model (``strace`` delays, see ``bench/efs_model.py``) and the syscall counter wrap
exactly one writer. A worker sets up, warms up, prints ``ready``, waits for ``go`` on stdin
(so parallel workers start together), runs its timed loop and prints one JSON line.

Kinds of worker, all inserting the same row (``INSERT INTO items ... VALUES (?, ?, ?, ?)``):

- ``efsqlite``: the real :class:`efsqlite.write.writer.Writer` on a real file, fed Lambda-shaped SQS
  FIFO events of ``batch`` records; with ``--per-message C`` each record is a packed message
  of ``C`` commands.
- ``raw``: one connection of the same SQLite build (``efsqlite.core.engine``), one
  ``BEGIN IMMEDIATE ... COMMIT`` per batch of the same statements, same journal mode,
  ``synchronous=FULL``. The physical limit.
- ``naive``: what a writer Lambda without a queue does: open the shared file, write one
  command in its own transaction, close. Run N of them at once; ``database is locked`` errors
  are counted and retried.
- ``handler-logs``: the writer Lambda's own handler (``functions/writer/app.py``, powertools
  Logger and Metrics), to count the bytes it logs per invocation.

Under the model, each worker's delays apply only to its own database files
(``efs_model.database_paths``); the counts keep only the calls on them, with the bytes
read and written and the bytes EFS Elastic throughput meters (``efs_model.parse_trace``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import apsw

REPO = Path(__file__).resolve().parents[1]
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import efs_model  # noqa: E402

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS items ("
    "id TEXT PRIMARY KEY, producer TEXT NOT NULL, n INTEGER NOT NULL, payload TEXT NOT NULL)"
)
INSERT_SQL = "INSERT INTO items (id, producer, n, payload) VALUES (?, ?, ?, ?)"
PAYLOAD = "x" * 100
WARMUP_UNITS = 2


# -- workers ---------------------------------------------------------------------------------
def _params(prefix: str, n: int) -> list[Any]:
    return [f"{prefix}-{n}", prefix, n, PAYLOAD]


def _wait_for_go() -> None:
    os.write(1, b"ready\n")
    sys.stdin.readline()
    _CPU_AT_GO[0] = _cpu()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_CPU_AT_GO = [0.0]


def _report(commands: int, started: float, ended: float, **extra: Any) -> None:
    line = {"commands": commands, "start": started, "end": ended, "seconds": ended - started}
    line["cpu_seconds"] = _cpu() - _CPU_AT_GO[0]
    line.update(extra)
    os.write(1, (json.dumps(line) + "\n").encode())


def worker_efsqlite(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from efsqlite.write.settings import WriterSettings
    from efsqlite.write.writer import Writer

    from tests.support.events import next_sequence_number, sqs_event, sqs_record

    data_dir = Path(args.dir)
    migrations = data_dir / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / "0001_items.sql").write_text(TABLE_SQL + ";\n")
    writer = Writer(
        WriterSettings(
            data_dir=data_dir,
            migrations_dir=migrations,
            journal_mode=args.journal_mode,
            databases="*",
        )
    )
    prefix = f"{args.db}-{os.getpid()}"
    counter = 0

    def command() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return {
            "v": 1,
            "id": f"{prefix}-{counter}",
            "db": args.db,
            "statements": [{"sql": INSERT_SQL, "params": _params(prefix, counter)}],
        }

    def body() -> str:
        if args.per_message == 1:
            return json.dumps(command())
        commands = [command() for _ in range(args.per_message)]
        return json.dumps({"v": 1, "db": args.db, "commands": commands})

    events = [
        sqs_event(
            *(
                sqs_record(body(), group=args.db, sequence_number=next_sequence_number())
                for _ in range(args.batch)
            )
        )
        for _ in range(WARMUP_UNITS + args.units)
    ]
    for event in events[:WARMUP_UNITS]:
        assert not writer.handle_event(event).failed_message_ids()
    _wait_for_go()
    started = time.time()
    for event in events[WARMUP_UNITS:]:
        result = writer.handle_event(event)
        if result.failed_message_ids():
            raise SystemExit(f"batch failed: {result.batches[0].failure_message}")
    ended = time.time()
    writer.close()
    _report(args.units * args.batch * args.per_message, started, ended)


def worker_raw(args: argparse.Namespace) -> None:
    path = Path(args.dir) / f"{args.db}.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA journal_mode={args.journal_mode}")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(TABLE_SQL)
    prefix = f"raw-{os.getpid()}"
    per_unit = args.batch * args.per_message
    units = [
        [_params(prefix, u * per_unit + i) for i in range(per_unit)]
        for u in range(WARMUP_UNITS + args.units)
    ]

    def run(rows: list[list[Any]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for row in rows:
            conn.execute(INSERT_SQL, row)
        conn.execute("COMMIT")

    for rows in units[:WARMUP_UNITS]:
        run(rows)
    _wait_for_go()
    started = time.time()
    for rows in units[WARMUP_UNITS:]:
        run(rows)
    ended = time.time()
    conn.close()
    _report(args.units * per_unit, started, ended)


def worker_naive(args: argparse.Namespace) -> None:
    path = Path(args.dir) / f"{args.db}.sqlite"
    prefix = f"naive-{os.getpid()}"
    done = locked = retries = 0

    def one(n: int) -> None:
        conn = apsw.Connection(str(path))
        conn.set_busy_timeout(args.busy_timeout_ms)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT_SQL, _params(prefix, n))
            conn.execute("COMMIT")
        finally:
            conn.close()

    def attempt(n: int) -> None:
        nonlocal locked, retries
        while True:
            try:
                one(n)
                return
            except (apsw.BusyError, apsw.LockedError):
                locked += 1
                retries += 1
                if args.retry_sleep_ms:
                    time.sleep(args.retry_sleep_ms / 1000)

    for n in range(WARMUP_UNITS):
        attempt(-1 - n)
    locked = retries = 0
    _wait_for_go()
    started = time.time()
    if args.duration:
        deadline = started + args.duration
        while time.time() < deadline:
            attempt(done)
            done += 1
    else:
        for n in range(args.units):
            attempt(n)
            done += 1
    ended = time.time()
    _report(done, started, ended, locked=locked, retries=retries)


def worker_handler_logs(args: argparse.Namespace) -> None:
    """The writer Lambda's handler (``functions/writer/app.py``): bytes it logs per invocation.

    Settings as the SAM template sets them (``POWERTOOLS_METRICS_DISABLED`` unless
    ``--custom-metrics 1``). After the warm-up, file descriptors 1 and 2 go to a file for the
    timed invocations, so everything the handler and its libraries print is counted; the
    Lambda service's own START/END/REPORT lines are not part of it.
    """
    data_dir = Path(args.dir)
    migrations = data_dir / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / "0001_items.sql").write_text(TABLE_SQL + ";\n")
    os.environ.update(
        {
            "EFSQLITE_DATA_DIR": str(data_dir),
            "EFSQLITE_MIGRATIONS_DIR": str(migrations),
            "EFSQLITE_DATABASES": "*",
            "EFSQLITE_JOURNAL_MODE": args.journal_mode,
            "POWERTOOLS_SERVICE_NAME": "efsqlite-writer",
            "POWERTOOLS_METRICS_NAMESPACE": "efsqlite",
            "POWERTOOLS_METRICS_DISABLED": "false" if args.custom_metrics else "true",
        }
    )
    sys.path[:0] = [str(REPO / "functions" / "writer"), str(REPO)]
    import app  # type: ignore[import-not-found]

    from tests.support.events import FakeLambdaContext, sqs_event, sqs_record

    prefix = f"{args.db}-{os.getpid()}"
    counter = 0

    def record() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        body = {
            "v": 1,
            "id": f"{prefix}-{counter}",
            "db": args.db,
            "statements": [{"sql": INSERT_SQL, "params": _params(prefix, counter)}],
        }
        return sqs_record(body, group=args.db)

    events = [
        sqs_event(*(record() for _ in range(args.batch))) for _ in range(WARMUP_UNITS + args.units)
    ]
    context = FakeLambdaContext()
    for event in events[:WARMUP_UNITS]:
        assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    _wait_for_go()
    started = time.time()
    answers, logged = efs_model.printed(
        lambda: [app.lambda_handler(event, context) for event in events[WARMUP_UNITS:]]
    )
    ended = time.time()
    if any(answer != {"batchItemFailures": []} for answer in answers):
        raise SystemExit(f"a batch failed: {answers}")
    _report(
        args.units * args.batch,
        started,
        ended,
        log_bytes=len(logged),
        log_lines=logged.count(b"\n"),
        sample=logged.decode(errors="replace").splitlines()[-1:],
    )


WORKERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "efsqlite": worker_efsqlite,
    "raw": worker_raw,
    "naive": worker_naive,
    "handler-logs": worker_handler_logs,
}


# -- the orchestrator ------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "shared"), str(REPO), env.get("PYTHONPATH", "")]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def worker_command(kind: str, folder: Path, **options: Any) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "worker", kind, "--dir", str(folder)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def _option(command: Sequence[str], flag: str, default: str) -> str:
    return command[command.index(flag) + 1] if flag in command else default


def model_paths(command: Sequence[str]) -> list[str]:
    """The EFS paths of a worker command: its ``--dir`` folder, its ``--db`` file, the journal."""
    return efs_model.database_paths(
        _option(command, "--dir", "."), [_option(command, "--db", "main")]
    )


def run_together(
    commands: Sequence[Sequence[str]],
    *,
    modelled: bool,
    model: Mapping[str, int] = efs_model.MODEL_US,
) -> list[dict[str, Any]]:
    """Start the workers, wait until all are ready, release them at once, collect results.

    Under the model each worker's strace delays only the calls on its own database files.
    """
    procs = [
        subprocess.Popen(
            [
                *(efs_model.model_prefix(model_paths(command), model) if modelled else []),
                *command,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for command in commands
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.wait()
            raise RuntimeError(f"worker failed to start: {line!r}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"worker exited {proc.returncode}: {out[-500:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def throughput(results: Sequence[Mapping[str, Any]]) -> float:
    """Aggregate commands/s across workers: all commands over the wall-clock span."""
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return sum(int(r["commands"]) for r in results) / span


def fresh(root: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def prepare_shared_db(folder: Path, db: str, journal_mode: str = "DELETE") -> None:
    conn = apsw.Connection(str(folder / f"{db}.sqlite"))
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute(TABLE_SQL)
    conn.close()


def modelled_rates(
    root: Path,
    configs: Mapping[str, tuple[str, Mapping[str, Any]]],
    reps: int,
    model: Mapping[str, int] = efs_model.MODEL_US,
) -> dict[str, dict[str, Any]]:
    """Median commands/s of single-worker runs under the latency model, per config.

    Repetitions are interleaved (A, B, A, B...) so that load from elsewhere on the machine
    falls on both sides of a comparison alike.
    """
    rates: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    wall: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(reps):
        for name, (kind, options) in configs.items():
            folder = fresh(root, kind)
            if kind == "naive":
                prepare_shared_db(folder, options.get("db", "main"))
            (result,) = run_together(
                [worker_command(kind, folder, **options)], modelled=True, model=model
            )
            rates[name].append(result["commands"] / result["seconds"])
            units = int(options.get("units", 1)) or 1
            cpu[name].append(result["cpu_seconds"] * 1000 / units)
            wall[name].append(result["seconds"] * 1000 / units)
    return {
        name: {
            "commands_per_s": statistics.median(runs),
            "runs": runs,
            "cpu_ms_per_invocation": statistics.median(cpu[name]),
            # Wall time of one writer invocation (one unit) under the model.
            "ms_per_invocation": statistics.median(wall[name]),
        }
        for name, runs in rates.items()
    }


def counted(root: Path, kind: str, units: int, **options: Any) -> dict[str, Any]:
    """Steady-state calls and EFS usage per unit (commit) and per command: N and 2N units.

    Only calls on the database files count (the worker's folder and the files directly in
    it: ``efs_model.in_folder``); ``per_commit`` holds calls per syscall and the usage
    figures of ``efs_model.parse_trace`` (data and metadata operations, bytes, metered bytes).
    """
    runs = []
    for n in (units, 2 * units):
        folder = fresh(root, f"count-{kind}")
        if kind == "naive":
            prepare_shared_db(folder, options.get("db", "main"))
        command = worker_command(kind, folder, units=n, **options)
        runs.append(
            efs_model.count_calls(
                [sys.executable, str(Path(__file__).resolve()), "--auto-go", *command[2:]],
                root,
                env=_env(),
                folder=folder,
            )
        )
    per_commit = efs_model.difference(runs[1], runs[0], units)
    per_unit_commands = int(options.get("batch", 1)) * int(options.get("per_message", 1))
    per_command = {k: v / per_unit_commands for k, v in per_commit.items()}
    return {
        "per_commit": per_commit,
        "per_command": per_command,
        "round_trips_per_commit": efs_model.round_trips(per_commit),
        "round_trips_per_command": efs_model.round_trips(per_command),
    }


def parallel(
    root: Path, kind: str, n: int, reps: int, *, shared: bool, **options: Any
) -> dict[str, Any]:
    """Median aggregate commands/s of ``n`` workers at once (one shared file, or one each)."""
    rates, locked, retries, totals = [], [], [], []
    for _ in range(reps):
        folder = fresh(root, f"{kind}-x{n}")
        commands = []
        for i in range(n):
            db = "main" if shared else f"db{i}"
            if shared and i == 0:
                prepare_shared_db(folder, db)
            commands.append(worker_command(kind, folder, db=db, **options))
        results = run_together(commands, modelled=True)
        rates.append(throughput(results))
        totals.append(sum(int(r["commands"]) for r in results))
        locked.append(sum(int(r.get("locked", 0)) for r in results))
        retries.append(sum(int(r.get("retries", 0)) for r in results))
    return {
        "commands_per_s": statistics.median(rates),
        "runs": rates,
        "locked_errors": statistics.median(locked),
        "retries": statistics.median(retries),
        "commands": statistics.median(totals),
    }


def log_bytes(root: Path, units: int, batch: int = 10) -> dict[str, Any]:
    """Bytes the writer handler logs per invocation of a settled batch, metrics off and on."""
    out: dict[str, Any] = {"batch": batch, "invocations": units}
    for name, custom in (("default", 0), ("custom_metrics", 1)):
        folder = fresh(root, f"logs-{name}")
        command = worker_command(
            "handler-logs", folder, units=units, batch=batch, custom_metrics=custom
        )
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--auto-go", *command[2:]],
            capture_output=True,
            text=True,
            env=_env(),
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            out[name] = {"error": done.stderr.strip()[-500:]}
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        out[name] = {
            "bytes_per_invocation": result["log_bytes"] / units,
            "lines_per_invocation": result["log_lines"] / units,
            "last_line": result["sample"][0][:600] if result["sample"] else "",
        }
    return out


def data_root() -> str | None:
    """Where benchmark databases live: a tmpfs when there is one.

    On a tmpfs ``fdatasync`` costs nothing of its own, so the latency model is the only
    filesystem latency and both sides of a comparison pay exactly the modelled price. On a
    local disk the disk's own flush time (which grows with the bytes written) would be added
    on top of the model.
    """
    return "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None


def run_suite(root: Path, *, quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every write-path figure of the report, both sides of each comparison in this run."""
    reps = 3 if quick else 5
    units = {1: 30 if quick else 80, 5: 12 if quick else 40, 10: 10 if quick else 30}
    packed_units = 3 if quick else 10
    duration = 3.0 if quick else 8.0
    out: dict[str, Any] = {"model": efs_model.MODEL_US, "reps": reps}

    log("write: syscall counts (strace -c, N vs 2N units)")
    counts: dict[str, Any] = {}
    for batch in (1, 5, 10):
        counts[f"efsqlite_b{batch}"] = counted(root, "efsqlite", 10, batch=batch)
        counts[f"raw_b{batch}"] = counted(root, "raw", 10, batch=batch)
    counts["naive"] = counted(root, "naive", 20, batch=1)
    counts["efsqlite_packed"] = counted(root, "efsqlite", 2, batch=10, per_message=100)
    counts["raw_packed"] = counted(root, "raw", 2, batch=10, per_message=100)
    out["counts"] = counts

    log("write: journal modes (strace -c, batch 10)")
    journal: dict[str, Any] = {}
    for mode in ("DELETE", "TRUNCATE", "PERSIST"):
        journal[mode] = {
            "efsqlite": counted(root, "efsqlite", 10, batch=10, journal_mode=mode),
            "raw": counted(root, "raw", 10, batch=10, journal_mode=mode),
        }
    modes = modelled_rates(
        root,
        {
            mode: ("efsqlite", {"batch": 10, "units": units[10], "journal_mode": mode})
            for mode in ("DELETE", "TRUNCATE", "PERSIST")
        },
        1 if quick else 3,
    )
    for mode, rate in modes.items():
        journal[mode]["efsqlite_modelled"] = rate
    out["journal_modes"] = journal

    log("write: batch sizes and packed messages under the latency model")
    configs: dict[str, tuple[str, Mapping[str, Any]]] = {
        f"{kind}_b{batch}": (kind, {"batch": batch, "units": units[batch]})
        for batch in (1, 5, 10)
        for kind in ("efsqlite", "raw")
    }
    for kind in ("efsqlite", "raw"):
        configs[f"{kind}_packed"] = (
            kind,
            {"batch": 10, "per_message": 100, "units": packed_units},
        )
    rates = modelled_rates(root, configs, reps)
    for name, rate in rates.items():
        log(f"  {name}: {rate['commands_per_s']:.0f} commands/s")
    out["rates"] = rates

    log("write: the same strace with zero delays (what tracing alone costs)")
    out["tracing_only"] = modelled_rates(
        root,
        {name: configs[name] for name in ("efsqlite_b1", "efsqlite_b10", "efsqlite_packed")},
        1 if quick else 3,
        model=efs_model.ZERO_MODEL,
    )

    log("write: naive design, N concurrent processes on one file")
    naive: dict[str, Any] = {}
    for n in (1, 2, 4, 8):
        naive[str(n)] = parallel(
            root, "naive", n, 1 if quick else 3, shared=True, duration=duration, units=0
        )
        log(f"  N={n}: {naive[str(n)]['commands_per_s']:.1f}/s")
    out["naive"] = naive
    log("write: naive design without a busy timeout (errors instead of waiting)")
    no_wait: dict[str, Any] = {}
    for n in (2, 4):
        no_wait[str(n)] = parallel(
            root,
            "naive",
            n,
            1,
            shared=True,
            duration=duration,
            units=0,
            busy_timeout_ms=0,
            retry_sleep_ms=10,
        )
        row = no_wait[str(n)]
        log(f"  N={n}: {row['commands_per_s']:.1f}/s, {row['locked_errors']:.0f} locked errors")
    out["naive_no_busy_timeout"] = no_wait

    log("write: K databases written in parallel (one group and one writer each)")
    multi: dict[str, Any] = {}
    for k in (1, 2, 4):
        multi[str(k)] = parallel(
            root, "efsqlite", k, 1 if quick else 3, shared=False, batch=10, units=units[10]
        )
        log(f"  K={k}: {multi[str(k)]['commands_per_s']:.0f}/s")
    out["databases"] = multi

    log("write: bytes the writer handler logs per invocation (batch of 10)")
    out["log_bytes"] = log_bytes(root, 10 if quick else 30)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--auto-go", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run one worker (used by the orchestrator)")
    worker.add_argument("kind", choices=sorted(WORKERS))
    worker.add_argument("--dir", required=True)
    worker.add_argument("--db", default="main")
    worker.add_argument("--batch", type=int, default=10)
    worker.add_argument("--per-message", type=int, default=1)
    worker.add_argument("--units", type=int, default=10)
    worker.add_argument("--duration", type=float, default=0.0)
    worker.add_argument("--journal-mode", default="DELETE")
    worker.add_argument("--busy-timeout-ms", type=int, default=5000)
    worker.add_argument("--retry-sleep-ms", type=int, default=0)
    worker.add_argument("--custom-metrics", type=int, default=0)
    suite = sub.add_parser("suite", help="run the write suite and print its JSON")
    suite.add_argument("--quick", action="store_true")
    suite.add_argument("--data-root", default=None, help="where the databases go")
    args = parser.parse_args(argv)
    if args.command == "worker":
        if args.auto_go:
            sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the worker
        WORKERS[args.kind](args)
        return 0
    with tempfile.TemporaryDirectory(
        prefix="efsqlite-bench-", dir=args.data_root or data_root()
    ) as tmp:
        result = run_suite(Path(tmp), quick=args.quick, log=lambda m: print(m, file=sys.stderr))
    json.dump(result, sys.stdout, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
