"""Run every benchmark, write ``bench/results/*.json``, ``report.md`` and PNG plots.

    python bench/run.py            # the full run (make bench)
    python bench/run.py --quick    # about two minutes (make bench-quick)

Every comparison's two sides come from this one run, on this machine, under one latency
model (``bench/efs_model.py``). Figures are medians of interleaved repetitions. The runner
also calls ``bench/bench_reader.py``, ``bench/bench_e2e.py`` and ``bench/bench_ledger.py``, measures
each handler's cold-start imports (``bench/bench_cold_import.py``: from the layer as
``shared/Makefile`` builds it, against the same layer without bytecode), and folds all of it
into the report. ``bench/results/usage.json`` gathers the per-operation figures the cost
model reads: EFS operations, bytes and metered bytes per commit and per query, the handlers'
milliseconds under the model and the bytes they log per invocation (:func:`usage_file`).
``bench/bench_patch.py`` measures snapshot refresh by patching on a 1 GiB database (100 MiB
with ``--quick``; the 1 GiB build is cached under ``/tmp/efsqlite-bench-patch``); its goals
join the report's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import bench_cold_import  # noqa: E402
import bench_write  # noqa: E402
import efs_model  # noqa: E402
from efsqlite.core import engine  # noqa: E402

GOALS_NOTE = "Goals are targets to report against, not assertions."


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine ---------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    strace = efs_model.strace_path()
    strace_version = ""
    if strace:
        strace_version = subprocess.run(
            [strace, "-V"], capture_output=True, text=True
        ).stdout.splitlines()[0]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": engine.sqlite_version(),
        "strace": strace_version,
        "loadavg_at_start": [round(x, 2) for x in load],
        "data_root": bench_write.data_root() or tempfile.gettempdir(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- cold start ------------------------------------------------------------------------------
_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)")


def cold_start(runs: int) -> dict[str, Any]:
    """``python -X importtime`` of each handler module: median cumulative import of ``app``."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": str(REPO / "shared"),
                "EFSQLITE_DATA_DIR": tmp,
                "AWS_DEFAULT_REGION": "us-east-1",
                "POWERTOOLS_METRICS_NAMESPACE": "efsqlite",
            }
        )
        for handler in sorted((REPO / "functions").glob("*/app.py")):
            name = handler.parent.name
            totals: list[float] = []
            walls: list[float] = []
            top: dict[str, float] = {}
            error = None
            for attempt in range(runs + 1):  # the first run warms the bytecode cache
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-X", "importtime", "-c", "import app"],
                    cwd=handler.parent,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                wall = time.perf_counter() - started
                if done.returncode != 0:
                    error = done.stderr.strip().splitlines()[-1:] or ["failed"]
                    break
                if attempt == 0:
                    continue
                modules = {}
                for line in done.stderr.splitlines():
                    match = _IMPORT_LINE.match(line)
                    if match and not match.group(3).startswith(" "):
                        modules[match.group(3)] = int(match.group(2))
                totals.append(modules.get("app", 0) / 1000)
                walls.append(wall * 1000)
                if attempt == 1:
                    heavy = sorted(
                        ((v, k) for k, v in modules.items() if "." not in k and k != "app"),
                        reverse=True,
                    )[:6]
                    top = {k: round(v / 1000, 1) for v, k in heavy}
            if error is not None:
                out[name] = {"error": error[0]}
                continue
            out[name] = {
                "import_ms_p50": statistics.median(totals),
                "process_ms_p50": statistics.median(walls),
                "runs": len(totals),
                "heaviest_top_level_imports_ms": top,
            }
    return out


# -- the other engineers' benchmarks ---------------------------------------------------------
def run_sibling(script: Path, quick: bool, out_json: Path) -> dict[str, Any]:
    """Run ``bench_reader.py``/``bench_e2e.py`` and read its JSON (file or stdout)."""
    if not script.exists():
        return {"skipped": f"{script.name} is not in this checkout"}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "shared"), str(REPO)]))
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, env=env
    ).stdout
    command = [sys.executable, str(script)]
    if quick and "--quick" in help_text:
        command.append("--quick")
    for flag in ("--json", "--output", "--out"):
        if flag in help_text:
            command += [flag, str(out_json)]
            break
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-800:], "command": " ".join(command[1:])}
    data: Any = None
    if out_json.exists():
        try:
            data = json.loads(out_json.read_text())
        except ValueError:
            data = None
    if data is None:
        text = done.stdout.strip()
        start = text.find("{")
        try:
            data = json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            data = None
    if data is None:
        return {"error": "no JSON output", "stdout": done.stdout[-800:]}
    shown = " ".join(["python", str(script.relative_to(REPO)), *command[2:]])
    return {"command": shown, "seconds": elapsed, "result": data, "stdout": done.stdout}


# -- goals -----------------------------------------------------------------------------------
def goals(
    write: Mapping[str, Any], reader: Mapping[str, Any], cold: Mapping[str, Any]
) -> list[dict[str, Any]]:
    rates, counts = write["rates"], write["counts"]
    rate = {k: v["commands_per_s"] for k, v in rates.items()}
    naive4 = write["naive"]["4"]["commands_per_s"]
    k1 = write["databases"]["1"]["commands_per_s"]
    k4 = write["databases"]["4"]["commands_per_s"]
    eff_rt = counts["efsqlite_b10"]["round_trips_per_commit"]
    raw_rt = counts["raw_b10"]["round_trips_per_commit"]
    rows = [
        ("fdatasync per command at batch 10", "<= 0.5",
         counts["efsqlite_b10"]["per_command"]["fdatasync"], lambda v: v <= 0.5, "{:.2f}"),
        ("round trips per commit vs raw SQLite (batch 10)", "<= 1.10x",
         eff_rt / raw_rt, lambda v: v <= 1.10, "{:.2f}x"),
        ("batch-10 throughput vs raw SQLite (model)", ">= 0.9x",
         rate["efsqlite_b10"] / rate["raw_b10"], lambda v: v >= 0.9, "{:.2f}x"),
        ("batch-10 throughput vs naive design at N=4 (model)", ">= 10x",
         rate["efsqlite_b10"] / naive4, lambda v: v >= 10, "{:.1f}x"),
        ("K=4 databases vs K=1 (model)", ">= 3x", k4 / k1, lambda v: v >= 3, "{:.2f}x"),
        ("packed commands/s on one database (model)", ">= 10,000",
         rate["efsqlite_packed"], lambda v: v >= 10_000, "{:,.0f}"),
        ("packed throughput vs raw SQLite packed (model)", ">= 0.5x",
         rate["efsqlite_packed"] / rate["raw_packed"], lambda v: v >= 0.5, "{:.2f}x"),
    ]  # fmt: skip
    out = [
        {"goal": g, "target": t, "measured": fmt.format(v), "value": v, "met": bool(ok(v))}
        for g, t, v, ok, fmt in rows
    ]
    overhead = _reader_overhead(reader)
    if overhead is not None:
        out.append(
            {
                "goal": "reader handler overhead p50, snapshot mode",
                "target": "<= 100 us",
                "measured": f"{overhead:.0f} us",
                "value": overhead,
                "met": overhead <= 100,
            }
        )
    out += cold.get("result", {}).get("goals", [])
    return out


def _reader_overhead(reader: Mapping[str, Any]) -> float | None:
    """Find the snapshot-mode p50 handler overhead (µs) in bench_reader's JSON, if it gives it."""
    found: list[tuple[str, float]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{path}.{key}".lower())
        elif (
            isinstance(node, int | float)
            and "overhead" in path
            and "snapshot" in path
            and ("p50" in path or "median" in path)
        ):
            found.append((path, float(node) * (1000 if path.endswith("_ms") else 1)))

    walk(reader.get("result", {}), "")
    exact = [v for p, v in found if p.endswith(".snapshot.overhead_p50_us")]
    return exact[0] if exact else (found[0][1] if found else None)


# -- usage.json ------------------------------------------------------------------------------
def usage_file(results: Mapping[str, Any]) -> dict[str, Any]:
    """Per operation, steady state, from this run; None where a figure was not measured.

    ``modelled_ms`` is the wall time per operation under the model: per writer invocation
    applying the batch (``Writer.handle_event``, median of the repetitions), per query the
    median latency of the reader's handler. ``log_bytes`` count what our handlers print;
    Lambda's own START/END/REPORT lines are not included.
    """
    w = results["write"]

    def commit(key: str) -> dict[str, Any] | None:
        counts = w.get("counts", {}).get(key)
        if counts is None:
            return None
        rate = w.get("rates", {}).get(key)
        per_commit = counts["per_commit"]
        return {
            **efs_model.usage_summary(per_commit),
            # Elastic bills reads and writes at different rates; metadata counts as reads.
            "metered_read_bytes": per_commit.get("metered_read_bytes", 0.0)
            + per_commit.get("metered_metadata_bytes", 0.0),
            "metered_write_bytes": per_commit.get("metered_write_bytes", 0.0),
            "modelled_ms": rate["ms_per_invocation"] if rate else None,
        }

    reader = results.get("reader", {}).get("result", {}).get("usage") or {}
    query = reader.get("query") or dict.fromkeys(
        ("direct", "snapshot", "direct_after_write", "snapshot_refresh_per_mb")
    )
    writer_logs = w.get("log_bytes", {}).get("default", {})
    return _rounded(
        {
            "measured_at": results["machine"]["date_utc"][:10],
            "command": results["command"],
            "model": efs_model.describe_model(),
            "commit": {"1": commit("efsqlite_b1"), "10": commit("efsqlite_b10")},
            "query": query,
            "log_bytes": {
                "writer_per_invocation": writer_logs.get("bytes_per_invocation"),
                "reader_per_invocation": reader.get("reader_log_bytes_per_invocation"),
            },
        }
    )


def _rounded(node: Any) -> Any:
    """Floats to 3 decimals (the counts are exact; the times are not that precise)."""
    if isinstance(node, dict):
        return {key: _rounded(value) for key, value in node.items()}
    return round(node, 3) if isinstance(node, float) else node


def _usage_lines(results: Mapping[str, Any], usage: Mapping[str, Any]) -> list[str]:
    w = results["write"]
    kib = 1024
    lines = [
        "",
        "## EFS usage per operation (bench/results/usage.json)",
        "",
        "Calls on the database files only (each `.sqlite`, its `-journal` and their folder), "
        "steady state (runs of N and 2N operations). Metered: EFS Elastic's minimums, "
        "max(bytes, 32 KiB) per data operation (`pread64`, `pwrite64`) and 4 KiB per metadata "
        "operation (`openat`, `fcntl`, `unlink`, `fsync`, `fdatasync`, `ftruncate`), per "
        "syscall. The NFS client may merge calls into fewer operations, so the metered figure "
        "is an upper bound and the bytes a lower bound; 'coalesced' estimates the writes if "
        "each contiguous range written between two syncs or locks went out as one WRITE.",
        "",
        "| operation | round trips | pread64 | data ops | metadata ops | bytes | metered KiB | "
        "write KiB metered, coalesced estimate | ms under the model |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    counts, rates = w["counts"], w["rates"]
    for key, label in (
        ("efsqlite_b1", "commit, batch of 1 command"),
        ("efsqlite_b10", "commit, batch of 10 commands"),
        ("efsqlite_packed", "commit, packed 10 x 100 commands"),
    ):
        pc = counts[key]["per_commit"]
        lines.append(
            f"| {label} | {efs_model.round_trips(pc):.1f} | {pc['pread64']:.1f} | "
            f"{pc['data_ops']:.1f} | {pc['metadata_ops']:.1f} | {pc['bytes']:,.0f} | "
            f"{pc['metered_bytes'] / kib:,.0f} | "
            f"{pc['metered_write_bytes_coalesced'] / kib:,.0f} | "
            f"{rates[key]['ms_per_invocation']:.1f} |"
        )
    tracing = w.get("tracing_only", {})
    if tracing:
        shown = ", ".join(
            f"{key.removeprefix('efsqlite_')} {row['ms_per_invocation']:.1f} ms"
            for key, row in tracing.items()
        )
        lines_after = [
            "",
            "The same strace stopping the same calls with zero delays (what tracing alone "
            "costs; part of it overlaps the delays in the modelled times) takes per commit: "
            f"{shown}.",
        ]
    else:
        lines_after = []
    for name, row in (usage.get("query") or {}).items():
        if not row or name == "snapshot_refresh_per_mb":
            continue
        lines.append(
            f"| query, {name.replace('_', ' ')} | {row['round_trips']:.2f} | | "
            f"{row['data_ops']:.2f} | {row['metadata_ops']:.2f} | {row['bytes']:,.0f} | "
            f"{row['metered_bytes'] / kib:,.1f} | | {row['modelled_ms']:.3f} |"
        )
    lines += lines_after
    per_mb = (usage.get("query") or {}).get("snapshot_refresh_per_mb")
    if per_mb:
        lines += [
            "",
            f"A snapshot refresh costs {per_mb['metered_bytes'] / 1e6:.2f} MB metered and "
            f"{per_mb['modelled_ms']:.0f} ms under the model per MB (10^6 bytes) of database.",
        ]
    logs = usage["log_bytes"]
    wl = w.get("log_bytes", {})
    custom = wl.get("custom_metrics", {}).get("bytes_per_invocation")
    if logs["writer_per_invocation"] is not None:
        lines += [
            "",
            f"Logged per invocation by our handlers: writer {logs['writer_per_invocation']:.0f} "
            f"bytes for a settled batch of {wl.get('batch')} (powertools JSON, "
            "POWERTOOLS_METRICS_DISABLED as the template's default"
            + (f"; {custom:.0f} bytes with CustomMetrics=true" if custom is not None else "")
            + "), reader "
            + (
                f"{logs['reader_per_invocation']:.0f} bytes"
                if logs["reader_per_invocation"] is not None
                else "not measured"
            )
            + " for a successful query. Lambda's own START/END/REPORT lines are not included.",
        ]
    return lines


# -- plots -----------------------------------------------------------------------------------
def plots(write: Mapping[str, Any], folder: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rate = {k: v["commands_per_s"] for k, v in write["rates"].items()}
    made = []

    fig, ax = plt.subplots(figsize=(6, 4))
    batches = [1, 5, 10]
    ax.plot(batches, [rate[f"raw_b{b}"] for b in batches], "o-", label="raw SQLite")
    ax.plot(batches, [rate[f"efsqlite_b{b}"] for b in batches], "s-", label="efsqlite writer")
    naive = write["naive"]
    ax.axhline(naive["1"]["commands_per_s"], color="grey", ls="--", label="naive, N=1")
    ax.set_xlabel("records per invocation (batch size)")
    ax.set_ylabel("commands/s under the EFS model")
    ax.set_title("Write throughput by batch size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "batch_size.png", dpi=110)
    made.append("batch_size.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [1, 2, 4, 8]
    ax.plot(ns, [naive[str(n)]["commands_per_s"] for n in ns], "o-", label="naive: N processes")
    ax.axhline(rate["efsqlite_b10"], color="C1", ls="-", label="efsqlite, batch 10, 1 writer")
    ax.set_xlabel("concurrent writer processes on one file (N)")
    ax.set_ylabel("commands/s under the EFS model")
    ax.set_yscale("log")
    ax.set_title("Contention: the naive design does not scale")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "naive.png", dpi=110)
    made.append("naive.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [1, 2, 4]
    dbs = write["databases"]
    ax.bar([str(k) for k in ks], [dbs[str(k)]["commands_per_s"] for k in ks], color="C2")
    ax.set_xlabel("databases written in parallel (K), batch 10")
    ax.set_ylabel("total commands/s under the EFS model")
    ax.set_title("Scaling out across databases")
    fig.tight_layout()
    fig.savefig(folder / "databases.png", dpi=110)
    made.append("databases.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    counts = write["counts"]
    names = ["naive", "raw_b1", "efsqlite_b1", "raw_b10", "efsqlite_b10"]
    names += ["raw_packed", "efsqlite_packed"]
    bottom = [0.0] * len(names)
    for call in efs_model.ROUND_TRIPS:
        values = [counts[n]["per_command"][call] for n in names]
        if any(values):
            ax.bar(names, values, bottom=bottom, label=call)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("round-trip syscalls per command")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title("Filesystem round trips per command")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "syscalls.png", dpi=110)
    made.append("syscalls.png")
    plt.close(fig)
    return made


# -- report ----------------------------------------------------------------------------------
def _f(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def report(
    results: Mapping[str, Any], images: list[str], usage: Mapping[str, Any] | None = None
) -> str:
    m, w = results["machine"], results["write"]
    rate = {k: v["commands_per_s"] for k, v in w["rates"].items()}
    counts = w["counts"]
    lines = [
        "# efsqlite benchmark report",
        "",
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). {GOALS_NOTE}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}, {m['strace']}; load average at start {m['loadavg_at_start']}; "
        f"databases on {m['data_root']}.",
        "",
        f"EFS latency model (strace delay injection): {efs_model.describe_model()}. "
        f"Medians of {w['reps']} interleaved runs.",
        "",
        "## Goals",
        "",
        "| goal | target | measured | met |",
        "|---|---|---|---|",
    ]
    for g in results["goals"]:
        met = "yes" if g["met"] else "NO"
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {met} |")
    lines += [
        "",
        "## Write path under the model",
        "",
        "| design | commands/s | fdatasync/cmd | fcntl/cmd | openat/cmd | unlink/cmd | "
        "pread64/commit | round trips/commit | pwrite64/commit | CPU ms/invocation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in [
        ("efsqlite_b1", "efsqlite, batch 1"),
        ("raw_b1", "raw SQLite, batch 1"),
        ("efsqlite_b5", "efsqlite, batch 5"),
        ("raw_b5", "raw SQLite, batch 5"),
        ("efsqlite_b10", "efsqlite, batch 10"),
        ("raw_b10", "raw SQLite, batch 10"),
        ("efsqlite_packed", "efsqlite, packed 10 x 100"),
        ("raw_packed", "raw SQLite, same 1,000 statements"),
    ]:
        c = counts[key]
        pc = c["per_command"]
        lines.append(
            f"| {label} | {_f(rate[key])} | {pc['fdatasync']:.3f} | {pc['fcntl']:.3f} | "
            f"{pc['openat']:.3f} | {pc['unlink']:.3f} | {c['per_commit']['pread64']:.1f} | "
            f"{c['round_trips_per_commit']:.1f} | "
            f"{c['per_commit']['pwrite64']:.1f} | {w['rates'][key]['cpu_ms_per_invocation']:.2f} |"
        )
    nc = counts["naive"]["per_command"]
    lines += [
        "",
        "## The naive design (N processes open, write one command, close)",
        "",
        f"Per command at N=1: {nc['fdatasync']:.1f} fdatasync, {nc['fcntl']:.1f} fcntl, "
        f"{nc['openat']:.1f} openat, {nc['unlink']:.1f} unlink. Busy timeout 5 s (SQLite's "
        "default in Python), so contention mostly shows up as waiting, not errors.",
        "",
        "| N | commands/s | `database is locked` errors | retries | efsqlite batch 10 / naive |",
        "|---|---|---|---|---|",
    ]
    for n in ("1", "2", "4", "8"):
        row = w["naive"][n]
        lines.append(
            f"| {n} | {row['commands_per_s']:.1f} | {row['locked_errors']:.0f} | "
            f"{row['retries']:.0f} | {rate['efsqlite_b10'] / row['commands_per_s']:.1f}x |"
        )
    no_wait = w.get("naive_no_busy_timeout", {})
    if no_wait:
        lines += [
            "",
            "Without a busy timeout (each `database is locked` retried after 10 ms), the "
            "same contention shows as errors:",
            "",
            "| N | commands/s | `database is locked` errors | errors per command |",
            "|---|---|---|---|",
        ]
        for n, row in no_wait.items():
            done = row.get("commands") or 1
            lines.append(
                f"| {n} | {row['commands_per_s']:.1f} | {row['locked_errors']:.0f} | "
                f"{row['locked_errors'] / done:.2f} |"
            )
    k1 = w["databases"]["1"]["commands_per_s"]
    lines += [
        "",
        "## Several databases in parallel (efsqlite, batch 10, one writer process each)",
        "",
        "| K | total commands/s | vs K=1 |",
        "|---|---|---|",
    ]
    for k in ("1", "2", "4"):
        v = w["databases"][k]["commands_per_s"]
        lines.append(f"| {k} | {_f(v)} | {v / k1:.2f}x |")
    lines += [
        "",
        "## Journal modes (batch 10, calls per commit)",
        "",
        "| mode | side | fdatasync | fcntl | openat | unlink | ftruncate | pread64 | pwrite64 | "
        "round trips | efsqlite commands/s (model) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in w["journal_modes"].items():
        for side in ("efsqlite", "raw"):
            pc = row[side]["per_commit"]
            modelled = _f(row["efsqlite_modelled"]["commands_per_s"]) if side == "efsqlite" else ""
            lines.append(
                f"| {mode} | {side} | {pc['fdatasync']:.1f} | {pc['fcntl']:.1f} | "
                f"{pc['openat']:.1f} | {pc['unlink']:.1f} | {pc['ftruncate']:.1f} | "
                f"{pc['pread64']:.1f} | {pc['pwrite64']:.1f} | "
                f"{row[side]['round_trips_per_commit']:.1f} | {modelled} |"
            )
    if usage is not None:
        lines += _usage_lines(results, usage)
    cold = results["cold_import"]
    lines += ["", "## Cold start from the built layer (bench/bench_cold_import.py)", ""]
    if "result" in cold:
        lines += [f"From `{cold['command']}` ({cold['seconds']:.0f} s):", ""]
        lines += [bench_cold_import.markdown(cold["result"])]
    else:
        lines.append(f"Not measured: {cold.get('skipped') or cold.get('error')}")
    lines += ["", "## Cold start in the development venv (python -X importtime, median)", ""]
    lines += ["| handler | import of app (ms) | whole process (ms) | heaviest imports (ms) |"]
    lines += ["|---|---|---|---|"]
    for name, row in results["cold_start"].items():
        if "error" in row:
            lines.append(f"| {name} | error: {row['error']} | | |")
        else:
            heavy = ", ".join(f"{k} {v}" for k, v in row["heaviest_top_level_imports_ms"].items())
            lines.append(
                f"| {name} | {row['import_ms_p50']:.0f} | {row['process_ms_p50']:.0f} | {heavy} |"
            )
    for key, title in (
        ("reader", "Read path"),
        ("patch", "Snapshot refresh by patching"),
        ("e2e", "End to end through the local stack"),
    ):
        section = results[key]
        lines += ["", f"## {title}", ""]
        if "result" in section:
            lines += [f"From `{section['command']}` ({section['seconds']:.0f} s):", ""]
            printed = section.get("stdout", "")
            if "|" in printed:
                # Their headings sit one level below this report's sections.
                lines += [
                    "#" + line if line.startswith("## ") else line
                    for line in printed.strip().splitlines()
                ]
            else:
                lines += ["```json", json.dumps(section["result"], indent=2)[:6000], "```"]
        else:
            lines.append(f"Not measured: {section.get('skipped') or section.get('error')}")
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, about two minutes")
    parser.add_argument("--out", default=str(HERE / "results"), help="results folder")
    parser.add_argument("--skip-siblings", action="store_true", help="no reader/e2e bench")
    args = parser.parse_args(argv)
    if efs_model.strace_path() is None:
        print("strace is required (apt-get install strace)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": "python bench/run.py" + (" --quick" if args.quick else ""),
        "machine": machine(),
    }
    log(f"machine: {results['machine']}")
    with tempfile.TemporaryDirectory(prefix="efsqlite-bench-", dir=bench_write.data_root()) as t:
        results["write"] = bench_write.run_suite(Path(t), quick=args.quick, log=log)
    (out / "write.json").write_text(json.dumps(results["write"], indent=2))
    log("cold start")
    results["cold_start"] = cold_start(5 if args.quick else 11)
    (out / "coldstart.json").write_text(json.dumps(results["cold_start"], indent=2))
    log("cold start from the built layer")
    results["cold_import"] = run_sibling(
        HERE / "bench_cold_import.py", args.quick, out / "cold_import.json"
    )
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("reader", lambda: run_sibling(HERE / "bench_reader.py", args.quick, out / "reader.json")),
        ("e2e", lambda: run_sibling(HERE / "bench_e2e.py", args.quick, out / "e2e.json")),
        ("ledger", lambda: run_sibling(HERE / "bench_ledger.py", args.quick, out / "ledger.json")),
        ("patch", lambda: run_sibling(HERE / "bench_patch.py", args.quick, out / "patch.json")),
    ]
    for name, step in steps:
        if args.skip_siblings:
            results[name] = {"skipped": "--skip-siblings"}
            continue
        log(f"{name} benchmark")
        results[name] = step()
    (out / "ledger.json").write_text(json.dumps(results["ledger"], indent=2))
    results["goals"] = goals(results["write"], results["reader"], results["cold_import"])
    results["goals"] += results["patch"].get("result", {}).get("goals", [])
    results["seconds"] = time.monotonic() - started
    (out / "results.json").write_text(json.dumps(results, indent=2))
    usage = usage_file(results)
    (out / "usage.json").write_text(json.dumps(usage, indent=1) + "\n")
    images = plots(results["write"], out)
    (out / "report.md").write_text(report(results, images, usage))
    log(f"wrote {out / 'report.md'} in {results['seconds']:.0f} s")
    for goal in results["goals"]:
        mark = "met " if goal["met"] else "MISS"
        log(f"{mark} {goal['goal']}: {goal['measured']} (target {goal['target']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
