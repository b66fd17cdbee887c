"""FIFO order kept end to end: a command being retried holds back its database, no other.

Through the real stack: commands go in over HTTP, the poller feeds the writer's real handler,
outcomes come back through the reader and ``efsqlite status``. The failing command needs a
schema version the database does not have (``expect_schema``: ``SchemaNotReady``, retried,
then dead-lettered); the commands behind it in its group must stay ``unknown`` until it is in
the DLQ, as SQS FIFO guarantees, while another database's commands are applied meanwhile.
"""

from __future__ import annotations

import json
from typing import Any

from efsqlite.client import Endpoints, ReadClient, WriteClient, named_command, sql_command
from efsqlite.core.position import Position

from .conftest import wait_until

LEDGER = "_efsqlite_commands"
VISIBILITY_S = 3
MAX_RECEIVES = 3


def _entry(key: str, command: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": key,
        "MessageBody": json.dumps(command),
        "MessageGroupId": command["db"],
        "MessageDeduplicationId": command["id"],
    }


def test_a_retried_command_holds_its_group_until_dead_lettered_and_no_other(
    own_stack: Any,
) -> None:
    # GIVEN a stack (visibility 3 s, maxReceiveCount 3) and two databases at schema 1
    stack = own_stack(visibility_timeout=VISIBILITY_S, max_receive_count=MAX_RECEIVES)
    stack.start()
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
    for db in ("main", "other"):
        seed = writer.send(named_command(db, "add_todo", {"id": f"{db}-0", "title": "seed"}))
        assert reader.wait_for(seed, timeout=60).state == "applied"

    # WHEN one SendMessageBatch puts a command needing schema 2 and a valid one behind it in
    # group "main" (one transaction: the poller's receives hand both to the writer together)
    failing = sql_command(
        "main",
        "UPDATE todos SET title = 'never' WHERE id = 'main-0'",
        id="needs-v2",
        expect_schema=2,
    )
    mate = named_command("main", "add_todo", {"id": "b1", "title": "mate"}, id="behind-1")
    sent = stack.sqs().send_message_batch(
        QueueUrl=stack.endpoints["queue_url"], Entries=[_entry("0", failing), _entry("1", mate)]
    )
    assert not sent.get("Failed"), sent
    numbers = {e["Id"]: Position.parse(e["SequenceNumber"]) for e in sent["Successful"]}
    # AND once its first delivery has failed, another command of "main" follows in its own
    # message (so it misses that first receive), and one of database "other"
    first = wait_until(
        lambda: (
            (status := reader.command_status("needs-v2", db="main")).state == "pending" and status
        ),
        timeout=30,
        what="the first failed delivery",
    )
    later = writer.send(
        named_command("main", "add_todo", {"id": "b2", "title": "later"}, id="behind-2")
    )
    other = writer.send(named_command("other", "add_todo", {"id": "o1", "title": "free"}))

    # THEN the other database's command is applied meanwhile: its group is not blocked, it
    # did not wait for main's head to be delivered again (that is VISIBILITY_S later)
    assert reader.wait_for(other, timeout=30).state == "applied"
    head = reader.command_status("needs-v2", db="main")
    assert first.receive_count == 1, first
    assert head.state == "pending" and head.receive_count == 1, head
    # (the CLI's view while main is blocked: checked against the DLQ read after it)
    shown = stack.cli("status", "--command", "behind-2", "--db", "main", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "unknown" or stack.queue_depth("dlq_url") >= 1

    # AND while the failing command is retried the commands behind it stay unknown: no read
    # sees one applied before the failing command has reached the DLQ (read after it)
    retried_while_held = 0

    def settled() -> bool:
        nonlocal retried_while_held
        head = reader.command_status("needs-v2", db="main")
        states = [reader.command_status(c, db="main").state for c in ("behind-1", "behind-2")]
        in_dlq = stack.queue_depth("dlq_url")
        # behind-1 is delivered with the failing head every time, so it is never applied
        assert states[0] == "unknown", (states, head)
        if in_dlq == 0:
            assert states[1] == "unknown", (states, head)
            if head.state == "pending" and (head.receive_count or 0) >= 2:
                retried_while_held += 1
        return states[1] == "applied"

    wait_until(settled, timeout=90, interval=0.1, what="the command behind the failing one")
    assert retried_while_held >= 1, "never saw the failing command retried while holding"

    # AND the failing command is in the DLQ after maxReceiveCount receives, and with it, as in
    # AWS, the batch-mate received every time with it (the writer handed it back unapplied)
    dead = stack.sqs().receive_message(
        QueueUrl=stack.endpoints["dlq_url"],
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        VisibilityTimeout=0,
    )["Messages"]
    assert [json.loads(m["Body"])["id"] for m in dead] == ["needs-v2", "behind-1"]
    # (the count is kept in the DLQ; this receive is one more)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in dead} == {str(MAX_RECEIVES + 1)}
    assert stack.queue_depth("queue_url") == 0
    # AND the command behind was applied after the failing one's sequence number
    applied = reader.wait_for(later, timeout=10)
    assert applied.position is not None
    assert numbers["0"] < numbers["1"] < applied.position == Position.parse(later.position)
    shown = stack.cli("status", "--command", "behind-2", "--db", "main", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "applied"
    assert json.loads(shown.stdout)["position"] == str(applied.position)
    assert stack.rows(
        f"SELECT id FROM {LEDGER} WHERE id IN ('needs-v2', 'behind-1', 'behind-2')",
        db="main",
        min_position=applied.position,
    ) == [["behind-2"]]
    assert stack.rows(
        "SELECT id, title FROM todos ORDER BY id", db="main", min_position=applied.position
    ) == [["b2", "later"], ["main-0", "seed"]]
