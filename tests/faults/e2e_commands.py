"""A named-command registry for the end-to-end fault tests (``--commands`` of the stack).

``gated_insert`` fails (a handler error: the system cannot decide, so SQS retries and then
dead-letters it) while ``gate.open`` is 0, and inserts its row once the gate is open. That
makes commands land in the DLQ on demand, for the redrive test.
"""

from __future__ import annotations

from efsqlite.write.commands import CommandContext, CommandRegistry
from pydantic import BaseModel

registry = CommandRegistry()


class GatedInsert(BaseModel):
    producer: int
    seq: int
    cmd_id: str


class GateClosedError(RuntimeError):
    """Not a rejection: the command is retried until the gate opens."""


@registry.command("gated_insert", args=GatedInsert)
def gated_insert(ctx: CommandContext, args: GatedInsert) -> None:
    ((is_open,),) = ctx.query("SELECT open FROM gate WHERE id = 1")
    if not is_open:
        raise GateClosedError("the gate is closed")
    ctx.execute(
        "INSERT INTO events (producer, seq, cmd_id) VALUES (?, ?, ?)",
        (args.producer, args.seq, args.cmd_id),
    )
