"""The CLI against a running stack: misuse gives one clear line, import loads and resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from efsqlite.client import Endpoints, ReadClient, WriteClient, named_command
from efsqlite.core.engine import PINNED_VERSION

from .conftest import Stack, free_port, run_cli, wait_until


def _one_clear_line(result: object, *, code: int, contains: str) -> None:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, (result.returncode, stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1, stderr
    assert contains in stderr, stderr


def test_unknown_database(stack: Stack) -> None:
    # GIVEN a running stack WHEN querying a database that does not exist
    result = stack.cli("query", "--db", "nosuch", "SELECT 1")
    # THEN one line names the problem, exit 1
    _one_clear_line(result, code=1, contains="no database named 'nosuch'")


def test_bad_json_params(stack: Stack) -> None:
    result = stack.cli("send", "--db", "main", "--sql", "SELECT ?", "--params", "[1,")
    _one_clear_line(result, code=1, contains="--params is not valid JSON")


def test_invalid_database_name_refused_before_sending(stack: Stack) -> None:
    result = stack.cli("send", "--db", "Not Valid", "--sql", "SELECT 1")
    _one_clear_line(result, code=1, contains="invalid command")


def test_usage_errors_are_one_line(stack: Stack) -> None:
    _one_clear_line(stack.cli("send", "--sql", "SELECT 1"), code=2, contains="--db")
    _one_clear_line(
        stack.cli("send", "--db", "main", "--command", "add_todo", "--params", "[]"),
        code=1,
        contains="--params goes with --sql",
    )
    _one_clear_line(
        stack.cli("import", "no-such-file.csv", "--db", "main", "--table", "todos"),
        code=1,
        contains="no such file",
    )


def test_no_running_stack(tmp_path: Path) -> None:
    # GIVEN a folder where no stack ever ran
    result = run_cli("query", "--data-dir", str(tmp_path), "--db", "main", "SELECT 1")
    # THEN the CLI says how to start one
    _one_clear_line(result, code=1, contains="efsqlite dev")
    # GIVEN an endpoints file left behind by a killed stack (nothing listens any more)
    dead = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "endpoints.json").write_text(
        json.dumps(
            {
                "sqs_endpoint": dead,
                "queue_url": f"{dead}/123456789012/q.fifo",
                "lambda_endpoint": dead,
                "reader_function": "efsqlite-reader",
            }
        )
    )
    for args in (("query", "--db", "main", "SELECT 1"), ("send", "--db", "main", "--sql", "X")):
        result = run_cli(*args, "--data-dir", str(tmp_path))
        _one_clear_line(result, code=1, contains="is the stack running?")


def test_import_csv_chunks_resumes_and_never_duplicates(stack: Stack, tmp_path: Path) -> None:
    # GIVEN a CSV of 2,000 todos
    path = tmp_path / "todos.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["id", "title"])
        for i in range(2000):
            out.writerow([f"imp-{i:05d}", f'imported, with "quotes" {i}'])
    # WHEN it is imported through the queue, 300 rows per command
    import_args = ("import", str(path), "--db", "main", "--table", "todos")
    import_args += ("--rows-per-command", "300", "--wait")
    first = stack.cli(*import_args)
    # THEN all rows are there, in 7 commands, with a progress bar on stderr
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["rows"] == 2000 and summary["commands"] == 7 and summary["rejected"] == 0
    assert "100.0%" in first.stderr
    count = "SELECT count(*) FROM todos WHERE id LIKE 'imp-%'"
    progress = Path(summary["progress_file"])
    last = json.loads(progress.read_text())["last"]["sequence_number"]
    assert stack.rows(count, min_position=last) == [[2000]]

    # WHEN an interrupted run is simulated (progress says half) and the import runs again
    state = json.loads(progress.read_text())
    state.update(rows_sent=900, chunks_sent=3)
    progress.write_text(json.dumps(state))
    again = stack.cli(*import_args)
    # THEN it resumes after row 900 and the resent chunks are duplicates, not new rows
    assert again.returncode == 0, again.stderr
    assert "resuming after 900 rows" in again.stderr
    last = json.loads(progress.read_text())["last"]["sequence_number"]
    assert stack.rows(count, min_position=last) == [[2000]]
    assert stack.rows(
        "SELECT outcome, count(*) FROM _efsqlite_commands WHERE id LIKE ? GROUP BY outcome",
        [f"import-{state['job']}-%"],
        min_position=last,
    ) == [["applied", 7]]


@pytest.mark.parametrize("fmt", ["jsonl"])
def test_import_json_lines(stack: Stack, tmp_path: Path, fmt: str) -> None:
    # GIVEN five todos as JSON lines
    path = tmp_path / f"todos.{fmt}"
    lines = [json.dumps({"id": f"jl-{i}", "title": f"t{i}"}) for i in range(5)]
    path.write_text("\n".join(lines) + "\n")
    # WHEN imported
    result = stack.cli("import", str(path), "--db", "main", "--table", "todos", "--wait")
    # THEN the rows are there
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: stack.rows("SELECT count(*) FROM todos WHERE id LIKE 'jl-%'") == [[5]],
        timeout=30,
        what="five rows",
    )


def test_aws_mode_finds_the_dlq_from_the_redrive_policy(stack: Stack) -> None:
    # GIVEN a database of its own with two commands applied and one rejected, settled and
    # visible to the reader (min_position)
    db = "aws-status"
    writer = WriteClient(endpoints=Endpoints.from_file(stack.data_dir / "endpoints.json"))
    sent = writer.send_many(
        [
            named_command(db, "add_todo", {"id": "s1", "title": "a"}),
            named_command(db, "add_todo", {"id": "s2", "title": "b"}),
            named_command(db, "complete_todo", {"id": "nosuch"}),
        ]
    )
    last = sent[-1].sequence_number
    ReadClient(endpoints=writer.endpoints).wait_for(sent[-1], timeout=30)
    assert stack.rows("SELECT count(*) FROM todos", db=db, min_position=last) == [[2]]
    # AND one message parked in the stack's DLQ (and none anywhere else), so the DLQ the CLI
    # reports can only be that one
    sqs = stack.sqs()
    sqs.send_message(
        QueueUrl=stack.endpoints["dlq_url"],
        MessageBody="{}",
        MessageGroupId=db,
        MessageDeduplicationId="parked-for-status",
    )
    # AND the CLI configured as for AWS (queue URL and function name, no endpoints file),
    # with botocore's standard endpoint variables pointing at the local stack
    env = {
        "AWS_ENDPOINT_URL_SQS": stack.endpoints["sqs_endpoint"],
        "AWS_ENDPOINT_URL_LAMBDA": stack.endpoints["lambda_endpoint"],
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # WHEN status runs with only the queue URL
    result = run_cli(
        "status",
        "--json",
        "--db",
        db,
        "--queue-url",
        stack.endpoints["queue_url"],
        "--function-name",
        stack.endpoints["reader_function"],
        extra_env=env,
    )
    # THEN it found the DLQ through the queue's redrive policy: the stack's DLQ, empty
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dlq"] == {"visible": 1, "in_flight": 0, "delayed": 0}
    assert report["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert set(report) == {"queue", "dlq", "databases", "sqlite"}
    # AND the database, through the reader, is where the test left it
    assert report["databases"] == {
        db: {
            "position": last,
            "schema_version": 1,
            "outcomes": {"applied": 2, "rejected": 1},
            "pending": 0,
            "in_dlq": 0,
            "blocked_by": None,
            "failures": [],
            "via": "reader",
        }
    }
    # AND it reports the SQLite release the reader runs (asked of the reader) and its own
    assert report["sqlite"] == {"reader": PINNED_VERSION, "cli": PINNED_VERSION}
    sqs.purge_queue(QueueUrl=stack.endpoints["dlq_url"])


def test_status_finds_the_stacks_dlq_url(stack: Stack) -> None:
    # GIVEN only the queue URL (AWS mode)  WHEN the library collects the status
    from efsqlite.client.queues import connect_sqs

    _sqs, found = connect_sqs(
        Endpoints(
            queue_url=stack.endpoints["queue_url"],
            sqs_endpoint=stack.endpoints["sqs_endpoint"],
        )
    )
    # THEN the DLQ URL it found through the redrive policy is the stack's DLQ URL
    assert found.dlq_url == stack.endpoints["dlq_url"]
