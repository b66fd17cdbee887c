"""What every subcommand shares: exit codes, ``UsageError``, argument types, the
``--data-dir``/``--queue-url``/... options, the clients they build, and printing.

DO build clients here (``write_client``, ``read_client``, ``endpoints``) so every subcommand
finds the stack the same way. DON'T import boto3 or the client at module level: ``efsqlite
schema`` and ``efsqlite --help`` must not pay for them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from efsqlite.core.exceptions import EfsqliteError

if TYPE_CHECKING:
    from efsqlite.client import Endpoints, ReadClient, WriteClient
    from efsqlite.client.exceptions import InvalidCommandError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_TIMEOUT = 4


class UsageError(EfsqliteError):
    """A command-line value the CLI cannot use (bad JSON, a missing file, ...)."""


_REST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_REST_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain_text(text: str) -> str:
    """Docstring text for a terminal: reST markup (````x````, ``:mod:`x```) dropped."""
    text = _REST_ROLE.sub(r"\1", text)
    return _REST_LITERAL.sub(lambda m: m.group(1) or m.group(2), text)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block, and help text that comes
    from a docstring shows no reST markup."""

    def format_help(self) -> str:
        return plain_text(super().format_help())

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

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise UsageError(f"{what}: {number} is not a finite number (JSON numbers are)")
        return value

    def not_json(name: str) -> NoReturn:
        raise UsageError(f"{what}: {name} is not JSON (RFC 8259 has no NaN or Infinity)")

    try:
        return json.loads(text, parse_float=finite, parse_constant=not_json)
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


#: Where a wire-format field comes from on the command line: its ``loc`` prefix -> the flag.
Flags = Mapping[tuple[str | int, ...], tuple[str, Any]]


def command_error(exc: InvalidCommandError, flags: Flags) -> UsageError:
    """``exc`` (the client's own validation) as one line naming the flags, not the fields:
    ``invalid command: --db 'bad name!': a database name must match ...``.

    ``flags`` maps a field's ``loc`` prefix to its flag and value (``None``: not shown); the
    longest prefix wins and the rest of the ``loc`` follows the flag (``--params[0]``).
    """
    if not exc.problems:
        return UsageError(str(exc))
    parts = []
    for problem in exc.problems:
        where = problem.field or "command"
        for size in range(len(problem.loc), 0, -1):
            found = flags.get(problem.loc[:size])
            if found is None:
                continue
            flag, value = found
            rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem.loc[size:])
            shown = (
                "" if value is None else f" {value!r}" if isinstance(value, str) else f" {value}"
            )
            where = f"{flag}{rest}{shown}"
            break
        parts.append(f"{where}: {problem.rule}")
    return UsageError("invalid command: " + "; ".join(parts))


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
    """A plain-text table for people: NULL for null, ``x'..'`` hex for blobs, long cells cut."""
    from efsqlite.client.values import blob_bytes, format_blob

    def cell(value: Any) -> str:
        data = blob_bytes(value)
        if data is not None:
            return format_blob(data, width)
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
