"""A real writer process for the fault tests: the real :class:`Writer` on a real file.

It reads Lambda-shaped SQS events from stdin, one JSON document per line, hands each to
``Writer.handle_event`` exactly as the writer Lambda does, and answers each with one line on
stdout: the ``batchItemFailures`` response. A line on stdout is the "Lambda returned" moment;
the driver acknowledges (deletes) a record only after it has read that line. A process killed
before writing the line has acknowledged nothing of that event, as in Lambda.

Usage: ``python writer_child.py DATA_DIR MIGRATIONS_DIR [JOURNAL_MODE]``
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from efsqlite.write.settings import WriterSettings
    from efsqlite.write.writer import Writer

    data_dir, migrations_dir = Path(argv[1]), Path(argv[2])
    journal_mode = argv[3] if len(argv) > 3 else "DELETE"
    writer = Writer(
        WriterSettings(
            data_dir=data_dir,
            migrations_dir=migrations_dir,
            journal_mode=journal_mode,  # type: ignore[arg-type]
            databases="*",
        )
    )
    os.write(1, b'{"ready": true}\n')
    for line in sys.stdin:
        if not line.strip():
            continue
        result = writer.handle_event(json.loads(line))
        response: dict[str, object] = dict(result.response())
        # Not part of Lambda's answer: lets a test see why a batch failed.
        response["failure_types"] = [b.failure_type for b in result.batches if b.failure_type]
        # One write per answer, so a kill never leaves half an answer behind.
        os.write(1, (json.dumps(response) + "\n").encode())
    writer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
