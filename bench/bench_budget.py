"""How much SQLite work a command's step budget buys: VM steps per second on this machine.

    python bench/bench_budget.py          # prints JSON: steps, seconds, steps per second

Counts VM steps the way the writer's work budget does (one progress-handler call per
``efsqlite.write.apply.PROGRESS_STEPS`` steps) for a recursive CTE counting to 3,000,000, and
reports the median of 5 runs. ``EFSQLITE_COMMAND_STEP_BUDGET`` divided by the rate is the
longest a command can run before it is rejected ``ResourceLimit``.
"""

from __future__ import annotations

import json
import statistics
import time

from efsqlite.core import engine
from efsqlite.write.apply import DEFAULT_STEP_BUDGET, PROGRESS_STEPS

SQL = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3000000) "
    "SELECT count(*) FROM r"
)


def one_run() -> tuple[int, float]:
    conn = engine.Connection(":memory:")
    calls = [0]

    def progress() -> bool:
        calls[0] += 1
        return False

    conn.set_progress_handler(progress, PROGRESS_STEPS)
    started = time.perf_counter()
    conn.execute(SQL).fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return calls[0] * PROGRESS_STEPS, elapsed


def main() -> None:
    runs = [one_run() for _ in range(5)]
    steps = runs[0][0]
    seconds = statistics.median(r[1] for r in runs)
    rate = steps / seconds
    print(
        json.dumps(
            {
                "sqlite_version": engine.sqlite_version(),
                "steps": steps,
                "median_seconds": round(seconds, 4),
                "steps_per_second": round(rate),
                "default_budget_seconds": round(DEFAULT_STEP_BUDGET / rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
