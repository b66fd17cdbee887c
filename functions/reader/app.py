"""Reader Lambda: read-only queries and command status, by direct invoke or Function URL.

Thin by design: the rules live in ``efsqlite.read.reader``. The import path is kept lean for cold
start: no boto3, no pydantic, no powertools (its Logger alone costs about 70 ms here); the
reader logs JSON lines through stdlib ``logging``, imported only when it first logs.
"""

from __future__ import annotations

from typing import Any

from efsqlite.read.reader import Reader
from efsqlite.read.settings import ReaderSettings

settings = ReaderSettings.from_env()
reader = Reader(settings)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return reader.handle(event, context)
