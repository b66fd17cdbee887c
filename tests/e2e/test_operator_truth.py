"""What an operator sees when something goes wrong, through the CLI and the reader of a real
local stack: fresh failure counts, a blocked group explained, a typo'd database refused, a
removed migration named."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLE, Stack, wait_until

VISIBILITY_S = 2
#: Enough receives (about 16 s of retries) that the blocker is still pending while the test
#: checks status and a send behind it waits: with 3, a loaded machine saw it reach the DLQ
#: during that wait, and the wait rightly no longer named a blocker.
MAX_RECEIVES = 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("operator"),
        visibility_timeout=VISIBILITY_S,
        max_receive_count=MAX_RECEIVES,
        databases="main,tenant-*",
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def status_json(stack: Stack, *dbs: str) -> dict[str, Any]:
    args = [arg for db in dbs for arg in ("--db", db)]
    shown = stack.cli("status", "--json", *args)
    assert shown.returncode == 0, shown.stderr
    report: dict[str, Any] = json.loads(shown.stdout)
    return report


def send(stack: Stack, db: str, sql: str, *extra: str) -> Any:
    return stack.cli("send", "--db", db, "--sql", sql, *extra, timeout=60)


def test_a_failing_command_is_counted_fresh_and_its_blocked_group_explained(stack: Stack) -> None:
    # GIVEN a database with one applied command (so its snapshot exists and is warm)
    first = send(stack, "main", "INSERT INTO todos (id, title) VALUES ('a', 'a')", "--wait")
    assert first.returncode == 0, first.stderr
    assert status_json(stack, "main")["databases"]["main"]["pending"] == 0
    # WHEN a command that cannot apply yet is sent, then a valid one behind it
    stuck = send(stack, "main", "INSERT INTO todos (id, title) VALUES ('s', 's')", "--id",
                 "stuck-1", "--expect-schema", "9")  # fmt: skip
    assert stuck.returncode == 0, stuck.stderr
    # THEN status counts it as pending at once (the position did not move: no snapshot
    # refresh would have shown it) and names it as blocking the group, with receives left
    report = wait_until(
        lambda: (r := status_json(stack, "main"))["databases"]["main"]["blocked_by"] and r,
        timeout=30,
        what="main blocked",
    )
    main = report["databases"]["main"]
    assert main["pending"] == 1 and main["in_dlq"] == 0
    blocker = main["blocked_by"]
    assert blocker["id"] == "stuck-1" and blocker["state"] == "pending"
    assert blocker["error_type"] == "SchemaNotReady"
    assert 1 <= blocker["receive_count"] <= MAX_RECEIVES
    assert blocker["receives_left"] == MAX_RECEIVES - blocker["receive_count"]
    assert blocker["failing_since_ms"] <= blocker["last_failed_ms"]
    table = stack.cli("status", "--db", "main")
    assert "BLOCKED by stuck-1" in table.stdout, table.stdout
    assert "left before the DLQ" in table.stdout and "SchemaNotReady" in table.stdout
    # AND a valid send behind it times out with its bookmark on stdout and the cause on stderr
    behind = send(stack, "main", "INSERT INTO todos (id, title) VALUES ('b', 'b')", "--id",
                  "behind-1", "--wait", "--timeout", "2")  # fmt: skip
    assert behind.returncode == 4, behind.stderr
    bookmark = json.loads(behind.stdout)
    assert bookmark["id"] == "behind-1" and bookmark["state"] == "unknown"
    assert int(bookmark["sequence_number"]) > 0
    assert "blocked" in behind.stderr and "'stuck-1'" in behind.stderr
    assert behind.stderr.count("\n") == 1 and "Traceback" not in behind.stderr
    # AND the reader's command status carries the same facts, for it and for the one behind
    waiting = stack.invoke({"db": "main", "command_id": "behind-1"})
    assert waiting["status"] == "unknown"
    assert waiting["blocked_by"]["command_id"] == "stuck-1", waiting
    answer = stack.invoke({"db": "main", "command_id": "stuck-1"})
    assert answer["status"] == "pending", answer
    failure = answer["last_failure"]
    assert failure["type"] == "SchemaNotReady" and failure["receive_count"] >= 1
    assert failure["receives_left"] == MAX_RECEIVES - failure["receive_count"]
    # WHEN its receives run out
    wait_until(
        lambda: stack.invoke({"db": "main", "command_id": "stuck-1"})["status"] == "in_dlq",
        timeout=60,
        what="stuck-1 in the DLQ",
    )
    # THEN it is reported in the DLQ, the group moves, and nothing blocks any more
    shown = stack.cli("status", "--db", "main", "--command", "stuck-1")
    assert "in the DLQ" in shown.stdout and "efsqlite redrive" in shown.stdout, shown.stdout
    assert "retried until" not in shown.stdout
    settled = stack.cli("status", "--db", "main", "--command", "behind-1", "--json")
    wait_until(
        lambda: (
            json.loads(
                stack.cli("status", "--db", "main", "--command", "behind-1", "--json").stdout
            )["state"]
            == "applied"
        ),
        timeout=30,
        what="behind-1 applied",
    )
    main = status_json(stack, "main")["databases"]["main"]
    assert (main["pending"], main["in_dlq"], main["blocked_by"]) == (0, 1, None), settled
    # AND the Function URL answers the database's status the same way
    url = stack.endpoints["function_url"].rstrip("/") + "/databases/main"
    with urllib.request.urlopen(url, timeout=30) as response:
        over_http = json.loads(response.read())
    assert over_http["in_dlq"] == 1 and over_http["blocked_by"] is None
    assert over_http["failures"][0]["command_id"] == "stuck-1"


def test_an_undeclared_database_is_refused_without_a_file(stack: Stack) -> None:
    databases = Path(stack.endpoints["databases_dir"])
    # WHEN a command is sent to a typo of a declared database
    typo = send(stack, "mian", "INSERT INTO todos (id, title) VALUES ('t', 't')", "--wait",
                "--timeout", "2")  # fmt: skip
    # THEN the wait says why, keeps the bookmark, and no database file appears
    assert typo.returncode == 4
    assert json.loads(typo.stdout)["db"] == "mian"
    assert "'mian' does not exist" in typo.stderr and "EFSQLITE_DATABASES" in typo.stderr
    # AND the message ends in the DLQ as UnknownDatabase, never creating the file
    wait_until(
        lambda: "UnknownDatabase" in stack.log() and stack.queue_depth("dlq_url") >= 2,
        timeout=60,
        what="the typo's message in the DLQ",
    )
    assert not (databases / "mian.sqlite").exists()
    assert not list(databases.glob("mian*"))
    # AND a database matching a declared pattern is created
    tenant = send(stack, "tenant-a", "INSERT INTO todos (id, title) VALUES ('t', 't')", "--wait")
    assert tenant.returncode == 0, tenant.stderr
    assert (databases / "tenant-a.sqlite").is_file()


def test_a_removed_migration_blocks_its_database_and_says_so(stack: Stack) -> None:
    # GIVEN a database at schema 2
    shutil.copy(EXAMPLE / "extra" / "0002_add_priority.sql", stack.migrations)
    ready = send(stack, "tenant-b", "INSERT INTO todos (id, title, priority) VALUES ('p', 'p', 1)",
                 "--expect-schema", "2", "--wait", "--timeout", "60")  # fmt: skip
    assert ready.returncode == 0, ready.stderr
    # WHEN the migration is removed from the code the writer runs
    # (a deployment of older code: the stack restarts, so the writer cold-starts without it)
    stack.stop()
    (stack.migrations / "0002_add_priority.sql").unlink()
    stack.start()
    sent = send(stack, "tenant-b", "INSERT INTO todos (id, title) VALUES ('q', 'q')", "--id",
                "after-removal", "--wait", "--timeout", "4")  # fmt: skip
    # THEN the wait names the cause: the database has a migration this code does not know
    assert sent.returncode == 4
    assert "MigrationFailed" in sent.stderr and "[2]" in sent.stderr, sent.stderr
    # (pending, or already in the DLQ if the machine is slow enough)
    assert json.loads(sent.stdout)["state"] in ("pending", "in_dlq")
    # AND status lists that command as failing with the migration error
    report = status_json(stack, "tenant-b")["databases"]["tenant-b"]
    [failing] = report["failures"]
    assert failing["id"] == "after-removal" and failing["error_type"] == "MigrationFailed"
    assert report["blocked_by"] in (None, failing)
