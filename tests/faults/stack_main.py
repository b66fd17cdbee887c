"""``efsqlite dev`` as ``python -m efsqlite dev`` runs it, noting each reader snapshot refresh.

The local stack's readers run inside its process, so a test cannot ask them whether their
refreshes patched. This entry point wraps ``DatabaseSnapshot.refresh`` to append one JSON
line per refresh to the file named by ``EFSQLITE_TEST_REFRESH_LOG``: the database, whether
it patched, the pages it read, and why it copied the whole file when it did, or why it
failed (the reader then serves its last good snapshot, marked stale). It changes nothing
else: the refresh itself is the product's, and the line is one ``write`` with ``O_APPEND``
(no sync), so a SIGKILL leaves at worst a last line cut short.

Usage: ``python stack_main.py dev [ARGS...]``
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any


def record_refreshes(path: str) -> None:
    from efsqlite.read.snapshot import DatabaseSnapshot

    refresh = DatabaseSnapshot.refresh

    def note(line: dict[str, Any]) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)

    def recorded(self: DatabaseSnapshot, deadline: float = math.inf) -> Any:
        try:
            snapshot = refresh(self, deadline)
        except Exception as exc:
            note({"db": self.db, "failed": f"{type(exc).__name__}: {exc}"})
            raise
        build = self.last_refresh
        note(
            {
                "db": self.db,
                "patched": bool(build and build.patched),
                "pages_read": build.pages_read if build else None,
                "reason": None if build and build.patched else self.last_full_copy_reason,
            }
        )
        return snapshot

    DatabaseSnapshot.refresh = recorded  # type: ignore[method-assign]


def main() -> int:
    record_refreshes(os.environ["EFSQLITE_TEST_REFRESH_LOG"])
    from efsqlite.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.argv[0] = "efsqlite"
    raise SystemExit(main())
