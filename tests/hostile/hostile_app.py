"""A named-command registry whose handler runs the SQL it is given, through ``ctx``.

A deployer's handler is trusted code, but its SQL goes through ``ctx.execute``/``ctx.query``
and so runs under the same caller checks as a raw command; this registry lets the hostile
suite prove that.
"""

from __future__ import annotations

from efsqlite.write.commands import CommandContext, CommandRegistry
from pydantic import BaseModel

registry = CommandRegistry()


class SqlArgs(BaseModel):
    marker: str
    sql: str
    query: bool = False


@registry.command("run_sql", args=SqlArgs)
def run_sql(ctx: CommandContext, args: SqlArgs) -> None:
    ctx.execute("INSERT INTO kv (k, v) VALUES (?, 'marker')", (args.marker,))
    if args.query:
        ctx.query(args.sql)
    else:
        ctx.execute(args.sql)
