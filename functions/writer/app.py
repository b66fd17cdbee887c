"""Writer Lambda: applies SQS FIFO batches of write commands to SQLite on EFS.

Thin by design: the rules live in ``efsqlite.write.apply`` and ``efsqlite.write.writer``.
No ``Tracer()`` here: the X-Ray SDK costs about 680 ms of cold-start imports.

DO answer every event with a ``batchItemFailures`` dict; DON'T let an exception out. The
writer never raises for any event (``Writer.handle_event``); as a last resort, an unexpected
error here is logged and every record of the event is reported failed, so SQS redelivers
them all (the ledger turns the ones that did settle into duplicates): nothing is dropped.
A record without a usable ``messageId`` is reported as an empty ``itemIdentifier``, which
Lambda reads as "the whole batch failed" (see ``Writer.handle_event``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from efsqlite.write.settings import WriterSettings
from efsqlite.write.writer import Writer, invocation_deadline

logger = Logger(service="efsqlite-writer")
metrics = Metrics(namespace="efsqlite", service="efsqlite-writer")

settings = WriterSettings.from_env()
writer = Writer(settings)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Apply one SQS FIFO event; answers ``{"batchItemFailures": [...]}`` and never raises."""
    answered: list[dict[str, Any]] = []
    try:
        return _handle(event, context, answered)
    except Exception:
        if answered:
            # The batch settled and its answer is known; only logging or metrics failed.
            logger.exception("writer answered, then failed to log or flush metrics")
            return answered[0]
        logger.exception("writer failed unexpectedly: every record of the event goes back")
        return everything_failed(event)


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(clear_state=True)
def _handle(event: Any, context: Any, answered: list[dict[str, Any]]) -> dict[str, Any]:
    result = writer.handle_event(event, deadline=invocation_deadline(context))
    answered.append(result.response())
    records = event.get("Records") if isinstance(event, dict) else None
    metrics.add_metric(
        "BatchSize", MetricUnit.Count, len(records) if isinstance(records, list) else 0
    )
    for message_id, reason in result.unroutable:
        logger.error("record cannot be routed to a database", message_id=message_id, reason=reason)
    for batch in result.batches:
        applied, rejected, duplicates = batch.applied, len(batch.rejections), batch.duplicates
        metrics.add_metric("Applied", MetricUnit.Count, applied)
        metrics.add_metric("Rejected", MetricUnit.Count, rejected)
        metrics.add_metric("Duplicates", MetricUnit.Count, duplicates)
        metrics.add_metric("Failed", MetricUnit.Count, len(batch.failed))
        metrics.add_metric("CommitMilliseconds", MetricUnit.Milliseconds, batch.commit_ms)
        for rejection in batch.rejections:
            logger.warning(
                "command rejected",
                db=batch.db,
                command_id=rejection.id,
                error_type=rejection.error_type,
                error_message=rejection.error_message,
            )
        log = logger.error if batch.failed else logger.info
        log(
            "batch settled" if not batch.failed else "batch partly failed",
            db=batch.db,
            applied=applied,
            rejected=rejected,
            duplicates=duplicates,
            failed=len(batch.failed),
            failure_type=batch.failure_type,
            failure_message=batch.failure_message,
            position=batch.position,
            commit_ms=round(batch.commit_ms, 3),
        )
    metrics.add_metric("FailedRecords", MetricUnit.Count, len(result.unroutable))
    return answered[0]


def everything_failed(event: Any) -> dict[str, Any]:
    """Report every record of ``event`` failed: the answer when the writer itself broke.

    A record without a non-empty string ``messageId``, or an event without a ``Records``
    list, adds an empty ``itemIdentifier``: Lambda then fails the whole batch.
    """
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    ids: dict[str, None] = {}
    for raw in records:
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        ids[message_id if isinstance(message_id, str) and message_id else ""] = None
    return {"batchItemFailures": [{"itemIdentifier": m} for m in ids]}
