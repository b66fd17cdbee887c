"""A real reader process for the corrupt-file tests: the reader Lambda's own handler module.

Reads trial folders (one per line) on stdin. For each, it loads ``functions/reader/app.py``
afresh with ``EFSQLITE_DATA_DIR`` pointing at the trial (a new execution environment), sends
the queries given on the command line through ``lambda_handler``, and prints one JSON line:
the answers and the snapshot files left on disk afterwards. A crash shows as a non-zero exit.

Usage: ``python reader_child.py MODE SNAPSHOT_ROOT QUERIES_JSON``
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "functions" / "reader" / "app.py"


def main(argv: list[str]) -> int:
    mode, snapshot_root, queries = argv[1], Path(argv[2]), json.loads(argv[3])
    for line in sys.stdin:
        trial = Path(line.strip())
        snapshots = snapshot_root / trial.name
        os.environ.update(
            {
                "EFSQLITE_DATA_DIR": str(trial),
                "EFSQLITE_READ_MODE": mode,
                "EFSQLITE_SNAPSHOT_DIR": str(snapshots),
            }
        )
        app = runpy.run_path(str(APP))
        answers = [app["lambda_handler"](query, None) for query in queries]
        left = sorted(
            str(p.relative_to(snapshots))
            for p in snapshots.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")
        )
        os.write(
            1, (json.dumps({"trial": trial.name, "answers": answers, "left": left}) + "\n").encode()
        )
        app["reader"].close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
