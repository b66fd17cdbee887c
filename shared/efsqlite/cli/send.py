"""``efsqlite send``: one write command (SQL or a named command), optionally waiting for it.

DO build the command with the client's helpers (``sql_command``, ``named_command``) so the CLI
sends exactly what a Python producer would. DON'T validate here: ``WriteClient`` refuses an
invalid command before sending, with the writer's own models.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from efsqlite.cli.common import (
    EXIT_REJECTED,
    UsageError,
    json_arg,
    json_params,
    print_json,
    read_client,
    write_client,
)


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


def run(args: argparse.Namespace) -> int:
    from efsqlite.client import named_command, sql_command

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
    status = read_client(args).wait_for(bookmark, timeout=args.timeout)
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
