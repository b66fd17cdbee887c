"""Cold imports of each handler, measured from the built artefacts the way Lambda runs them.

    python bench/bench_cold_import.py                 # 21 interleaved runs (make bench)
    python bench/bench_cold_import.py --quick         # 7 (make bench-quick)
    python bench/bench_cold_import.py --json out.json
    python bench/bench_cold_import.py --importtime writer   # which modules dominate

The layer is built by the deploy recipe itself (``make -C shared build-SharedLayer``) into a
temporary folder, for this machine's architecture (``LAYER_ARCH``): an x86_64 machine cannot
load the arm64 extensions the template deploys, and the pure-Python bytecode is the same on
both. Two copies are staged read-only, as ``/opt`` is: the layer as built (with its
``__pycache__``) and the baseline, the same files with every ``__pycache__`` removed (what
the layer shipped before). Each handler's folder is copied as ``sam build`` ships it, source
only, like ``/var/task``.

Each run is a fresh python3.13 (``-I -S -B``: no environment, no site-packages, never writing
bytecode) whose ``sys.path`` is the function folder, the layer's ``python/`` and the
interpreter's stdlib, and nothing else; the environment holds only what the handler reads.
It times ``import app`` (``time.perf_counter`` around it), the time from just before the
process was spawned to the end of that import (``ready``: interpreter start plus imports, what
a cold start waits for), and the whole process. Runs alternate writer/reader and
built/baseline (the order flips every round), after one untimed warm-up round; figures are
medians. Two counts that do not drift come with them: the modules loaded (``len(sys.modules)``)
and the ``.py`` files compiled during the import (every call of the import system's
``SourceLoader.source_to_code``, which runs only when no usable bytecode is found), by where
they live.

The goals (the issue's, for this machine) apply to ``ready`` with the layer as built: writer
<= 300 ms, reader <= 120 ms. Goals are targets to report against, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUNS = 21
QUICK_RUNS = 7
HANDLERS = ("writer", "reader")
#: ``ready`` medians the issue asks for, in ms, with the layer as built.
GOALS_MS = {"writer": 300.0, "reader": 120.0}
#: "built": the layer as shared/Makefile builds it; "baseline": its __pycache__ removed.
VARIANTS = ("built", "baseline")
#: Lambda's names for machine architectures, as pip's platform tags spell them.
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}

#: Runs in the child: argv = [task folder, layer python folder, spawn time (monotonic ns)].
CHILD = r"""
import sys
task, layer, spawned_ns = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path[:0] = [task, layer]
import _frozen_importlib_external as external, json, time
compiled = []
_to_code = external.SourceLoader.source_to_code
def _counting(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return _to_code(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = _counting
before = len(sys.modules)
started = time.perf_counter()
import app
import_s = time.perf_counter() - started
ready_ns = time.monotonic_ns()
where = {"task": 0, "layer": 0, "stdlib": 0}
for path in compiled:
    where["task" if path.startswith(task) else "layer" if path.startswith(layer) else "stdlib"] += 1
print(json.dumps({
    "import_ms": import_s * 1000,
    "ready_ms": (ready_ns - spawned_ns) / 1e6,
    "modules": len(sys.modules),
    "modules_before": before,
    "compiled": where,
    "path": sys.path,
    "dont_write_bytecode": sys.dont_write_bytecode,
}))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def find_python313() -> str:
    """The runtime's interpreter, from scripts/find-python; it must be 3.13."""
    found = subprocess.run(
        [str(REPO / "scripts" / "find-python")], capture_output=True, text=True, check=True
    ).stdout.strip()
    version = subprocess.run(
        [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if version != "3.13":
        raise SystemExit(f"needs python3.13 (the Lambda runtime); scripts/find-python gave {found}")
    return found


def layer_arch() -> str:
    machine = platform.machine().lower()
    if machine not in ARCHES:
        raise SystemExit(f"no Lambda architecture for this machine ({machine})")
    return ARCHES[machine]


def build_layer(python: str, into: Path, arch: str) -> Path:
    """Build the layer with the deploy recipe; returns its ``python/`` folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [
            "make",
            "-C",
            str(REPO / "shared"),
            "build-SharedLayer",
            f"ARTIFACTS_DIR={into}",
            f"PYTHON={python}",
            f"LAYER_ARCH={arch}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"the layer did not build:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return into / "python"


def set_writable(root: Path, writable: bool) -> None:
    """chmod a tree read-only (as Lambda's /opt and /var/task are) or back."""
    for folder, dirs, files in os.walk(root):
        for name in files:
            os.chmod(Path(folder, name), 0o644 if writable else 0o444)
        for name in dirs:
            os.chmod(Path(folder, name), 0o755 if writable else 0o555)
    os.chmod(root, 0o755 if writable else 0o555)


def count_pyc(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.pyc"))


def stage(work: Path, layer: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The read-only copies: the layer per variant, and each handler's function folder."""
    layers = {
        "built": Path(shutil.copytree(layer, work / "opt-built" / "python")),
        "baseline": Path(
            shutil.copytree(
                layer,
                work / "opt-baseline" / "python",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        ),
    }
    # A developer's run may have left bytecode in functions/: sam build ships the source only.
    tasks = {
        name: Path(
            shutil.copytree(
                REPO / "functions" / name,
                work / f"task-{name}",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        )
        for name in HANDLERS
    }
    for tree in (*layers.values(), *tasks.values()):
        set_writable(tree, False)
    return layers, tasks


def handler_env(name: str, task: Path, scratch: Path) -> dict[str, str]:
    """What the handler reads at cold start, as Lambda and the template set it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"efsqlite-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "LAMBDA_TASK_ROOT": str(task),
        "POWERTOOLS_SERVICE_NAME": f"efsqlite-{name}",
        "POWERTOOLS_METRICS_NAMESPACE": "efsqlite",
        "EFSQLITE_DATA_DIR": str(scratch / "efs"),
    }
    if name == "writer":
        env["EFSQLITE_DATABASES"] = "main"
    else:
        env["EFSQLITE_SNAPSHOT_DIR"] = str(scratch / f"snapshots-{name}")
    return env


def one_run(python: str, task: Path, layer: Path, env: dict[str, str]) -> dict[str, Any]:
    spawned_ns = time.monotonic_ns()
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", CHILD, str(task), str(layer), str(spawned_ns)],
        capture_output=True,
        text=True,
        env=env,
        cwd=task,
    )
    process_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"import app failed in {task}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["process_ms"] = process_ms
    return result


def check_isolation(sample: dict[str, Any], task: Path, layer: Path) -> None:
    """The child saw exactly the function folder, the layer and the stdlib (no site-packages)."""
    path = sample["path"]
    assert path[:2] == [str(task), str(layer)], path
    assert not any("site-packages" in entry for entry in path), path
    assert sample["dont_write_bytecode"] is True


def importtime(python: str, task: Path, layer: Path, env: dict[str, str]) -> dict[str, Any]:
    """One ``-X importtime`` run: where ``import app`` spends its time.

    ``by_package_self_ms`` sums each module's own time by top-level package (independent of
    import order); ``app_imports_cumulative_ms`` is what each of app's own imports cost with
    everything it pulled in first (the first importer of a shared dependency pays for it).
    """
    code = f"import sys; sys.path[:0] = [{str(task)!r}, {str(layer)!r}]; import app"
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=task,
    )
    line = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)")
    by_package: dict[str, int] = {}
    direct: dict[str, int] = {}
    pending: dict[str, int] = {}  # level-1 imports since the last top-level one
    total_us = 0
    for text in done.stderr.splitlines():
        match = line.match(text)
        if match is None:
            continue
        own, cumulative, indent, module = match.groups()
        level = (len(indent) - 1) // 2
        if level == 0:
            if module == "app":
                direct, total_us = pending, int(cumulative)
            pending = {}
            if module != "app":
                continue
        elif level == 1:
            pending[module] = int(cumulative)
        top = module.split(".")[0]
        by_package[top] = by_package.get(top, 0) + int(own)

    def ms(values: dict[str, int], keep: int) -> dict[str, float]:
        heaviest = sorted(values.items(), key=lambda kv: -kv[1])[:keep]
        return {k: round(v / 1000, 1) for k, v in heaviest}

    return {
        "app_cumulative_ms": round(total_us / 1000, 1),
        "by_package_self_ms": ms(by_package, 12),
        "app_imports_cumulative_ms": ms(direct, 8),
    }


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {(s["modules"], json.dumps(s["compiled"], sort_keys=True)) for s in samples}
    assert len(counts) == 1, f"counts drifted between runs: {counts}"
    return {
        "import_ms_p50": round(statistics.median(s["import_ms"] for s in samples), 1),
        "ready_ms_p50": round(statistics.median(s["ready_ms"] for s in samples), 1),
        "process_ms_p50": round(statistics.median(s["process_ms"] for s in samples), 1),
        "import_ms_min": round(min(s["import_ms"] for s in samples), 1),
        "modules": samples[0]["modules"],
        "modules_at_start": samples[0]["modules_before"],
        "compiled_at_import": samples[0]["compiled"],
        "runs": len(samples),
    }


def measure(runs: int) -> dict[str, Any]:
    python = find_python313()
    arch = layer_arch()
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="efsqlite-cold-") as tmp:
        work = Path(tmp)
        log(f"building the layer for {arch} with {python}")
        built = build_layer(python, work / "build", arch)
        layers, tasks = stage(work, built)
        pyc_before = {v: count_pyc(p) for v, p in layers.items()}
        scratch = work / "scratch"
        scratch.mkdir()
        envs = {name: handler_env(name, tasks[name], scratch) for name in HANDLERS}
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {
            (h, v): [] for h in HANDLERS for v in VARIANTS
        }
        try:
            for round_ in range(runs + 1):  # round 0 warms the page cache, untimed
                order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
                for name in HANDLERS:
                    for variant in order:
                        sample = one_run(python, tasks[name], layers[variant], envs[name])
                        check_isolation(sample, tasks[name], layers[variant])
                        if round_:
                            samples[(name, variant)].append(sample)
                log(f"round {round_}/{runs}")
            diagnosis = {
                name: importtime(python, tasks[name], layers["built"], envs[name])
                for name in HANDLERS
            }
            pyc_after = {v: count_pyc(p) for v, p in layers.items()}
            assert pyc_after == pyc_before, f"bytecode was written: {pyc_before} -> {pyc_after}"
        finally:
            for tree in (*layers.values(), *tasks.values()):
                set_writable(tree, True)
    handlers: dict[str, Any] = {}
    goals: list[dict[str, Any]] = []
    for name in HANDLERS:
        row = {v: summarise(samples[(name, v)]) for v in VARIANTS}
        built_row, base = row["built"], row["baseline"]
        goal = GOALS_MS[name]
        met = built_row["ready_ms_p50"] <= goal
        handlers[name] = {
            **row,
            "baseline_over_built_import": round(
                base["import_ms_p50"] / built_row["import_ms_p50"], 2
            ),
            "baseline_over_built_ready": round(base["ready_ms_p50"] / built_row["ready_ms_p50"], 2),
            "goal_ready_ms": goal,
            "met": met,
            "importtime_built": diagnosis[name],
        }
        goals.append(
            {
                "goal": f"{name} cold start (interpreter start to `import app` done, built layer)",
                "target": f"<= {goal:.0f} ms",
                "measured": f"{built_row['ready_ms_p50']:.0f} ms",
                "value": built_row["ready_ms_p50"],
                "met": met,
            }
        )
    return {
        "python": version,
        "interpreter": python,
        "layer_arch": arch,
        "deployed_arch": "arm64",
        "runs": runs,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "handlers": handlers,
        "goals": goals,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Python {result['python']}, layer built for {result['layer_arch']} (the template "
        f"deploys {result['deployed_arch']}), medians of {result['runs']} interleaved runs.",
        "",
        "| handler | layer | import app (ms) | start to ready (ms) | process (ms) | modules | "
        ".py compiled at import (task / layer / stdlib) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["handlers"].items():
        for variant in VARIANTS:
            v = row[variant]
            c = v["compiled_at_import"]
            lines.append(
                f"| {name} | {variant} | {v['import_ms_p50']:.0f} | {v['ready_ms_p50']:.0f} | "
                f"{v['process_ms_p50']:.0f} | {v['modules']} | "
                f"{c['task']} / {c['layer']} / {c['stdlib']} |"
            )
    lines.append("")
    for g in result["goals"]:
        lines.append(f"- {g['goal']}: {g['measured']} (target {g['target']}): "
                     + ("met" if g["met"] else "NOT met"))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs, not {RUNS}")
    parser.add_argument("--runs", type=int, help="interleaved runs per handler and layer")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    parser.add_argument(
        "--importtime",
        choices=HANDLERS,
        help="only print one -X importtime breakdown of this handler (built layer)",
    )
    args = parser.parse_args(argv)
    if args.importtime:
        python = find_python313()
        with tempfile.TemporaryDirectory(prefix="efsqlite-cold-") as tmp:
            work = Path(tmp)
            layers, tasks = stage(work, build_layer(python, work / "build", layer_arch()))
            (work / "scratch").mkdir()
            env = handler_env(args.importtime, tasks[args.importtime], work / "scratch")
            try:
                found = importtime(python, tasks[args.importtime], layers["built"], env)
            finally:
                for tree in (*layers.values(), *tasks.values()):
                    set_writable(tree, True)
        print(json.dumps(found, indent=2))
        return 0
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    result = measure(runs)
    result["command"] = " ".join(["python", "bench/bench_cold_import.py", *(argv or sys.argv[1:])])
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)
    print(markdown(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
