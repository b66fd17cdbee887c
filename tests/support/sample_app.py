"""A small named-command registry and schema used by the writer tests."""

from __future__ import annotations

from pathlib import Path

from efsqlite.write.commands import CommandContext, CommandRegistry
from efsqlite.write.exceptions import CommandRejectedError
from pydantic import BaseModel, Field

MIGRATIONS = {
    "0001_create_kv.sql": """
        CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
        -- a semicolon inside a string must not split the statement
        INSERT INTO kv (k, v) VALUES ('seed', 'a;b');
    """,
    "0002_accounts.sql": """
        CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
        CREATE TABLE audit (n INTEGER PRIMARY KEY, note TEXT);
        CREATE TRIGGER accounts_audit AFTER UPDATE ON accounts BEGIN
            INSERT INTO audit (note) VALUES ('update ' || NEW.id);
        END;
    """,
}

registry = CommandRegistry()


class PutArgs(BaseModel):
    k: str = Field(min_length=1)
    v: str


class TransferArgs(BaseModel):
    source: str
    target: str
    amount: int = Field(gt=0)


class NoArgs(BaseModel):
    pass


@registry.command("put", args=PutArgs)
def put(ctx: CommandContext, args: PutArgs) -> None:
    ctx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (args.k, args.v))


@registry.command("transfer", args=TransferArgs)
def transfer(ctx: CommandContext, args: TransferArgs) -> None:
    rows = ctx.query("SELECT balance FROM accounts WHERE id = ?", (args.source,))
    if not rows:
        raise CommandRejectedError(f"no account {args.source!r}", error_type="NoSuchAccount")
    ctx.execute(
        "UPDATE accounts SET balance = balance - ? WHERE id = ?", (args.amount, args.source)
    )
    ctx.execute(
        "UPDATE accounts SET balance = balance + ? WHERE id = ?", (args.amount, args.target)
    )


@registry.command("explode", args=NoArgs)
def explode(ctx: CommandContext, args: NoArgs) -> None:
    raise RuntimeError("a bug in a handler")


def write_migrations(folder: Path, names: list[str] | None = None) -> Path:
    """Write the sample migrations (all, or those named) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in MIGRATIONS.items():
        if names is None or name in names:
            (folder / name).write_text(sql)
    return folder
