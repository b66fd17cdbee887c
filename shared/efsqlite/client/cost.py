"""The cost model as code: a month of efsqlite on AWS, line by line (``efsqlite cost``).

Inputs are a :class:`Load` (GB stored, writes and reads a month, commands per message, read
mode, throughput mode, storage class, backup days, Region). Prices come from
:mod:`efsqlite.client.prices` (dated, with sources); what each operation does comes from
:mod:`efsqlite.client.usage` (measured by ``make bench``: EFS operations and metered bytes per
commit and per query, Lambda milliseconds per invocation under the EFS model, log bytes per
invocation). :func:`bill` multiplies them out; :func:`compare` prices the same load on DynamoDB
on-demand with a Lambda in front and on Aurora Serverless v2 with the Data API.

DO derive every quantity from the load, a measured figure or a template default, and name
which in the line's ``basis``; DON'T put a number in a line that is none of those (an
assumption goes in :data:`ASSUMPTIONS`, with its reason, and ``docs/cost.md`` prints them all).
DON'T change a template default here alone: ``tests/infra`` keeps :data:`TEMPLATE_DEFAULTS`
equal to ``infra/template.yaml``, and ``docs/cost.md`` and the README are generated from this
module (``efsqlite cost --markdown``) and checked against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from efsqlite.client import prices, usage
from efsqlite.core.exceptions import EfsqliteError

ReadMode = Literal["direct", "snapshot"]
Throughput = Literal["bursting", "elastic"]
StorageClass = Literal["regional", "one-zone"]

#: 730 hours, AWS's billing month.
MONTH_S = 2_628_000
GB = 1e9
KIB = 1024

#: infra/template.yaml's defaults that the bill depends on (tests/infra keeps them in step).
TEMPLATE_DEFAULTS: MappingProxyType[str, Any] = MappingProxyType(
    {
        "throughput": "bursting",
        "storage": "regional",
        "backup_days": 3,
        "custom_metrics": False,
        "platform_logs": False,
        "detailed_alarms": False,
        "alarms": 2,
        "detailed_alarms_extra": 2,
        "writer_memory_mb": 512,
        "reader_memory_mb": 512,
        "read_mode": "direct",
        "ledger_retention_days": 35,
        "log_retention_days": 30,
        "staleness_s": 1.0,
    }
)
#: The writer's custom metrics when CustomMetrics=true (functions/writer/app.py).
WRITER_METRICS = (
    "BatchSize",
    "Applied",
    "Rejected",
    "Duplicates",
    "Failed",
    "CommitMilliseconds",
    "FailedRecords",
)

#: What the model assumes where nothing here can measure it, each with its reason.
ASSUMPTIONS: MappingProxyType[str, tuple[float, str]] = MappingProxyType(
    {
        "command_bytes": (
            1024,
            "bytes of one command on the wire: a write of a row or two is at most 1 KB",
        ),
        "sqs_idle_pollers": (
            5,
            "long polls the SQS event source keeps open when idle (Lambda's documented start "
            "of 5 concurrent pollers); each waits 20 s, so an idle queue still costs requests",
        ),
        "sqs_poll_wait_s": (20, "the event source's long-poll wait (the maximum SQS allows)"),
        "environments_per_function": (
            1,
            "warm environments per function at these loads (one request every few seconds)",
        ),
        "cold_starts_per_environment_month": (
            730,
            "one cold start an hour per environment (Lambda recycles environments; not "
            "measurable here), billed for the measured import time since Lambda bills init",
        ),
        "log_event_overhead_bytes": (
            26,
            "bytes CloudWatch Logs counts per log event on top of its message",
        ),
        "dynamodb_lambda_ms": (
            10,
            "handler time of a Lambda in front of DynamoDB (one GetItem or PutItem call)",
        ),
        "aurora_min_acu": (
            0.5,
            "Aurora Serverless v2's minimum capacity kept up: at a request every few seconds "
            "it would not auto-pause",
        ),
        "aurora_io_per_write": (2, "I/O requests per small write (row and index pages)"),
        "aurora_io_per_read": (1, "I/O requests per point read that misses the buffer cache"),
    }
)

#: Lambda's START, END and REPORT lines for one invocation (``PlatformLogs=true``), as AWS's
#: Lambda developer guide shows them in the Text format; their length stands for what each
#: invocation adds (the JSON format's platform records carry the same fields).
PLATFORM_LOG_LINES = (
    "START RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Version: 12\n",
    "END RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\n",
    "REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\tDuration: 15.74 ms\t"
    "Billed Duration: 16 ms\tMemory Size: 512 MB\tMax Memory Used: 72 MB\t\n",
)


class CostModelError(EfsqliteError, ValueError):
    """A load the model cannot price (a Region without prices, a negative count)."""


@dataclass(frozen=True, slots=True)
class Load:
    """A month of use, and the deployment choices that change its price."""

    gb: float
    writes: int
    reads: int
    commands_per_message: int = 1
    read_mode: ReadMode = "direct"
    #: Snapshot refreshes patch the pages that changed (``EFSQLITE_SNAPSHOT_PATCH``); off,
    #: each copies the whole file.
    snapshot_patch: bool = True
    throughput: Throughput = "bursting"
    storage: StorageClass = "regional"
    backup_days: int = 3
    region: str = "us-east-1"
    custom_metrics: bool = False
    platform_logs: bool = False
    detailed_alarms: bool = False

    def check(self) -> None:
        if self.region not in prices.REGIONS:
            known = ", ".join(prices.REGIONS)
            raise CostModelError(f"no price table for {self.region!r} (the model has {known})")
        if self.gb < 0 or self.writes < 0 or self.reads < 0 or self.backup_days < 0:
            raise CostModelError("sizes, counts and backup days cannot be negative")
        if self.commands_per_message < 1:
            raise CostModelError("commands per message must be at least 1")


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of the bill: ``quantity`` of ``unit`` at ``rate`` dollars each."""

    service: str
    item: str
    quantity: float
    unit: str
    rate: float
    basis: str

    @property
    def monthly(self) -> float:
        return self.quantity * self.rate


@dataclass(frozen=True, slots=True)
class Bill:
    """A month's line items, their total, and what the model noticed on the way."""

    name: str
    items: list[LineItem]
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(item.monthly for item in self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total": round(self.total, 4),
            "items": [{**asdict(item), "monthly": round(item.monthly, 4)} for item in self.items],
            "notes": self.notes,
        }


def _assumed(name: str) -> float:
    return ASSUMPTIONS[name][0]


def _per_commit(commands: int) -> Mapping[str, float]:
    """Measured figures of one commit of ``commands`` commands, between the batch sizes the
    benchmark ran (1 and 10) and growing by the 1-to-10 slope per command past them."""
    one, ten = usage.MEASURED["commit"]["1"], usage.MEASURED["commit"]["10"]
    share = (commands - 1) / 9
    return {key: one[key] + (ten[key] - one[key]) * share for key in one}


def _lambda_lines(
    name: str, invocations: float, ms: float, memory_mb: int, init_ms: float, rates: Any
) -> list[LineItem]:
    gb_s = invocations * max(1, math.ceil(ms)) / 1000 * memory_mb / 1024
    cold = _assumed("environments_per_function") * _assumed("cold_starts_per_environment_month")
    init_gb_s = cold * math.ceil(init_ms) / 1000 * memory_mb / 1024
    return [
        LineItem(
            "Lambda",
            f"{name} requests",
            invocations / 1e6,
            "million requests",
            rates["lambda_requests_million"],
            "one invocation per batch" if name == "writer" else "one invocation per read",
        ),
        LineItem(
            "Lambda",
            f"{name} duration",
            gb_s,
            "GB-seconds",
            rates["lambda_arm_gb_second"],
            f"{ms:.2f} ms per invocation (measured under the EFS model), billed per started "
            f"ms, at {memory_mb} MB",
        ),
        LineItem(
            "Lambda",
            f"{name} cold starts",
            init_gb_s,
            "GB-seconds",
            rates["lambda_arm_gb_second"],
            f"{cold:.0f} a month at {init_ms:.0f} ms of imports (measured from the built layer)",
        ),
    ]


def bill(load: Load) -> Bill:
    """The monthly bill of ``load`` on efsqlite, one line per metered item."""
    load.check()
    rates = prices.REGIONS[load.region]
    measured = usage.MEASURED
    defaults = TEMPLATE_DEFAULTS
    notes: list[str] = []
    items: list[LineItem] = []

    messages = math.ceil(load.writes / load.commands_per_message)
    commits = messages  # one message per batch: at these loads a batch rarely holds two
    commit = _per_commit(load.commands_per_message)
    ledger_gb = (
        (load.writes * defaults["ledger_retention_days"] / 30)
        * measured["ledger_bytes_per_command"]
        / GB
    )
    stored_gb = load.gb + ledger_gb

    # -- EFS storage, backups, throughput
    storage_rate = rates[
        "efs_standard_gb_month" if load.storage == "regional" else "efs_one_zone_gb_month"
    ]
    items.append(
        LineItem(
            "EFS",
            f"storage ({load.storage})",
            stored_gb,
            "GB-months",
            storage_rate,
            f"{load.gb:g} GB of data and {ledger_gb:.3f} GB of ledger "
            f"({measured['ledger_bytes_per_command']:.0f} B per command, measured, kept "
            f"{defaults['ledger_retention_days']} days)",
        )
    )
    if load.backup_days:
        copies = load.backup_days + 1 if load.writes else 1
        items.append(
            LineItem(
                "AWS Backup",
                f"EFS backups, kept {load.backup_days} days",
                stored_gb * copies,
                "GB-months",
                rates["backup_efs_warm_gb_month"],
                f"{copies} copies: a file changed since the last daily backup is stored again "
                "whole",
            )
        )
    read_bytes, read_ms = _efs_reads(load, commits)
    read_bytes += commits * commit["metered_read_bytes"]
    write_bytes = commits * commit["metered_write_bytes"]
    if load.throughput == "elastic":
        items.append(
            LineItem(
                "EFS",
                "Elastic throughput, read",
                read_bytes / GB,
                "GB metered",
                rates["efs_elastic_read_gb"],
                "metered bytes per commit and per query "
                "(measured: 32 KiB at least per data operation, 4 KiB per metadata operation)",
            )
        )
        items.append(
            LineItem(
                "EFS",
                "Elastic throughput, write",
                write_bytes / GB,
                "GB metered",
                rates["efs_elastic_write_gb"],
                "metered bytes written per commit (measured)",
            )
        )
    else:
        baseline = 50 * KIB * (stored_gb * GB / 2**30) * MONTH_S
        used = read_bytes / 3 + write_bytes
        if used > baseline:
            notes.append(
                f"Bursting: {used / GB:.1f} GB metered a month (reads counted at a third) "
                f"against a baseline of {baseline / GB:.1f} GB earned by {stored_gb:.2f} GB "
                "stored: the burst credits would run out; use Elastic throughput"
            )
        else:
            notes.append(
                f"Bursting: {used / GB:.2f} GB metered a month (reads counted at a third), "
                f"within the {baseline / GB:.1f} GB baseline {stored_gb:.2f} GB stored earns"
            )

    # -- Lambda
    items += _lambda_lines(
        "writer",
        commits,
        commit["modelled_ms"],
        defaults["writer_memory_mb"],
        measured["init_ms"]["writer"],
        rates,
    )
    items += _lambda_lines(
        "reader",
        load.reads,
        read_ms,
        defaults["reader_memory_mb"],
        measured["init_ms"]["reader"],
        rates,
    )

    # -- SQS
    chunks = math.ceil(load.commands_per_message * _assumed("command_bytes") / (64 * KIB))
    idle_polls = _assumed("sqs_idle_pollers") * MONTH_S / _assumed("sqs_poll_wait_s")
    receives = max(idle_polls, commits * chunks)
    items.append(
        LineItem(
            "SQS",
            "FIFO SendMessage",
            messages * chunks / 1e6,
            "million requests",
            rates["sqs_fifo_requests_million"],
            f"{messages:,} messages of {load.commands_per_message} command(s), {chunks} 64 KB "
            "chunk(s) each",
        )
    )
    items.append(
        LineItem(
            "SQS",
            "FIFO ReceiveMessage (event source)",
            receives / 1e6,
            "million requests",
            rates["sqs_fifo_requests_million"],
            f"{_assumed('sqs_idle_pollers'):.0f} long polls of "
            f"{_assumed('sqs_poll_wait_s'):.0f} s kept open, or one per batch if more",
        )
    )
    items.append(
        LineItem(
            "SQS",
            "FIFO DeleteMessageBatch",
            commits / 1e6,
            "million requests",
            rates["sqs_fifo_requests_million"],
            "one per settled batch",
        )
    )

    # -- CloudWatch
    alarms = defaults["alarms"] + (defaults["detailed_alarms_extra"] if load.detailed_alarms else 0)
    items.append(
        LineItem(
            "CloudWatch",
            "alarms",
            alarms,
            "alarm-months",
            rates["cloudwatch_alarm_month"],
            "DLQ not empty and oldest command too old"
            + (
                ", writer errors and throttles (DetailedAlarms=true)"
                if load.detailed_alarms
                else ""
            )
            + ": on AWS/SQS and AWS/Lambda metrics, which cost nothing extra",
        )
    )
    if load.custom_metrics:
        items.append(
            LineItem(
                "CloudWatch",
                "writer custom metrics",
                len(WRITER_METRICS),
                "metric-months",
                rates["cloudwatch_metric_month"],
                "CustomMetrics=true: " + ", ".join(WRITER_METRICS),
            )
        )
    platform = 0
    if load.platform_logs:
        platform = sum(len(line.encode()) for line in PLATFORM_LOG_LINES)
        platform += int(_assumed("log_event_overhead_bytes")) * len(PLATFORM_LOG_LINES)
    writer_lines = measured["log_bytes"]["writer_per_invocation"]
    reader_lines = measured["log_bytes"]["reader_per_invocation"]
    per_writer = writer_lines + (_assumed("log_event_overhead_bytes") if writer_lines else 0)
    per_reader = reader_lines + (_assumed("log_event_overhead_bytes") if reader_lines else 0)
    per_writer += platform
    per_reader += platform
    log_gb = (commits * per_writer + load.reads * per_reader) / GB
    items.append(
        LineItem(
            "CloudWatch",
            "logs ingested",
            log_gb,
            "GB",
            rates["cloudwatch_logs_ingest_gb"],
            f"{per_writer:.0f} B per writer and {per_reader:.0f} B per reader invocation "
            "(our lines, measured"
            + (
                f"; Lambda's START/END/REPORT, {platform} B)"
                if platform
                else "; no START/END/REPORT: PlatformLogs=false)"
            ),
        )
    )
    items.append(
        LineItem(
            "CloudWatch",
            "logs stored",
            log_gb,
            "GB-months",
            rates["cloudwatch_logs_store_gb_month"],
            f"a month's logs kept {defaults['log_retention_days']} days (stored uncompressed: "
            "an upper bound)",
        )
    )
    return Bill(f"efsqlite ({_options(load)})", items, notes)


def _efs_reads(load: Load, commits: int) -> tuple[float, float]:
    """Metered read bytes and reader milliseconds of ``load``'s reads."""
    query = usage.MEASURED["query"]
    if load.read_mode == "direct":
        # A read after a commit re-reads the pages the commit changed; the others hit the
        # reader's own page cache and pay only the lock and header check.
        after = min(load.reads, commits)
        warm = load.reads - after
        read_bytes = warm * query["direct"]["metered_bytes"]
        read_bytes += after * query["direct_after_write"]["metered_bytes"]
        ms = (
            warm * query["direct"]["modelled_ms"]
            + after * query["direct_after_write"]["modelled_ms"]
        ) / max(load.reads, 1)
        return read_bytes, ms
    # Snapshot: a query inside the staleness window touches EFS at most for its check; a
    # commit makes the next read past the window refresh the copy. A full copy reads the
    # whole file. A patch reads the pages the commits since the last refresh wrote: priced
    # as one measured one-commit patch per commit and environment (an upper bound: the
    # locks and the log are read once per refresh), never above the full copies.
    windows = MONTH_S / TEMPLATE_DEFAULTS["staleness_s"]
    environments = _assumed("environments_per_function")
    refreshes = min(commits, load.reads, windows) * environments
    mb = load.gb * 1000
    per_mb = query["snapshot_refresh_per_mb"]
    full_bytes = refreshes * mb * per_mb["metered_bytes"]
    full_ms = refreshes * mb * per_mb["modelled_ms"]
    patch = query.get("snapshot_patch_after_write")
    if load.snapshot_patch and patch is not None:
        patched = commits * environments if refreshes else 0
        refresh_bytes = min(patched * patch["metered_bytes"], full_bytes)
        refresh_ms = min(patched * patch["modelled_ms"], full_ms)
    else:
        refresh_bytes, refresh_ms = full_bytes, full_ms
    read_bytes = load.reads * query["snapshot"]["metered_bytes"] + refresh_bytes
    ms = (load.reads * query["snapshot"]["modelled_ms"] + refresh_ms) / max(load.reads, 1)
    return read_bytes, ms


def _options(load: Load) -> str:
    reads: str = load.read_mode
    if reads == "snapshot":
        reads += " (patched)" if load.snapshot_patch else " (full copies)"
    return (
        f"{reads} reads, {load.throughput} throughput, {load.storage} storage, "
        f"backups {load.backup_days} days"
    )


def compare(load: Load) -> list[Bill]:
    """The same month on DynamoDB on-demand behind a Lambda, and on Aurora Serverless v2."""
    load.check()
    rates = prices.REGIONS[load.region]
    requests = load.writes + load.reads
    lambda_ms = _assumed("dynamodb_lambda_ms")
    dynamo = Bill(
        "DynamoDB on-demand with a Lambda in front",
        [
            LineItem(
                "DynamoDB",
                "writes",
                load.writes / 1e6,
                "million WRU",
                rates["dynamodb_write_million"],
                "one write unit per item of at most 1 KB",
            ),
            LineItem(
                "DynamoDB",
                "strongly consistent reads",
                load.reads / 1e6,
                "million RRU",
                rates["dynamodb_read_million"],
                "one read unit per item of at most 4 KB",
            ),
            LineItem(
                "DynamoDB",
                "storage",
                load.gb,
                "GB-months",
                rates["dynamodb_storage_gb_month"],
                "the same data",
            ),
            LineItem(
                "Lambda",
                "requests",
                requests / 1e6,
                "million requests",
                rates["lambda_requests_million"],
                "one invocation per read or write",
            ),
            LineItem(
                "Lambda",
                "duration",
                requests * lambda_ms / 1000 * 0.5,
                "GB-seconds",
                rates["lambda_arm_gb_second"],
                f"{lambda_ms:.0f} ms at 512 MB (assumed)",
            ),
        ],
    )
    acu = _assumed("aurora_min_acu")
    ios = load.writes * _assumed("aurora_io_per_write") + load.reads * _assumed(
        "aurora_io_per_read"
    )
    aurora = Bill(
        "Aurora Serverless v2 with the Data API",
        [
            LineItem(
                "Aurora",
                "capacity",
                acu * MONTH_S / 3600,
                "ACU-hours",
                rates["aurora_acu_hour"],
                f"{acu} ACU kept up all month",
            ),
            LineItem(
                "Aurora",
                "storage",
                load.gb,
                "GB-months",
                rates["aurora_storage_gb_month"],
                "the same data",
            ),
            LineItem(
                "Aurora",
                "I/O",
                ios / 1e6,
                "million I/O",
                rates["aurora_io_million"],
                "I/O requests per write and per read (assumed)",
            ),
            LineItem(
                "RDS Data API",
                "requests",
                requests / 1e6,
                "million requests",
                rates["rds_data_api_million"],
                "one request per read or write",
            ),
        ],
    )
    return [dynamo, aurora]


def with_options(load: Load, **changes: Any) -> Load:
    """``load`` with some deployment choices changed (for side-by-side tables)."""
    return replace(load, **changes)
