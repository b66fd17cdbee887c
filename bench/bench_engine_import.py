"""Cold-start cost of the SQLite binding: the pinned build (apsw) against Python's sqlite3.

    python bench/bench_engine_import.py      # prints JSON: median import time, modules, size

Each sample is a fresh interpreter importing one binding with ``-X importtime``; the figure is
the binding's cumulative import time (microseconds), median of 21 runs, alternating the two so
that load from elsewhere falls on both. Also reported: modules each import pulls in (a count
that does not drift) and the size of apsw's extension, which carries all of SQLite (the
stdlib's ``_sqlite3`` links the system's libsqlite3 instead, so its size says nothing).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

RUNS = 21
BINDINGS = {"apsw": "apsw", "stdlib sqlite3": "sqlite3"}


def import_us(module: str) -> int:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    # The last line is the top-level module: "import time: self | cumulative | name".
    for line in reversed(done.stderr.splitlines()):
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == module:
            return int(fields[1])
    raise RuntimeError(f"no import time for {module}: {done.stderr[-500:]}")


def modules_pulled(module: str) -> int:
    code = (
        f"import sys; before = set(sys.modules); import {module};"
        "print(len(set(sys.modules) - before))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout)


def apsw_library_bytes() -> int:
    import apsw

    return Path(str(apsw.__file__)).stat().st_size


def main() -> None:
    samples: dict[str, list[int]] = {name: [] for name in BINDINGS}
    for _ in range(RUNS):
        for name, module in BINDINGS.items():
            samples[name].append(import_us(module))
    report: dict[str, object] = {
        name: {
            "import_us_median": int(statistics.median(samples[name])),
            "modules": modules_pulled(module),
        }
        for name, module in BINDINGS.items()
    }
    report["apsw_library_bytes"] = apsw_library_bytes()
    report["python"] = {"version": sys.version.split()[0], "runs": RUNS}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
