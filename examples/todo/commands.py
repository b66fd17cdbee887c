"""The todo service's named commands (``EFSQLITE_COMMANDS=examples.todo.commands:registry``).

Each handler runs inside the writer's batch transaction, in its own savepoint. Business-rule
failures raise ``CommandRejectedError``: the command is recorded as rejected and the FIFO
group keeps moving.
"""

from __future__ import annotations

from efsqlite.write.commands import CommandContext, CommandRegistry
from efsqlite.write.exceptions import CommandRejectedError
from pydantic import BaseModel, ConfigDict, Field

registry = CommandRegistry()


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddTodo(_Args):
    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)


class TodoId(_Args):
    id: str = Field(min_length=1, max_length=64)


class RenameTodo(_Args):
    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)


class SetPriority(_Args):
    id: str = Field(min_length=1, max_length=64)
    priority: int = Field(ge=0, le=9)


@registry.command("add_todo", args=AddTodo)
def add_todo(ctx: CommandContext, args: AddTodo) -> None:
    ctx.execute("INSERT INTO todos (id, title) VALUES (?, ?)", (args.id, args.title))


@registry.command("complete_todo", args=TodoId)
def complete_todo(ctx: CommandContext, args: TodoId) -> None:
    result = ctx.execute("UPDATE todos SET done = 1 WHERE id = ? AND done = 0", (args.id,))
    if result.rowcount == 0:
        raise CommandRejectedError(f"no open todo {args.id!r}", error_type="NotFound")


@registry.command("rename_todo", args=RenameTodo)
def rename_todo(ctx: CommandContext, args: RenameTodo) -> None:
    result = ctx.execute("UPDATE todos SET title = ? WHERE id = ?", (args.title, args.id))
    if result.rowcount == 0:
        raise CommandRejectedError(f"no todo {args.id!r}", error_type="NotFound")


@registry.command("delete_todo", args=TodoId)
def delete_todo(ctx: CommandContext, args: TodoId) -> None:
    ctx.execute("DELETE FROM todos WHERE id = ?", (args.id,))


@registry.command("set_priority", args=SetPriority)
def set_priority(ctx: CommandContext, args: SetPriority) -> None:
    # Needs migration 0002; send it with expect_schema=2 so it waits (fails, then DLQ)
    # instead of being rejected while the column is missing.
    result = ctx.execute("UPDATE todos SET priority = ? WHERE id = ?", (args.priority, args.id))
    if result.rowcount == 0:
        raise CommandRejectedError(f"no todo {args.id!r}", error_type="NotFound")
