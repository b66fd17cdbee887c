"""The real writer handler in a process of its own, for cases that could crash or hang it.

Reads one JSON document on stdin: ``{"events": [...], "remaining_ms": N}``. Imports
``functions/writer/app.py`` as Lambda does on a cold start (settings from ``EFSQLITE_*``
in the environment), hands it each event with a context whose remaining time is
``remaining_ms``, and prints each response as one JSON line. A crash shows as the exit
status, a hang as the driver's timeout.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

from tests.support.events import FakeLambdaContext

REPO = Path(__file__).resolve().parents[2]


class Context(FakeLambdaContext):
    """The test context, with a remaining time that runs down like Lambda's."""

    def __init__(self, remaining_ms: int) -> None:
        self._until = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._until - time.monotonic()) * 1000), 0)


def main() -> int:
    request = json.loads(sys.stdin.read())
    spec = importlib.util.spec_from_file_location("writer_app", REPO / "functions/writer/app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    for event in request["events"]:
        response = app.lambda_handler(event, Context(int(request.get("remaining_ms", 60_000))))
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
