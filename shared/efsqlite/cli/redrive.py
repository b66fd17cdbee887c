"""``efsqlite redrive``: move the DLQ back to the command queue, with progress on stderr.

The work is :func:`efsqlite.client.redrive.redrive`; this module checks the options, draws the
progress line and prints the summary.
DON'T swallow a partial redrive: SQS refusing a message (or a failed move task) ends with an
error and exit 1, after what was moved is moved.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from efsqlite.cli.common import UsageError, endpoints, positive, print_json, session
from efsqlite.core.exceptions import EfsqliteError

if TYPE_CHECKING:
    from efsqlite.client.redrive import RedriveProgress


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    redrive = commands.add_parser("redrive", parents=[where], help="move the DLQ back")
    redrive.add_argument("--max", type=positive, help="move at most this many messages")
    redrive.add_argument("--by-hand", action="store_true", help="skip StartMessageMoveTask")
    redrive.add_argument("--quiet", action="store_true", help="no progress on stderr")
    redrive.add_argument("--json", action="store_true")
    redrive.set_defaults(func=run)


def _show(progress: RedriveProgress) -> None:
    from efsqlite.client.redrive import MOVE_TASK

    if progress.method == MOVE_TASK:
        sys.stderr.write(
            f"\rredrive (move task {progress.task_handle}): "
            f"{progress.moved}/{progress.total or '?'} moved"
        )
    else:
        sys.stderr.write(f"\rredrive: {progress.moved} moved")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from efsqlite.client.queues import connect_sqs
    from efsqlite.client.redrive import MOVE_TASK, redrive

    sqs, found = connect_sqs(endpoints(args), session(args))
    if not found.dlq_url or not found.queue_url:
        raise UsageError(
            "redrive needs the queue and its DLQ: pass --queue-url (with a redrive policy) "
            "or --dlq-url"
        )
    result = redrive(
        found,
        sqs=sqs,
        by_hand=args.by_hand,
        limit=args.max,
        on_progress=None if args.quiet else _show,
    )
    if not args.quiet and (result.method == MOVE_TASK or result.moved):
        sys.stderr.write("\n")
    if result.failures:
        first = result.failures[0]
        if result.method == MOVE_TASK:
            raise EfsqliteError(first.reason)
        raise EfsqliteError(
            f"moved {result.moved}, then the queue refused {len(result.failures)}: "
            f"{first.reason}. Run redrive again"
        )
    summary = {key: getattr(result, key) for key in ("moved", "method", "dlq_before", "dlq_after")}
    if args.json:
        print_json(summary)
    else:
        print(
            f"redrive: moved {result.moved} message(s) from the DLQ to the queue "
            f"({result.method}); DLQ held {summary['dlq_before']}, now {summary['dlq_after']}"
        )
    return 0
