"""The ``efsqlite`` command line: send, query, status, redrive, import, schema and dev.

Every subcommand finds the queue and the reader the way the client library does: the local
stack's ``endpoints.json`` (``--data-dir``, default ``./.efsqlite``), or ``--queue-url`` and
``--function-name`` for AWS (credentials and region from the usual boto3 places).

A user mistake ends with one line on stderr and a non-zero exit, never a traceback:
exit 1 for errors, 2 for bad usage, 3 for a rejected command (``send --wait``), 4 for a
timeout.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from efsqlite.client.exceptions import ReadRequestError, WaitTimeoutError
from efsqlite.core import engine
from efsqlite.core.exceptions import EfsqliteError
from efsqlite.write.wire import message_json_schema

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_TIMEOUT = 4
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UsageError(EfsqliteError):
    """A command-line value the CLI cannot use (bad JSON, a missing file, ...)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def _json_params(text: str | None, what: str = "--params") -> list[Any] | dict[str, Any]:
    value = _json_arg(text, what)
    if value is None:
        return []
    if not isinstance(value, list | dict):
        raise UsageError(f"{what} must be a JSON array or object, not {type(value).__name__}")
    return value


# -- config -----------------------------------------------------------------------------------
def _endpoints(args: argparse.Namespace) -> Any:
    from efsqlite.client import resolve_endpoints

    return resolve_endpoints(
        queue_url=args.queue_url,
        function_name=args.function_name,
        dlq_url=args.dlq_url,
        endpoints_file=args.endpoints,
        data_dir=args.data_dir,
        region=args.region,
    )


def _session(args: argparse.Namespace) -> Any:
    if not args.profile:
        return None
    import boto3

    return boto3.Session(profile_name=args.profile)


def _write_client(args: argparse.Namespace) -> Any:
    from efsqlite.client import WriteClient

    return WriteClient(session=_session(args), endpoints=_endpoints(args))


def _read_client(args: argparse.Namespace) -> Any:
    from efsqlite.client import ReadClient

    return ReadClient(session=_session(args), endpoints=_endpoints(args))


def _sqs(args: argparse.Namespace) -> tuple[Any, Any]:
    """An SQS client and the endpoints, with the DLQ found from the queue's redrive policy
    when only ``--queue-url`` was given."""
    import dataclasses

    from efsqlite.client import _client

    endpoints = _endpoints(args)
    sqs = _client("sqs", endpoints, _session(args))
    if endpoints.queue_url and not endpoints.dlq_url:
        dlq_url = _dlq_from_redrive_policy(sqs, endpoints.queue_url)
        if dlq_url:
            endpoints = dataclasses.replace(endpoints, dlq_url=dlq_url)
    return sqs, endpoints


def _dlq_from_redrive_policy(sqs: Any, queue_url: str) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
        policy = json.loads(attributes["Attributes"]["RedrivePolicy"])
        arn = str(policy["deadLetterTargetArn"])
        account, name = arn.split(":")[4], arn.split(":")[5]
        found = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
        return str(found["QueueUrl"])
    except (BotoCoreError, ClientError, KeyError, ValueError, IndexError):
        return None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


# -- send -------------------------------------------------------------------------------------
def cmd_send(args: argparse.Namespace) -> int:
    from efsqlite.client import named_command, sql_command

    if args.command is not None and args.params is not None:
        raise UsageError("--params goes with --sql; a named command takes --args")
    if args.sql is not None and args.args is not None:
        raise UsageError("--args goes with --command; SQL takes --params")
    if args.sql is not None:
        command = sql_command(
            args.db,
            args.sql,
            _json_params(args.params),
            id=args.id,
            expect_schema=args.expect_schema,
        )
    else:
        command_args = _json_arg(args.args, "--args") or {}
        if not isinstance(command_args, dict):
            raise UsageError("--args must be a JSON object")
        command = named_command(
            args.db, args.command, command_args, id=args.id, expect_schema=args.expect_schema
        )
    bookmark = _write_client(args).send(command)
    result: dict[str, Any] = {
        "db": bookmark.db,
        "id": bookmark.id,
        "message_id": bookmark.message_id,
        "sequence_number": bookmark.sequence_number,
    }
    if not args.wait:
        _print_json(result)
        return 0
    status = _read_client(args).wait_for(bookmark, timeout=args.timeout)
    result.update(state=status.state, position=status.position)
    if status.state == "rejected":
        result.update(error_type=status.error_type, error_message=status.error_message)
        _print_json(result)
        sys.stderr.write(
            f"efsqlite: command {bookmark.id} was rejected: {status.error_type}: "
            f"{status.error_message}\n"
        )
        return EXIT_REJECTED
    _print_json(result)
    return 0


# -- query ------------------------------------------------------------------------------------
def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 60) -> str:
    """A plain-text table for people."""

    def cell(value: Any) -> str:
        text = "NULL" if value is None else str(value)
        text = text.replace("\n", "\\n")
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, text in enumerate(row):
            if i < len(widths):
                widths[i] = max(widths[i], len(text))
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [" | ".join(t.ljust(w) for t, w in zip(row, widths, strict=False)) for row in cells]
    return "\n".join(lines)


def cmd_query(args: argparse.Namespace) -> int:
    client = _read_client(args)
    params = _json_params(args.params)
    if args.named:
        result = client.named_query(
            args.named,
            params,
            db=args.db,
            min_position=args.min_position,
            max_rows=args.max_rows,
            timeout_ms=args.timeout_ms,
        )
    else:
        if not args.sql:
            raise UsageError("give the SQL to run, or --named NAME")
        result = client.query(
            args.sql,
            params,
            db=args.db,
            min_position=args.min_position,
            max_rows=args.max_rows,
            timeout_ms=args.timeout_ms,
        )
    if args.json:
        _print_json(result.raw)
        return 0
    print(format_table(result.columns, result.rows))
    notes = [f"{len(result.rows)} row(s)", f"position {result.position}"]
    if result.schema_version is not None:
        notes.append(f"schema v{result.schema_version}")
    if result.truncated:
        notes.append("TRUNCATED (raise --max-rows)")
    if result.stale:
        notes.append("STALE (the reader served its last good snapshot)")
    print("(" + ", ".join(notes) + ")")
    return 0


# -- status -----------------------------------------------------------------------------------
def _queue_counts(sqs: Any, url: str | None) -> dict[str, int] | None:
    if not url:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        from efsqlite.client import _describe

        raise EfsqliteError(f"cannot reach the queue {url}: {_describe(exc)}") from None
    return {
        "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


_OUTCOMES_SQL = (
    "SELECT outcome, count(*) FROM _efsqlite_commands GROUP BY outcome "
    "UNION ALL SELECT 'pending', count(*) FROM _efsqlite_failures"
)


def database_status_from_file(path: Path) -> dict[str, Any]:
    """Position, schema version and outcome counts straight from a local file (read-only)."""
    from efsqlite.core.connections import open_readonly_connection
    from efsqlite.core.ledger import decode_position, read_position, schema_version

    conn = open_readonly_connection(path)
    try:
        counts = {str(k): int(v) for k, v in conn.execute(_OUTCOMES_SQL)}
        return {
            "position": decode_position(read_position(conn)),
            "schema_version": schema_version(conn),
            "outcomes": counts,
            "via": "file",
        }
    finally:
        conn.close()


def _database_status(reader: Any, db: str, local_file: Path | None) -> dict[str, Any]:
    try:
        result = reader.query(_OUTCOMES_SQL, db=db)
        return {
            "position": result.position,
            "schema_version": result.schema_version,
            "outcomes": {str(r[0]): int(r[1]) for r in result.rows},
            "via": "reader",
        }
    except ReadRequestError as exc:
        # The reader may refuse its ledger tables; a local data folder can be read directly.
        if local_file is not None and local_file.is_file():
            try:
                return database_status_from_file(local_file)
            except engine.Error as file_exc:
                return {"error": f"{type(file_exc).__name__}: {file_exc}"}
        return {"error": str(exc)}


def _reader_sqlite_version(reader: Any, db: str) -> str | None:
    """The SQLite release the reader runs, asked of the reader itself (None if it refuses)."""
    try:
        result = reader.query("SELECT sqlite_version()", db=db)
    except ReadRequestError:
        return None
    return str(result.rows[0][0]) if result.rows else None


def _command_status(args: argparse.Namespace) -> int:
    if not args.db or len(args.db) != 1:
        raise UsageError("--command needs exactly one --db")
    status = _read_client(args).command_status(args.command_id, db=args.db[0])
    answer = {
        "db": status.db,
        "id": status.id,
        "state": status.state,
        "position": status.position,
        "error_type": status.error_type,
        "error_message": status.error_message,
    }
    if args.json:
        _print_json(answer)
    else:
        line = f"{status.id} on {status.db}: {status.state}"
        if status.position:
            line += f" at position {status.position}"
        if status.error_type:
            line += f" ({status.error_type}: {status.error_message})"
        print(line)
    return EXIT_REJECTED if status.state == "rejected" else 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.command_id:
        return _command_status(args)
    sqs, endpoints = _sqs(args)
    report: dict[str, Any] = {
        "queue": _queue_counts(sqs, endpoints.queue_url),
        "dlq": _queue_counts(sqs, endpoints.dlq_url),
        "databases": {},
    }
    folder = endpoints.databases_dir
    names = list(args.db or [])
    if not names and folder is not None and folder.is_dir():
        names = sorted(p.stem for p in folder.glob("*.sqlite"))
    report["sqlite"] = {"cli": engine.sqlite_version(), "reader": None}
    if names and endpoints.reader_function:
        reader = _read_client(args)
        for db in names:
            local = folder / f"{db}.sqlite" if folder is not None else None
            report["databases"][db] = _database_status(reader, db, local)
        report["sqlite"]["reader"] = _reader_sqlite_version(reader, names[0])
    if args.json:
        _print_json(report)
        return 0
    versions = report["sqlite"]
    print(
        f"sqlite {versions['reader'] or '?'} (reader and writer: one layer), "
        f"{versions['cli']} (this CLI)"
    )
    for label in ("queue", "dlq"):
        counts = report[label]
        if counts is None:
            print(f"{label:<6} (unknown: pass --{'dlq-url' if label == 'dlq' else 'queue-url'})")
        else:
            print(
                f"{label:<6} {counts['visible']} queued, {counts['in_flight']} in flight, "
                f"{counts['delayed']} delayed"
            )
    rows = []
    for db, info in report["databases"].items():
        if "error" in info:
            rows.append([db, "?", "?", "?", "?", "?", info["error"]])
            continue
        outcomes = info["outcomes"]
        rows.append(
            [
                db,
                info["position"],
                info["schema_version"],
                outcomes.get("applied", 0),
                outcomes.get("rejected", 0),
                outcomes.get("pending", 0),
                "",
            ]
        )
    if rows:
        columns = ["database", "position", "schema", "applied", "rejected", "pending", "note"]
        print(format_table(columns, rows))
    else:
        print("no databases yet (pass --db NAME to ask about one)")
    return 0


# -- redrive ----------------------------------------------------------------------------------
def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _redrive_with_move_task(sqs: Any, dlq_url: str, quiet: bool) -> int | None:
    """Use StartMessageMoveTask; ``None`` if this endpoint does not support it."""
    from botocore.exceptions import ClientError

    dlq_arn = _queue_arn(sqs, dlq_url)
    try:
        task = sqs.start_message_move_task(SourceArn=dlq_arn)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"UnsupportedOperation", "InvalidAction", "NotImplemented", "500"} or (
            "not been implemented" in str(exc)
        ):
            return None
        raise
    handle = task.get("TaskHandle")
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
        current = tasks[0] if tasks else {}
        moved = int(current.get("ApproximateNumberOfMessagesMoved", 0))
        total = current.get("ApproximateNumberOfMessagesToMove")
        if not quiet:
            sys.stderr.write(f"\rredrive (move task {handle}): {moved}/{total or '?'} moved")
        status = current.get("Status")
        if status in {"COMPLETED", "FAILED", "CANCELLED"} or not tasks:
            if not quiet:
                sys.stderr.write("\n")
            if status == "FAILED":
                raise EfsqliteError(f"move task failed: {current.get('FailureReason')}")
            return moved
        time.sleep(1)


def redrive_by_hand(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    *,
    limit: int | None = None,
    progress: bool = True,
) -> int:
    """Move messages from the DLQ to the source queue as SQS's redrive does.

    Each message is sent again (new message id, same group) and only then deleted from the
    DLQ, so a crash in between duplicates rather than loses it; the ledger makes the duplicate
    harmless. The deduplication id is derived from the DLQ message id, so two runs racing over
    the same message within five minutes send it once.
    """
    moved = 0
    empty = 0
    while limit is None or moved < limit:
        want = 10 if limit is None else max(1, min(10, limit - moved))
        response = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages") or []
        if not messages:
            empty += 1
            if empty >= 2:
                break
            continue
        empty = 0
        entries = []
        for index, message in enumerate(messages):
            attributes = message.get("Attributes", {})
            entry: dict[str, Any] = {
                "Id": str(index),
                "MessageBody": message["Body"],
                "MessageDeduplicationId": "r-" + message["MessageId"],
            }
            if attributes.get("MessageGroupId"):
                entry["MessageGroupId"] = attributes["MessageGroupId"]
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        ok = {item["Id"] for item in sent.get("Successful") or []}
        to_delete = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if str(i) in ok
        ]
        if to_delete:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=to_delete)
        moved += len(to_delete)
        if sent.get("Failed"):
            # FIFO order: stop rather than move later messages past a failed one.
            raise EfsqliteError(
                f"moved {moved}, then the queue refused {len(sent['Failed'])}: "
                f"{sent['Failed'][0].get('Message')}. Run redrive again"
            )
        if progress:
            sys.stderr.write(f"\rredrive: {moved} moved")
            sys.stderr.flush()
    if progress and moved:
        sys.stderr.write("\n")
    return moved


def cmd_redrive(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from efsqlite.client import _describe

    sqs, endpoints = _sqs(args)
    if not endpoints.dlq_url or not endpoints.queue_url:
        raise UsageError(
            "redrive needs the queue and its DLQ: pass --queue-url (with a redrive policy) "
            "or --dlq-url"
        )
    try:
        before = _queue_counts(sqs, endpoints.dlq_url) or {}
        moved = None
        method = "StartMessageMoveTask"
        if not endpoints.local and not args.by_hand:
            moved = _redrive_with_move_task(sqs, endpoints.dlq_url, args.quiet)
        if moved is None:
            method = "receive, send, delete"
            moved = redrive_by_hand(
                sqs,
                endpoints.dlq_url,
                endpoints.queue_url,
                limit=args.max,
                progress=not args.quiet,
            )
        after = _queue_counts(sqs, endpoints.dlq_url) or {}
    except (BotoCoreError, ClientError) as exc:
        raise EfsqliteError(f"redrive failed: {_describe(exc)}") from None
    summary = {
        "moved": moved,
        "method": method,
        "dlq_before": before.get("visible", 0) + before.get("in_flight", 0),
        "dlq_after": after.get("visible", 0) + after.get("in_flight", 0),
    }
    if args.json:
        _print_json(summary)
    else:
        print(
            f"redrive: moved {moved} message(s) from the DLQ to the queue ({method}); "
            f"DLQ held {summary['dlq_before']}, now {summary['dlq_after']}"
        )
    return 0


# -- import -----------------------------------------------------------------------------------
def _rows(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise UsageError(f"{path}: no header row")
            for line, row in enumerate(reader, start=2):
                if None in row:
                    raise UsageError(f"{path}:{line}: more fields than the header has")
                yield dict(row)
    else:
        with path.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise UsageError(f"{path}:{line}: not valid JSON: {exc}") from None
                if not isinstance(value, dict):
                    raise UsageError(f"{path}:{line}: each line must be a JSON object")
                yield value


def _insert(table: str, row: dict[str, Any]) -> dict[str, Any]:
    for column in row:
        if not _IDENTIFIER.fullmatch(column):
            raise UsageError(f"column name {column!r} is not a plain identifier")
    columns = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join("?" * len(row))
    values = [
        v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v)
        for v in row.values()
    ]
    return {"sql": f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', "params": values}


def _progress_bar(done: int, total: int, width: int = 30) -> str:
    fraction = done / total if total else 1.0
    filled = int(width * fraction)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} {done}/{total} rows"


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if not _IDENTIFIER.fullmatch(args.table):
        raise UsageError(f"table name {args.table!r} is not a plain identifier")
    fmt = args.format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    job = hashlib.sha256(
        f"{args.db}\0{args.table}\0{digest.hexdigest()}\0{args.rows_per_command}".encode()
    ).hexdigest()[:16]
    progress_path = Path(args.progress_file or f"{path}.import-progress.json")
    state: dict[str, Any] = {"job": job, "rows_sent": 0, "chunks_sent": 0, "last": None}
    if progress_path.exists() and not args.restart:
        try:
            saved = json.loads(progress_path.read_text(encoding="utf-8"))
        except ValueError:
            saved = {}
        if saved.get("job") == job:
            state = saved
            if state["rows_sent"]:
                sys.stderr.write(f"import: resuming after {state['rows_sent']} rows\n")
    total = sum(1 for _ in _rows(path, fmt))
    client = _write_client(args)
    quiet = args.quiet

    def save() -> None:
        tmp = progress_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, progress_path)

    pending: list[dict[str, Any]] = []
    pending_rows = 0
    chunk_rows: list[dict[str, Any]] = []
    chunk_bytes = 0
    chunk_index = int(state["chunks_sent"])
    bookmarks = []

    def close_chunk() -> None:
        nonlocal chunk_rows, chunk_bytes, chunk_index, pending_rows
        if not chunk_rows:
            return
        pending.append(
            {
                "v": 1,
                "id": f"import-{job}-{chunk_index:07d}",
                "db": args.db,
                "statements": chunk_rows,
            }
        )
        pending_rows += len(chunk_rows)
        chunk_index += 1
        chunk_rows, chunk_bytes = [], 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending:
            return
        sent = client.send_many(pending)
        bookmarks.extend(sent)
        state["rows_sent"] = int(state["rows_sent"]) + pending_rows
        state["chunks_sent"] = chunk_index
        state["last"] = {"id": sent[-1].id, "sequence_number": sent[-1].sequence_number}
        save()
        pending, pending_rows = [], 0
        if not quiet:
            sys.stderr.write("\rimport: " + _progress_bar(int(state["rows_sent"]), total))
            sys.stderr.flush()

    skip = int(state["rows_sent"])
    for number, row in enumerate(_rows(path, fmt)):
        if number < skip:
            continue
        statement = _insert(args.table, row)
        size = len(json.dumps(statement))
        if chunk_rows and (
            len(chunk_rows) >= args.rows_per_command or chunk_bytes + size > args.chunk_bytes
        ):
            close_chunk()
            if len(pending) >= 50:
                flush()
        chunk_rows.append(statement)
        chunk_bytes += size
    close_chunk()
    flush()
    if not quiet:
        sys.stderr.write("\rimport: " + _progress_bar(int(state["rows_sent"]), total) + "\n")
    summary: dict[str, Any] = {
        "rows": int(state["rows_sent"]),
        "commands": chunk_index,
        "progress_file": str(progress_path),
    }
    if args.wait and state.get("last"):
        from efsqlite.client import Bookmark

        reader = _read_client(args)
        last = state["last"]
        reader.wait_for(
            Bookmark(args.db, last["id"], "", last["sequence_number"]), timeout=args.timeout
        )
        rejected = []
        for index in range(chunk_index):
            command_id = f"import-{job}-{index:07d}"
            status = reader.command_status(command_id, db=args.db)
            if status.state == "rejected":
                rejected.append(f"{command_id}: {status.error_type}: {status.error_message}")
        summary["rejected"] = len(rejected)
        if rejected:
            _print_json(summary)
            sys.stderr.write(f"efsqlite: {len(rejected)} chunk(s) rejected; first: {rejected[0]}\n")
            return EXIT_REJECTED
    _print_json(summary)
    return 0


# -- dev and schema ---------------------------------------------------------------------------
def cmd_dev(args: argparse.Namespace) -> int:
    from efsqlite.devstack.stack import DevOptions, run_dev

    def env_path(name: str) -> Path | None:
        value = os.environ.get(name)
        return Path(value) if value else None

    migrations = (
        Path(args.migrations_dir) if args.migrations_dir else env_path("EFSQLITE_MIGRATIONS_DIR")
    )
    if migrations is not None and not migrations.is_dir():
        raise UsageError(f"migrations folder {migrations} does not exist")
    options = DevOptions(
        data_dir=Path(args.data_dir or ".efsqlite"),
        host=args.host,
        sqs_port=args.sqs_port,
        lambda_port=args.lambda_port,
        url_port=args.url_port,
        visibility_timeout=args.visibility_timeout,
        max_receive_count=args.max_receive_count,
        migrations_dir=migrations,
        commands=args.commands or os.environ.get("EFSQLITE_COMMANDS") or None,
        queries=args.queries or os.environ.get("EFSQLITE_QUERIES") or None,
        read_mode=args.read_mode,
        app_root=Path(args.app_root) if args.app_root else None,
        journal_fsync=args.journal_fsync,
        verbose=args.verbose,
    )
    run_dev(options)
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    json.dump(message_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


# -- parser -----------------------------------------------------------------------------------
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 picks a free one)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from efsqlite.devstack.stack import DEFAULT_LAMBDA_PORT, DEFAULT_SQS_PORT, DEFAULT_URL_PORT

    parser = _Parser(prog="efsqlite", description=__doc__.split("\n\n")[0])
    where = _Parser(add_help=False)
    group = where.add_argument_group("where the stack is")
    group.add_argument("--data-dir", help="local stack folder holding endpoints.json (./.efsqlite)")
    group.add_argument("--endpoints", help="an endpoints.json file")
    group.add_argument("--queue-url", help="the FIFO queue's URL (AWS)")
    group.add_argument("--dlq-url", help="the DLQ's URL (AWS; status and redrive)")
    group.add_argument("--function-name", help="the reader Lambda's name (AWS)")
    group.add_argument("--region", help="AWS region")
    group.add_argument("--profile", help="AWS profile")

    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    send = commands.add_parser("send", parents=[where], help="send one write command")
    send.add_argument("--db", required=True, help="database name (also the message group)")
    send.add_argument("--id", help="idempotency key (default: a new one)")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--sql", help="one parameterized SQL statement")
    what.add_argument("--command", help="a named command from the registry")
    send.add_argument("--params", help="JSON array or object for --sql")
    send.add_argument("--args", help="JSON object for --command")
    send.add_argument("--expect-schema", type=int, help="schema version the command needs")
    send.add_argument("--wait", action="store_true", help="wait until applied or rejected")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits")
    send.set_defaults(func=cmd_send)

    query = commands.add_parser("query", parents=[where], help="run a read-only query")
    query.add_argument("sql", nargs="?", help="SQL (or use --named)")
    query.add_argument("--db", required=True)
    query.add_argument("--params", help="JSON array or object")
    query.add_argument("--named", help="run a named query instead of SQL")
    query.add_argument("--min-position", help="wait until the writer reached this position")
    query.add_argument("--max-rows", type=_positive)
    query.add_argument("--timeout-ms", type=_positive)
    query.add_argument("--json", action="store_true", help="print the reader's JSON answer")
    query.set_defaults(func=cmd_query)

    status = commands.add_parser("status", parents=[where], help="queues and databases")
    status.add_argument("--db", action="append", help="database to report (repeatable)")
    status.add_argument(
        "--command", dest="command_id", help="report one command's outcome (with one --db)"
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    redrive = commands.add_parser("redrive", parents=[where], help="move the DLQ back")
    redrive.add_argument("--max", type=_positive, help="move at most this many messages")
    redrive.add_argument("--by-hand", action="store_true", help="skip StartMessageMoveTask")
    redrive.add_argument("--quiet", action="store_true", help="no progress on stderr")
    redrive.add_argument("--json", action="store_true")
    redrive.set_defaults(func=cmd_redrive)

    load = commands.add_parser("import", parents=[where], help="load CSV / JSON lines")
    load.add_argument("file")
    load.add_argument("--db", required=True)
    load.add_argument("--table", required=True)
    load.add_argument("--format", choices=["csv", "jsonl"], help="default: from the suffix")
    load.add_argument("--rows-per-command", type=_positive, default=500)
    load.add_argument(
        "--chunk-bytes", type=_positive, default=256 * 1024, help="max bytes of SQL per command"
    )
    load.add_argument("--progress-file", help="default: FILE.import-progress.json")
    load.add_argument("--restart", action="store_true", help="ignore saved progress")
    load.add_argument("--wait", action="store_true", help="wait and report rejected chunks")
    load.add_argument("--timeout", type=float, default=120.0)
    load.add_argument("--quiet", action="store_true")
    load.set_defaults(func=cmd_import)

    schema = commands.add_parser("schema", help="print the wire format's JSON Schema")
    schema.set_defaults(func=cmd_schema)

    dev = commands.add_parser("dev", help="run the local stack until Ctrl-C")
    dev.add_argument("--data-dir", help="state folder (default ./.efsqlite)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--sqs-port", type=_port, default=DEFAULT_SQS_PORT)
    dev.add_argument("--lambda-port", type=_port, default=DEFAULT_LAMBDA_PORT)
    dev.add_argument("--url-port", type=_port, default=DEFAULT_URL_PORT)
    dev.add_argument("--visibility-timeout", type=_positive, default=30)
    dev.add_argument("--max-receive-count", type=_positive, default=5)
    dev.add_argument("--migrations-dir", help="default: $EFSQLITE_MIGRATIONS_DIR")
    dev.add_argument("--commands", help="module:attr of a CommandRegistry")
    dev.add_argument("--queries", help="module:attr of a QueryRegistry")
    dev.add_argument("--read-mode", choices=["snapshot", "direct"], default="snapshot")
    dev.add_argument("--app-root", help="folder holding functions/ (default: the checkout)")
    dev.add_argument("--journal-fsync", action="store_true", help="fsync each queued message")
    dev.add_argument("--verbose", action="store_true")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except WaitTimeoutError as exc:
        sys.stderr.write(f"efsqlite: timeout: {exc}\n")
        return EXIT_TIMEOUT
    except EfsqliteError as exc:
        sys.stderr.write(f"efsqlite: error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("efsqlite: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:
        # botocore's connection and credential errors are user-facing, not bugs.
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, BotoCoreError | ClientError):
            sys.stderr.write(f"efsqlite: error: {exc}\n")
            return EXIT_ERROR
        raise
