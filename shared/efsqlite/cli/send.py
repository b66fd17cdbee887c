"""``efsqlite send``: one write command (SQL or a named command), optionally waiting for it.

DO build the command with the client's helpers (``sql_command``, ``named_command``) so the CLI
sends exactly what a Python producer would, and check it with the client's ``encode_command``
(the writer's own models) before any client is built: a mistake then needs no running stack,
and its one line names the flag (``--db 'x y': a database name must match ...``).
DON'T write validation rules here: the wire format's models are their one source.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from efsqlite.cli.common import (
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    UsageError,
    command_error,
    json_arg,
    json_params,
    print_json,
    read_client,
    write_client,
)
from efsqlite.client.exceptions import WaitTimeoutError


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
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
    send.set_defaults(func=run)


def _flags(args: argparse.Namespace) -> dict[tuple[str | int, ...], tuple[str, Any]]:
    sql = args.sql if args.sql is not None and len(args.sql) <= 40 else None
    return {
        ("db",): ("--db", args.db),
        ("id",): ("--id", args.id),
        ("expect_schema",): ("--expect-schema", args.expect_schema),
        ("statements", 0, "sql"): ("--sql", sql),
        ("statements", 0, "params"): ("--params", None),
        ("command",): ("--command", args.command),
        ("args",): ("--args", None),
    }


def run(args: argparse.Namespace) -> int:
    from efsqlite.client import encode_command, named_command, sql_command
    from efsqlite.client.exceptions import InvalidCommandError

    if args.command is not None and args.params is not None:
        raise UsageError("--params goes with --sql; a named command takes --args")
    if args.sql is not None and args.args is not None:
        raise UsageError("--args goes with --command; SQL takes --params")
    if args.sql is not None:
        command = sql_command(
            args.db,
            args.sql,
            json_params(args.params),
            id=args.id,
            expect_schema=args.expect_schema,
        )
    else:
        command_args = json_arg(args.args, "--args") or {}
        if not isinstance(command_args, dict):
            raise UsageError("--args must be a JSON object")
        command = named_command(
            args.db, args.command, command_args, id=args.id, expect_schema=args.expect_schema
        )
    try:
        encode_command(command)
    except InvalidCommandError as exc:
        raise command_error(exc, _flags(args)) from None
    bookmark = write_client(args).send(command)
    result: dict[str, Any] = {
        "db": bookmark.db,
        "id": bookmark.id,
        "message_id": bookmark.message_id,
        "sequence_number": bookmark.sequence_number,
    }
    if not args.wait:
        print_json(result)
        return 0
    try:
        status = read_client(args).wait_for(bookmark, timeout=args.timeout)
    except WaitTimeoutError as exc:
        # The message was sent: its bookmark goes to stdout whatever happens next.
        last = exc.status
        result.update(state=last.state if last else "unknown", position=None)
        if last is not None and last.failing:
            result.update(error_type=last.error_type, error_message=last.error_message)
        print_json(result)
        sys.stderr.write(f"efsqlite: {'' if exc.reason else 'timeout: '}{exc}\n")
        return EXIT_TIMEOUT
    result.update(state=status.state, position=status.position)
    if status.state == "rejected":
        result.update(error_type=status.error_type, error_message=status.error_message)
        print_json(result)
        sys.stderr.write(
            f"efsqlite: command {bookmark.id} was rejected: {status.error_type}: "
            f"{status.error_message}\n"
        )
        return EXIT_REJECTED
    print_json(result)
    return 0
