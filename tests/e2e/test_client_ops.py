"""The operations library (efsqlite.client.redrive, .importer, .status) against the local
stack's real SQS and reader, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from efsqlite.client import Bookmark, Endpoints, ReadClient, WriteClient, named_command
from efsqlite.client.importer import Importer, ImportProgress
from efsqlite.client.redrive import BY_HAND, RedriveProgress, redrive
from efsqlite.client.status import collect_status
from efsqlite.core.engine import PINNED_VERSION

from .conftest import Stack


def _endpoints(stack: Stack) -> Endpoints:
    return Endpoints.from_file(stack.data_dir / "endpoints.json")


def test_redrive_by_hand_moves_every_dlq_message_in_its_group(stack: Stack) -> None:
    # GIVEN three commands of one database parked in the DLQ (as after maxReceiveCount)
    endpoints = _endpoints(stack)
    sqs = stack.sqs()
    commands = [
        named_command("redrive-lib", "add_todo", {"id": f"r{i}", "title": "x"}) for i in range(3)
    ]
    for command in commands:
        sqs.send_message(
            QueueUrl=stack.endpoints["dlq_url"],
            MessageBody=json.dumps(command),
            MessageGroupId="redrive-lib",
            MessageDeduplicationId="parked-" + command["id"],
        )
    # WHEN the library redrives them, one at most first, then the rest
    seen: list[RedriveProgress] = []
    first = redrive(endpoints, limit=1)
    rest = redrive(endpoints, on_progress=seen.append)
    # THEN it moved one, then two, by hand (the local stack has no move tasks), and the DLQ
    # depths it reports are the real ones
    assert (first.moved, first.method, first.dlq_before, first.dlq_after) == (1, BY_HAND, 3, 2)
    assert (rest.moved, rest.dlq_before, rest.dlq_after, rest.failures) == (2, 2, 0, ())
    assert seen and seen[-1].moved == 2
    # AND the writer applies all three
    reader = ReadClient(endpoints=endpoints)
    for command in commands:
        status = reader.wait_for(Bookmark("redrive-lib", command["id"], "", ""), timeout=30)
        assert status.state == "applied"
    # AND a redrive of an empty DLQ moves nothing
    assert redrive(endpoints).moved == 0


def test_import_library_sends_resumes_and_reports_rejected_chunks(
    stack: Stack, tmp_path: Path
) -> None:
    # GIVEN 25 rows whose 21st repeats a row the database already holds
    endpoints = _endpoints(stack)
    writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
    reader.wait_for(
        writer.send(named_command("import-lib", "add_todo", {"id": "i-dup", "title": "x"}))
    )
    path = tmp_path / "rows.jsonl"
    ids = [f"i-{n:02d}" for n in range(20)] + ["i-dup"] + [f"i-{n:02d}" for n in range(21, 25)]
    path.write_text("".join(json.dumps({"id": i, "title": i}) + "\n" for i in ids))
    # WHEN imported 5 rows per command, with progress to a callback
    seen: list[ImportProgress] = []
    importer = Importer(writer, path, db="import-lib", table="todos", rows_per_command=5)
    result = importer.run(seen.append)
    rejected = importer.wait(reader, result, timeout=60)
    # THEN 5 commands went, progress reached every row, and the chunk holding the repeat is
    # the one rejected (a chunk is one transaction: its other rows are not there)
    assert (result.rows, result.commands, result.total_rows) == (25, 5, 25)
    assert seen[-1] == ImportProgress(25, 25, 5)
    assert [r.id for r in rejected] == [result.command_ids[4]]
    assert result.last is not None
    count = "SELECT count(*) FROM todos WHERE id LIKE 'i-%'"
    assert stack.rows(count, db="import-lib", min_position=result.last.position) == [[21]]
    # WHEN the same job runs again, THEN nothing is left to send
    again = Importer(writer, path, db="import-lib", table="todos", rows_per_command=5)
    assert again.resumed_from == 25
    assert again.run().rows == 25


def test_collect_status_reports_the_queues_and_each_database(stack: Stack) -> None:
    # GIVEN a database with one command applied and one rejected
    endpoints = _endpoints(stack)
    writer = WriteClient(endpoints=endpoints)
    sent = writer.send_many(
        [
            named_command("status-lib", "add_todo", {"id": "s1", "title": "x"}),
            named_command("status-lib", "complete_todo", {"id": "nosuch"}),
        ]
    )
    last = sent[-1].position
    ReadClient(endpoints=endpoints).wait_for(sent[-1], timeout=30)
    stack.rows("SELECT 1", db="status-lib", min_position=last)
    # WHEN the library collects the status of the local stack
    report = collect_status(endpoints, databases=["status-lib"])
    # THEN the queues are the stack's, drained; the database is where the test left it
    assert report.dlq_url == stack.endpoints["dlq_url"]
    assert report.queue is not None and report.queue.held == 0
    info = report.databases["status-lib"]
    assert (info.position, info.schema_version, info.via) == (last, 1, "reader")
    assert info.outcomes == {"applied": 1, "rejected": 1}
    assert (info.pending, info.in_dlq, info.blocked_by) == (0, 0, None)
    assert report.sqlite.reader == PINNED_VERSION
    # AND with no database named it lists the local stack's folder
    everything = collect_status(endpoints)
    assert "status-lib" in everything.databases
