"""What every subcommand shares: exit codes, ``UsageError``, argument types, the
``--data-dir``/``--queue-url``/... options, the clients they build, and printing.

DO build clients here (``write_client``, ``read_client``, ``endpoints``) so every subcommand
finds the stack the same way. DON'T import boto3 or the client at module level: ``efsqlite
schema`` and ``efsqlite --help`` must not pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from efsqlite.core.exceptions import EfsqliteError

if TYPE_CHECKING:
    from efsqlite.client import Endpoints, ReadClient, WriteClient

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_TIMEOUT = 4


class UsageError(EfsqliteError):
    """A command-line value the CLI cannot use (bad JSON, a missing file, ...)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def where_parser() -> argparse.ArgumentParser:
    """The options that say where the stack is, as a parent parser."""
    where = Parser(add_help=False)
    group = where.add_argument_group("where the stack is")
    group.add_argument("--data-dir", help="local stack folder holding endpoints.json (./.efsqlite)")
    group.add_argument("--endpoints", help="an endpoints.json file")
    group.add_argument("--queue-url", help="the FIFO queue's URL (AWS)")
    group.add_argument("--dlq-url", help="the DLQ's URL (AWS; status and redrive)")
    group.add_argument("--function-name", help="the reader Lambda's name (AWS)")
    group.add_argument("--region", help="AWS region")
    group.add_argument("--profile", help="AWS profile")
    return where


# -- argument values --------------------------------------------------------------------------
def json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def json_params(text: str | None, what: str = "--params") -> list[Any] | dict[str, Any]:
    value = json_arg(text, what)
    if value is None:
        return []
    if not isinstance(value, list | dict):
        raise UsageError(f"{what} must be a JSON array or object, not {type(value).__name__}")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 picks a free one)")
    return value


# -- clients ----------------------------------------------------------------------------------
def endpoints(args: argparse.Namespace) -> Endpoints:
    from efsqlite.client import resolve_endpoints

    return resolve_endpoints(
        queue_url=args.queue_url,
        function_name=args.function_name,
        dlq_url=args.dlq_url,
        endpoints_file=args.endpoints,
        data_dir=args.data_dir,
        region=args.region,
    )


def session(args: argparse.Namespace) -> Any:
    if not args.profile:
        return None
    import boto3

    return boto3.Session(profile_name=args.profile)


def write_client(args: argparse.Namespace) -> WriteClient:
    from efsqlite.client import WriteClient

    return WriteClient(session=session(args), endpoints=endpoints(args))


def read_client(args: argparse.Namespace) -> ReadClient:
    from efsqlite.client import ReadClient

    return ReadClient(session=session(args), endpoints=endpoints(args))


# -- printing ---------------------------------------------------------------------------------
def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


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
