"""The ``efsqlite`` command line: send, query, status, redrive, import, schema, dev, doctor,
cost.

Every subcommand finds the queue and the reader the way the client library does: the local
stack's ``endpoints.json`` (``--data-dir``, default ``./.efsqlite``), or ``--queue-url`` and
``--function-name`` for AWS (credentials and region from the usual boto3 places).

A user mistake ends with one line on stderr and a non-zero exit, never a traceback:
exit 1 for errors, 2 for bad usage, 3 for a rejected command (``send --wait``), 4 for a
timeout.

One module per subcommand (``send``, ``query``, ``status``, ``redrive``, ``importer``,
``schema``, ``dev``, ``doctor``, ``cost``), each with ``add_parser`` and ``run(args) -> int``;
``common`` holds what they share. DO keep the work in the client library
(``efsqlite.client.status``, ``.redrive``, ``.importer``, ``.preflight``, ``.cost``) and only
parse, call and print here: users script the library, not the CLI.
DON'T let a subcommand module import another one: each stands alone on ``common``.
"""

from __future__ import annotations

import argparse
import sys

from efsqlite.cli import cost, dev, doctor, importer, query, redrive, schema, send, status
from efsqlite.cli.common import (
    EXIT_ERROR,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Parser,
    UsageError,
    format_table,
    where_parser,
)
from efsqlite.client.exceptions import WaitTimeoutError
from efsqlite.core.exceptions import EfsqliteError

__all__ = [
    "EXIT_ERROR",
    "EXIT_REJECTED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "format_table",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="efsqlite", description=__doc__.split("\n\n")[0])
    where = where_parser()
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (send, query, status, redrive, importer, doctor):
        module.add_parser(commands, where)
    schema.add_parser(commands)
    cost.add_parser(commands)
    dev.add_parser(commands)
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
