"""Real processes for the reader's concurrency and crash tests: a writer and readers.

Run as ``python -m tests.support.reader_procs writer <root> <count> <seed>``: a real Writer
applying ``count`` transfer commands (sum invariant kept) through Lambda-shaped SQS events.
The reader side runs in ``multiprocessing`` workers through :func:`reader_loop`.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.reader_db import (
    ACCOUNTS,
    make_reader,
    make_writer,
    transfer_statements,
    write,
)

_last_sequence = 0


def later_sequence_number() -> str:
    """A sequence number above any earlier one, across processes (SQS's only grow)."""
    global _last_sequence
    _last_sequence = max(time.time_ns() * 1000, _last_sequence + 1)
    return str(_last_sequence)


def run_writer(root: Path, count: int, seed: int, batch: int = 1) -> None:
    """Apply ``count`` transfers in events of ``batch`` records, as the writer Lambda would."""
    from tests.support.events import sqs_event, sqs_record

    rng = random.Random(seed)
    writer = make_writer(root)
    done = 0
    while done < count:
        records = []
        for _ in range(min(batch, count - done)):
            source, target = rng.sample(range(ACCOUNTS), 2)
            body = {
                "v": 1,
                "id": f"t-{seed}-{done}",
                "db": "main",
                "statements": [
                    {"sql": sql, "params": params}
                    for sql, params in transfer_statements(source, target, rng.randint(1, 50))
                ],
            }
            records.append(sqs_record(body, sequence_number=later_sequence_number()))
            done += 1
        result = writer.handle_event(sqs_event(*records))
        assert not result.failed_message_ids(), result.batches
    writer.close()


def touch_writer(root: Path) -> None:
    """One writer run that applies nothing new: opening its connection rolls back a hot journal."""
    writer = make_writer(root)
    write(writer, [("SELECT 1", [])], sequence_number=later_sequence_number())
    writer.close()


def reader_loop(
    root: str, mode: str, max_calls: int, max_seconds: float, ready: Any, stop: Any, out: Any
) -> None:
    """Query the sum invariant until ``stop`` (or count or time runs out), then once more.

    Sets ``ready`` after its first answer, so the test starts the writer only when every
    reader is already reading. Puts the summary of every answer on ``out``.
    """
    reader = make_reader(Path(root), read_mode=mode)
    answers: list[dict[str, Any]] = []
    stop_at = time.monotonic() + max_seconds
    calls = 0
    while True:
        stopping = stop.is_set() or calls >= max_calls or time.monotonic() >= stop_at
        calls += 1
        answer = reader.handle(
            {"db": "main", "sql": "SELECT count(*), sum(balance), min(balance) FROM accounts"}
        )
        if "error" in answer:
            answers.append({"error": answer["error"]["type"]})
        else:
            count, total, _low = answer["rows"][0]
            position, stale = answer["position"], answer["stale"]
            answers.append({"count": count, "sum": total, "position": position, "stale": stale})
        ready.set()
        if stopping:
            break
    reader.close()
    out.put(answers)


if __name__ == "__main__":
    command, root_arg = sys.argv[1], Path(sys.argv[2])
    if command == "writer":
        batch = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        run_writer(root_arg, int(sys.argv[3]), int(sys.argv[4]), batch)
    elif command == "touch":
        touch_writer(root_arg)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps({"ok": True}))
