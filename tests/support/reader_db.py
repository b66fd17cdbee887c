"""Real databases for the reader tests, written by the real Writer, and reader event builders.

Every database here goes through ``efsqlite.write.writer.Writer.handle_event`` with
Lambda-shaped SQS FIFO events, so the reader is tested on exactly the files production writes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from efsqlite.read.reader import Reader
from efsqlite.read.settings import ReaderSettings
from efsqlite.write.settings import WriterSettings
from efsqlite.write.writer import Writer

from tests.support.events import load_event, sqs_event, sqs_record

MIGRATION = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);
CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
"""
ACCOUNTS = 10
START_BALANCE = 1000
TOTAL = ACCOUNTS * START_BALANCE


def make_writer(root: Path) -> Writer:
    """A real Writer over ``root/data`` with the accounts schema as migration 1."""
    migrations = root / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / "0001_accounts.sql").write_text(MIGRATION)
    return Writer(WriterSettings(data_dir=root / "data", migrations_dir=migrations, databases="*"))


def write(
    writer: Writer,
    statements: list[tuple[str, list[Any]]],
    *,
    db: str = "main",
    command_id: str | None = None,
    sequence_number: str | None = None,
) -> tuple[str, str]:
    """Apply one command through a Lambda-shaped SQS event; returns (command id, position)."""
    command_id = command_id or f"c-{uuid.uuid4().hex}"
    body = {
        "v": 1,
        "id": command_id,
        "db": db,
        "statements": [{"sql": sql, "params": params} for sql, params in statements],
    }
    record = sqs_record(body, group=db, sequence_number=sequence_number)
    result = writer.handle_event(sqs_event(record))
    assert not result.failed_message_ids(), result
    return command_id, record["attributes"]["SequenceNumber"]


def seed_accounts(writer: Writer, db: str = "main") -> str:
    """ACCOUNTS accounts holding START_BALANCE each; returns the position."""
    statements = [
        (
            "INSERT INTO accounts (id, name, balance) VALUES (?, ?, ?)",
            [i, f"acct-{i}", START_BALANCE],
        )
        for i in range(ACCOUNTS)
    ]
    return write(writer, statements, db=db)[1]


def transfer_statements(source: int, target: int, amount: int) -> list[tuple[str, list[Any]]]:
    return [
        ("UPDATE accounts SET balance = balance - ? WHERE id = ?", [amount, source]),
        ("UPDATE accounts SET balance = balance + ? WHERE id = ?", [amount, target]),
    ]


def reader_settings(root: Path, **overrides: Any) -> ReaderSettings:
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "snapshot_dir": root / "snapshots",
        "max_staleness_ms": 0,
    }
    values.update(overrides)
    return ReaderSettings(**values)


def make_reader(root: Path, **overrides: Any) -> Reader:
    return Reader(reader_settings(root, **overrides))


def function_url_event(
    method: str,
    path: str,
    *,
    body: object = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A Function URL event, payload format 2.0, shaped as Lambda sends it."""
    template = load_event("function_url_query")
    template["rawPath"] = path
    template["requestContext"]["http"]["method"] = method
    template["requestContext"]["http"]["path"] = path
    template["queryStringParameters"] = query
    template["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    if query is None:
        del template["queryStringParameters"]
    if body is None:
        template.pop("body", None)
        template["isBase64Encoded"] = False
    else:
        text = body if isinstance(body, str) else json.dumps(body)
        if base64_body:
            template["body"] = base64.b64encode(text.encode()).decode()
            template["isBase64Encoded"] = True
        else:
            template["body"] = text
            template["isBase64Encoded"] = False
    return template


_DIGEST_SCRIPT = """
import hashlib, json, os, sys
found = {}
for root in sys.argv[1:]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[path] = hashlib.sha256(f.read()).hexdigest()
print(json.dumps(found))
"""


def tree_digest(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` with its sha256: equal before/after means nothing changed.

    Hashes in a child process: a plain ``open()``/``close()`` of a database file in this
    process would drop the SQLite locks this process's connections hold on it.
    """
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT, *map(str, roots)],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str] = json.loads(out.stdout)
    return found
