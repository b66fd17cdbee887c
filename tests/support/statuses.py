"""Command statuses as the ledger reports them, shared by the unit tests of answers and status."""

from efsqlite.core.ledger import CommandStatus

FAILING = CommandStatus(
    "c5",
    "pending",
    error_type="MigrationFailed",
    error_message="database has migrations [2] that this code does not know",
    attempts=2,
    receive_count=2,
    receives_left=3,
    failing_since_ms=1_700_000_000_000,
    last_failed_ms=1_700_000_030_000,
)
PARKED = CommandStatus(
    "c6",
    "in_dlq",
    error_type="SchemaNotReady",
    error_message="needs 3",
    attempts=5,
    receive_count=5,
    receives_left=0,
    failing_since_ms=1,
    last_failed_ms=2,
)
