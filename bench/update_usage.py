"""Write the cost model's measured figures (shared/efsqlite/client/usage.json) from a bench run.

    python bench/run.py            # or --quick; writes bench/results/*.json
    python bench/update_usage.py   # folds usage.json, cold_import.json and ledger.json into it

``efsqlite cost`` and ``docs/cost.md`` read only the written file, so every per-operation
figure they use traces back to the run named in its ``command`` and ``measured_at``. After
writing it, regenerate the document: ``efsqlite cost --markdown > docs/cost.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TARGET = REPO / "shared" / "efsqlite" / "client" / "usage.json"


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"{path} is not a JSON object")
    return data


def fold(results: Path) -> dict[str, Any]:
    usage = _read(results / "usage.json")
    cold = _read(results / "cold_import.json")
    ledger = _read(results / "ledger.json")
    handlers = cold.get("handlers") or cold.get("result", {}).get("handlers")
    if not handlers:
        raise SystemExit(f"{results / 'cold_import.json'} has no handlers (was it measured?)")
    usage["init_ms"] = {
        name: handlers[name]["built"]["ready_ms_p50"] for name in ("writer", "reader")
    }
    usage["ledger_bytes_per_command"] = ledger.get("ledger_bytes_per_command") or ledger.get(
        "result", {}
    ).get("ledger_bytes_per_command")
    missing = [
        key
        for key in ("measured_at", "command", "commit", "query", "log_bytes")
        if usage.get(key) is None
    ]
    if missing or usage["ledger_bytes_per_command"] is None:
        raise SystemExit(f"the run did not measure {missing or ['ledger_bytes_per_command']}")
    return usage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    usage = fold(args.results)
    TARGET.write_text(json.dumps(usage, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(
        f"wrote {TARGET.relative_to(REPO)} (measured {usage['measured_at']} by {usage['command']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
