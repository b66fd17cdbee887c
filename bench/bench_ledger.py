"""Bytes the ledger adds to a database per applied command (the cost model's ledger storage).

    python bench/bench_ledger.py          # prints JSON: bytes per command, how measured

The real Writer applies commands whose ids are UUIDs (36 characters, what most producers
send) in batches of 10 to a real SQLite file; the figure is the file's growth over the second
run of commands divided by their number, after a first run has filled the first pages. Each
command updates one existing row, so the growth is the ledger's alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "shared"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from efsqlite.write.settings import WriterSettings  # noqa: E402
from efsqlite.write.writer import Writer  # noqa: E402

from tests.support.events import sqs_event, sqs_record  # noqa: E402

BATCH = 10


def measure(commands: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        root = Path(tmp)
        migrations, data = root / "migrations", root / "data"
        migrations.mkdir()
        data.mkdir()
        (migrations / "0001_init.sql").write_text(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x');"
        )
        settings = WriterSettings.from_env(
            {
                "EFSQLITE_DATA_DIR": str(data),
                "EFSQLITE_DATABASES": "main",
                "EFSQLITE_MIGRATIONS_DIR": str(migrations),
            }
        )
        writer = Writer(settings)
        statement = {"sql": "UPDATE t SET v = ? WHERE id = 1", "params": ["y"]}

        def apply(count: int) -> None:
            for _ in range(0, count, BATCH):
                records = [
                    sqs_record(
                        {"v": 1, "id": str(uuid.uuid4()), "db": "main", "statements": [statement]}
                    )
                    for _ in range(BATCH)
                ]
                writer.handle_event(sqs_event(*records))

        apply(1000)
        path = data / "main.sqlite"
        before = path.stat().st_size
        apply(commands)
        after = path.stat().st_size
        writer.close()
    return {
        "ledger_bytes_per_command": round((after - before) / commands, 1),
        "commands": commands,
        "id_chars": 36,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 commands instead of 20,000")
    args = parser.parse_args(argv)
    print(json.dumps(measure(5_000 if args.quick else 20_000), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
