"""``efsqlite cost``: a month's bill, line by line, beside DynamoDB and Aurora for the same load.

The model is :mod:`efsqlite.client.cost`; this module reads the options and prints the bill
(a table, ``--json``, or ``--markdown``: the whole of ``docs/cost.md``).
"""

from __future__ import annotations

import argparse
from typing import Any

from efsqlite.cli.common import positive, print_json


def _non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number, 0 or more")
    return value


def _count(text: str) -> int:
    value = _non_negative_number(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text} must be a whole number")
    return int(value)


def add_parser(commands: Any) -> None:
    cost = commands.add_parser("cost", help="a month's bill at list prices, line by line")
    cost.add_argument("--gb", type=_non_negative_number, default=1.0, help="GB stored (1)")
    cost.add_argument("--writes", type=_count, default=100_000, help="writes a month (100,000)")
    cost.add_argument("--reads", type=_count, default=1_000_000, help="reads a month (1,000,000)")
    cost.add_argument(
        "--commands-per-message", type=positive, default=1, help="commands packed per message"
    )
    cost.add_argument("--read-mode", choices=["direct", "snapshot"], default="direct")
    cost.add_argument(
        "--no-snapshot-patch",
        dest="snapshot_patch",
        action="store_false",
        help="snapshot refreshes copy the whole file (EFSQLITE_SNAPSHOT_PATCH=false)",
    )
    cost.add_argument("--throughput", choices=["bursting", "elastic"], default="bursting")
    cost.add_argument("--storage", choices=["regional", "one-zone"], default="regional")
    cost.add_argument("--backup-days", type=_count, default=3, help="BackupRetentionDays (3)")
    cost.add_argument("--custom-metrics", action="store_true", help="CustomMetrics=true")
    cost.add_argument("--platform-logs", action="store_true", help="PlatformLogs=true")
    cost.add_argument("--detailed-alarms", action="store_true", help="DetailedAlarms=true")
    cost.add_argument("--region", default="us-east-1")
    shown = cost.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true")
    shown.add_argument("--markdown", action="store_true", help="print docs/cost.md")
    cost.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efsqlite.client import cost, costdoc

    if args.markdown:
        print(costdoc.document(), end="")
        return 0
    load = cost.Load(
        gb=args.gb,
        writes=args.writes,
        reads=args.reads,
        commands_per_message=args.commands_per_message,
        read_mode=args.read_mode,
        snapshot_patch=args.snapshot_patch,
        throughput=args.throughput,
        storage=args.storage,
        backup_days=args.backup_days,
        region=args.region,
        custom_metrics=args.custom_metrics,
        platform_logs=args.platform_logs,
        detailed_alarms=args.detailed_alarms,
    )
    ours = cost.bill(load)
    others = cost.compare(load)
    if args.json:
        print_json(
            {
                "load": costdoc.load_json(load),
                "prices_read_on": costdoc.prices_read_on(),
                "usage_measured_at": costdoc.usage_measured_at(),
                "efsqlite": ours.to_json(),
                "compared": [other.to_json() for other in others],
            }
        )
        return 0
    print(costdoc.bill_table(ours))
    for note in ours.notes:
        print(f"note: {note}")
    print()
    for other in others:
        print(f"{other.name}: ${other.total:,.2f} a month (--json for its lines)")
    print(
        f"(list prices read {costdoc.prices_read_on()}, "
        f"usage measured {costdoc.usage_measured_at()})"
    )
    return 0
