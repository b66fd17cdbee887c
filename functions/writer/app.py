"""Writer Lambda: applies SQS FIFO batches of write commands to SQLite on EFS.

Thin by design: the rules live in ``efsqlite.apply`` and ``efsqlite.writer``.
No ``Tracer()`` here: the X-Ray SDK costs about 680 ms of cold-start imports.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from efsqlite.settings import WriterSettings
from efsqlite.writer import Writer

logger = Logger(service="efsqlite-writer")
metrics = Metrics(namespace="efsqlite", service="efsqlite-writer")

settings = WriterSettings.from_env()
writer = Writer(settings)


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = writer.handle_event(event)
    metrics.add_metric("BatchSize", MetricUnit.Count, len(event.get("Records") or []))
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
    return result.response()
