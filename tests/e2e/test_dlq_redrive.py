"""A failed command reaches the DLQ; after a migration, redrive (twice) applies it once.

The commands redriven here are not idempotent (each run adds to a value), so a second
application shows in the row itself; counting rows by primary key could not tell.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from efsqlite.client import Endpoints, ReadClient, WriteClient, named_command, sql_command
from efsqlite.core.position import Position

from .conftest import EXAMPLE, wait_until

LEDGER = "_efsqlite_commands"


def test_failed_command_goes_to_dlq_and_redrive_applies_it_once(own_stack: Any) -> None:
    # GIVEN a stack with a short visibility timeout and maxReceiveCount 2
    stack = own_stack(visibility_timeout=1, max_receive_count=2)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
    reader.wait_for(writer.send(named_command("main", "add_todo", {"id": "t1", "title": "a"})))

    # WHEN a command that adds 1 to the priority needs schema 2 while the database is at 1
    bump = sql_command(
        "main",
        "UPDATE todos SET priority = priority + 1 WHERE id = 't1'",
        id="prio-1",
        expect_schema=2,
    )
    failing = writer.send(bump)
    # AND the producer, unsure it went out, sends it again under a new deduplication id
    stack.sqs().send_message(
        QueueUrl=stack.endpoints["queue_url"],
        MessageBody=json.dumps(bump),
        MessageGroupId="main",
        MessageDeduplicationId="retry-of-prio-1",
    )
    # THEN SQS delivers each copy twice, each delivery fails (with its reason), and both
    # copies land in the DLQ, where the ledger says it is, with no receive left
    wait_until(lambda: stack.queue_depth("dlq_url") == 2, timeout=60, what="the DLQ")
    status = reader.command_status("prio-1", db="main")
    assert status.state == "in_dlq" and status.error_type == "SchemaNotReady"
    assert (status.receive_count, status.receives_left) == (2, 0)
    assert stack.queue_depth("queue_url") == 0
    # AND the group moves on once they are out of the way
    later = writer.send(named_command("main", "add_todo", {"id": "t2", "title": "b"}))
    assert reader.wait_for(later, timeout=60).state == "applied"

    # WHEN the migration lands (the poller sees the folder change: a new cold start)
    shutil.copy(EXAMPLE / "extra" / "0002_add_priority.sql", stack.migrations)
    # AND redrive runs twice
    first = stack.cli("redrive", "--json")
    second = stack.cli("redrive", "--json")

    # THEN the first moved both copies, the second found nothing to move
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["moved"] == 2
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["moved"] == 0
    # AND once a later command of the group is applied (FIFO: both copies are settled)
    after = writer.send(named_command("main", "add_todo", {"id": "t3", "title": "c"}))
    at = reader.wait_for(after, timeout=60).position
    # THEN the command was applied exactly once: the priority went from 0 to 1, not 2
    settled = reader.wait_for(failing, timeout=60)
    assert settled.state == "applied"
    assert stack.rows("SELECT id, priority FROM todos ORDER BY id", min_position=at) == [
        ["t1", 1],
        ["t2", 0],
        ["t3", 0],
    ]
    # AND its ledger entry is the first redriven copy's, and no copy is left anywhere
    assert stack.rows(
        f"SELECT outcome, position FROM {LEDGER} WHERE id = 'prio-1'", min_position=at
    ) == [["applied", str(settled.position)]]
    assert settled.position is not None and settled.position > Position.parse(later.position)
    assert stack.queue_depth("queue_url") == 0
    assert stack.queue_depth("dlq_url") == 0
    assert "writer reloaded (migrations changed)" in stack.log()


def test_redriving_a_command_already_applied_is_a_no_op(own_stack: Any) -> None:
    # GIVEN a todo, and a command that appends "+" to its title, applied once
    stack = own_stack(visibility_timeout=1, max_receive_count=2)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
    reader.wait_for(writer.send(named_command("main", "add_todo", {"id": "dup", "title": "a"})))
    command = sql_command(
        "main", "UPDATE todos SET title = title || '+' WHERE id = 'dup'", id="dup-1"
    )
    sent = writer.send(command)
    applied = reader.wait_for(sent)
    assert applied.state == "applied"
    assert stack.rows("SELECT title FROM todos WHERE id = 'dup'", min_position=sent.position) == [
        ["a+"]
    ]
    # AND its copy still sits in the DLQ (as after a redrive that crashed between send and
    # delete)
    stack.sqs().send_message(
        QueueUrl=stack.endpoints["dlq_url"],
        MessageBody=json.dumps(command),
        MessageGroupId="main",
        MessageDeduplicationId="copy-of-dup-1",
    )

    # WHEN it is redriven
    moved = stack.cli("redrive", "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["moved"] == 1
    # AND a later command of the same group is applied (FIFO: the copy was settled first)
    later = writer.send(named_command("main", "add_todo", {"id": "next", "title": "b"}))
    at = reader.wait_for(later, timeout=60).position

    # THEN the writer settled the copy as a duplicate: the title gained one "+", not two
    assert stack.rows("SELECT id, title FROM todos ORDER BY id", min_position=at) == [
        ["dup", "a+"],
        ["next", "b"],
    ]
    # AND the ledger still holds the first delivery's outcome, and the copy is gone
    assert stack.rows(
        f"SELECT outcome, message_id, position FROM {LEDGER} WHERE id = 'dup-1'", min_position=at
    ) == [["applied", sent.message_id, str(applied.position)]]
    assert stack.queue_depth("queue_url") == 0
    assert stack.queue_depth("dlq_url") == 0
