"""A real snapshot-mode reader process for the patch tests: the reader Lambda's own handler.

Loads ``functions/reader/app.py`` (one execution environment) with ``EFSQLITE_DATA_DIR`` and
``EFSQLITE_SNAPSHOT_DIR`` from the command line, snapshot mode, patching on and no staleness
window (every query looks at the source). Then reads queries (Lambda payloads, one JSON
document per line) on stdin and answers each with one line on stdout: the handler's answer
and what the snapshot did (:func:`describe`). A kill shows as a missing line and a non-zero
exit; the answer is written with one ``write`` after the query, so a killed query never
answers.

Usage: ``python snapshot_child.py DATA_DIR SNAPSHOT_DIR``
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parents[2] / "functions" / "reader" / "app.py"


def describe(app: dict[str, Any]) -> dict[str, Any]:
    """This process's snapshot state: counters, the current copy and its folder's files."""
    reader = app["reader"]
    store = reader._store
    found: dict[str, Any] = {"owner": store.folder.name if store is not None else None}
    if store is not None:
        found["files"] = sorted(p.name for p in store.folder.iterdir())
    for db, snap in reader._snapshots.items():
        current, last = snap.current, snap.last_refresh
        found[db] = {
            "refreshes": snap.refreshes,
            "patches": snap.patches,
            "full_copy_reason": snap.last_full_copy_reason,
            "patched": last.patched if last is not None else None,
            "pages_read": last.pages_read if last is not None else None,
            "path": str(current.path) if current is not None else None,
            "counter": current.image.counter if current is not None else None,
            "page_size": current.image.page_size if current is not None else None,
            "page_count": current.image.page_count if current is not None else None,
        }
    return found


def main(argv: list[str]) -> int:
    os.environ.update(
        {
            "EFSQLITE_DATA_DIR": argv[1],
            "EFSQLITE_SNAPSHOT_DIR": argv[2],
            "EFSQLITE_READ_MODE": "snapshot",
            "EFSQLITE_SNAPSHOT_PATCH": "true",
            "EFSQLITE_MAX_STALENESS_MS": "0",
        }
    )
    app = runpy.run_path(str(APP))
    os.write(1, b'{"ready": true}\n')
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = app["lambda_handler"](json.loads(line), None)
        # One write per answer: a kill never leaves half an answer behind.
        os.write(1, (json.dumps({"answer": answer, "snapshot": describe(app)}) + "\n").encode())
    app["reader"].close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
