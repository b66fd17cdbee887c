"""A failed command reaches the DLQ; after a migration, redrive (twice) applies it once."""

from __future__ import annotations

import json
import shutil
from typing import Any

from efsqlite.client import Endpoints, ReadClient, WriteClient, named_command

from .conftest import EXAMPLE, wait_until


def test_failed_command_goes_to_dlq_and_redrive_applies_it_once(own_stack: Any) -> None:
    # GIVEN a stack with a short visibility timeout and maxReceiveCount 2
    stack = own_stack(visibility_timeout=1, max_receive_count=2)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
    reader.wait_for(writer.send(named_command("main", "add_todo", {"id": "t1", "title": "a"})))

    # WHEN a command needs schema 2 while the database is at 1
    failing = writer.send(
        named_command(
            "main", "set_priority", {"id": "t1", "priority": 7}, id="prio-1", expect_schema=2
        )
    )
    # THEN it fails (pending, with its reason), then lands in the DLQ after 2 receives
    wait_until(lambda: stack.queue_depth("dlq_url") == 1, timeout=60, what="the DLQ")
    status = reader.command_status("prio-1", db="main")
    assert status.state == "pending" and status.error_type == "SchemaNotReady"
    assert stack.queue_depth("queue_url") == 0
    # AND the group moves on once it is out of the way
    later = writer.send(named_command("main", "add_todo", {"id": "t2", "title": "b"}))
    assert reader.wait_for(later, timeout=60).state == "applied"

    # WHEN the migration lands (the poller sees the folder change: a new cold start)
    shutil.copy(EXAMPLE / "extra" / "0002_add_priority.sql", stack.migrations)
    # AND redrive runs twice
    first = stack.cli("redrive", "--json")
    second = stack.cli("redrive", "--json")

    # THEN the first moved the message, the second found nothing to move
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["moved"] == 1
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["moved"] == 0
    # AND the command is applied exactly once
    settled = reader.wait_for(failing, timeout=60)
    assert settled.state == "applied"
    at = settled.position
    assert stack.rows("SELECT priority FROM todos WHERE id = 't1'", min_position=at) == [[7]]
    assert stack.rows(
        "SELECT count(*) FROM _efsqlite_commands WHERE id = 'prio-1'", min_position=at
    ) == [[1]]
    assert stack.queue_depth("dlq_url") == 0
    assert "writer reloaded (migrations changed)" in stack.log()


def test_redriving_a_command_already_applied_is_a_no_op(own_stack: Any) -> None:
    # GIVEN a command applied, whose copy still sits in the DLQ (as after a redrive that
    # crashed between send and delete)
    stack = own_stack(visibility_timeout=1, max_receive_count=2)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
    command = named_command("main", "add_todo", {"id": "dup", "title": "once"}, id="dup-1")
    reader.wait_for(writer.send(command))
    sqs = stack.sqs()
    sqs.send_message(
        QueueUrl=stack.endpoints["dlq_url"],
        MessageBody=json.dumps(command),
        MessageGroupId="main",
        MessageDeduplicationId="copy-of-dup-1",
    )
    # WHEN it is redriven
    moved = stack.cli("redrive", "--json")
    assert json.loads(moved.stdout)["moved"] == 1
    # THEN the writer settles it as a duplicate: still one row, one ledger entry
    wait_until(lambda: stack.queue_depth("queue_url") == 0, timeout=30, what="drain")
    assert stack.rows("SELECT count(*) FROM todos WHERE id = 'dup'") == [[1]]
    assert stack.rows("SELECT count(*) FROM _efsqlite_commands WHERE id = 'dup-1'") == [[1]]
