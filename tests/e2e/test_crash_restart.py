"""SIGKILL mid-stream, clean shutdown, restart and the data folder lock."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from typing import Any

from efsqlite.client import Endpoints, WriteClient
from efsqlite.client.exceptions import SendError

from .conftest import run_cli, wait_until

COMMANDS = 400
COUNTER_MIGRATION = """
CREATE TABLE hits (n INTEGER NOT NULL);
INSERT INTO hits VALUES (0);
"""


def _command(i: int) -> dict[str, Any]:
    # Each command inserts a row and bumps a counter: a second apply would show in the counter.
    return {
        "v": 1,
        "id": f"k-{i:04d}",
        "db": "main",
        "statements": [
            {"sql": "INSERT INTO todos (id, title) VALUES (?, ?)", "params": [f"k{i:04d}", "k"]},
            {"sql": "UPDATE hits SET n = n + 1", "params": []},
        ],
    }


def _produce(endpoints: Endpoints, acked: list[str], errors: list[str]) -> None:
    """Send each command until SQS acknowledges it, retrying the same id across the outage."""
    client = WriteClient(endpoints=endpoints, max_attempts=2, backoff_s=0.05)
    deadline = time.monotonic() + 120
    for i in range(COMMANDS):
        while True:
            try:
                client.send(_command(i))
                acked.append(f"k-{i:04d}")
                break
            except SendError as exc:
                if time.monotonic() > deadline:
                    errors.append(str(exc))
                    return
                time.sleep(0.1)


def _applied(stack: Any) -> int | None:
    """Commands applied so far, or None while the journal the SIGKILL left is still hot.

    Until the restarted writer's first run rolls that journal back, the reader answers
    Recovering (retryable), as it must: a poll waits it out like any client would.
    """
    answer = stack.invoke({"db": "main", "sql": "SELECT count(*) FROM todos WHERE id LIKE 'k%'"})
    if answer.get("error", {}).get("type") == "Recovering":
        assert answer["error"]["retryable"] is True, answer
        return None
    assert "error" not in answer, answer
    count: int = answer["rows"][0][0]
    return count


def test_sigkill_mid_stream_then_restart_loses_nothing_and_applies_nothing_twice(
    own_stack: Any,
) -> None:
    # GIVEN a stack, and a producer streaming 400 commands into it
    stack = own_stack(visibility_timeout=2)
    (stack.migrations / "0002_hits.sql").write_text(COUNTER_MIGRATION)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    acked: list[str] = []
    errors: list[str] = []
    producer = threading.Thread(target=_produce, args=(endpoints, acked, errors))
    producer.start()
    wait_until(lambda: len(acked) >= 120, timeout=60, what="120 acknowledged sends")

    # WHEN the whole stack is SIGKILLed mid-stream, then started again on the same folder
    assert stack.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = len(acked)
    stack.start()
    producer.join(timeout=150)
    assert not errors, errors[:1]
    assert len(acked) == COMMANDS and killed_at < COMMANDS

    # THEN every command is applied, and exactly once
    wait_until(lambda: _applied(stack) == COMMANDS, timeout=90, what="all commands applied")
    assert stack.rows("SELECT n FROM hits") == [[COMMANDS]]
    assert stack.rows(
        "SELECT outcome, count(*) FROM _efsqlite_commands WHERE id LIKE 'k-%' GROUP BY outcome"
    ) == [["applied", COMMANDS]]
    wait_until(lambda: stack.queue_depth("queue_url") == 0, timeout=30, what="empty queue")
    restored = [line for line in stack.log().splitlines() if "restored" in line]
    print(f"killed after {killed_at} acknowledged sends; {restored or 'nothing queued'}")
    # AND after a clean stop the database passes SQLite's integrity check
    assert stack.stop(signal.SIGTERM) == 0
    conn = sqlite3.connect(f"file:{stack.data_dir}/databases/main.sqlite?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT n FROM hits").fetchone() == (COMMANDS,)
    finally:
        conn.close()


def test_clean_stop_keeps_queued_messages_for_the_next_start(own_stack: Any) -> None:
    # GIVEN a stack whose writer cannot apply a command yet (schema 2 needed)
    stack = own_stack(visibility_timeout=1, max_receive_count=1000)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    command = {
        "v": 1,
        "id": "later-1",
        "db": "main",
        "expect_schema": 2,
        "statements": [{"sql": "INSERT INTO hits VALUES (41)", "params": []}],
    }
    WriteClient(endpoints=endpoints).send(command)
    wait_until(lambda: "left to the visibility timeout" in stack.log(), timeout=30, what="retry")
    # WHEN the stack stops cleanly (SIGTERM), a migration lands, and it starts again
    assert stack.stop(signal.SIGTERM) == 0
    assert not (stack.data_dir / "endpoints.json").exists()
    (stack.migrations / "0002_hits.sql").write_text(COUNTER_MIGRATION)
    stack.start()

    # THEN the queued command was kept and now applies
    def applied() -> bool:
        answer = stack.invoke({"db": "main", "sql": "SELECT count(*) FROM hits WHERE n = 41"})
        return answer.get("rows") == [[1]]  # an error until the migration has run

    wait_until(applied, timeout=60, what="the kept command")
    assert "restored 1 queued messages" in stack.log()


def test_second_stack_on_the_same_folder_refuses(own_stack: Any) -> None:
    # GIVEN a running stack
    stack = own_stack()
    stack.start()
    # WHEN another `efsqlite dev` starts on the same data folder
    other = run_cli(
        "dev",
        "--data-dir",
        str(stack.data_dir),
        "--sqs-port",
        "0",
        "--lambda-port",
        "0",
        "--url-port",
        "0",
        "--console-port",
        "0",
        timeout=60,
    )
    # THEN it refuses with one clear line, and the first keeps working
    assert other.returncode == 1
    assert "already running" in other.stderr and "Traceback" not in other.stderr
    assert stack.queue_depth("queue_url") == 0
    assert stack.invoke({"db": "main", "sql": "SELECT 1"})["error"]["type"] == "DatabaseNotFound"
