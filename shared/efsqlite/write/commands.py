"""Named commands: deployer-defined writes with their own argument models.

A deployer builds a :class:`CommandRegistry` in a module of their own and points the writer at
it with ``EFSQLITE_COMMANDS=package.module:registry``::

    registry = CommandRegistry()

    class AddTodo(BaseModel):
        id: str
        title: str

    @registry.command("add_todo", args=AddTodo)
    def add_todo(ctx: CommandContext, args: AddTodo) -> None:
        ctx.execute("INSERT INTO todos (id, title) VALUES (?, ?)", (args.id, args.title))

DO raise :class:`~efsqlite.core.exceptions.CommandRejectedError` for business-rule failures: the
command is recorded as rejected and the FIFO group moves on.
DO run SQL through ``ctx.execute``/``ctx.query``: they prepare it as caller SQL, under the
same allow-list, work budget and caps as a raw command. DON'T use ``ctx.connection`` for SQL.
DON'T commit, open savepoints or talk to other systems from a handler: it runs inside the
writer's batch transaction and may be rolled back (transaction control is denied anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from efsqlite.core import engine
from efsqlite.core.exceptions import RegistryError
from efsqlite.core.loading import Registry, load_registry
from efsqlite.core.sqlpolicy import caller_sql
from efsqlite.core.types import SqlParams, SqlValue
from efsqlite.write.exceptions import CommandRejectedError

ArgsT = TypeVar("ArgsT", bound=BaseModel)

#: Rows :meth:`CommandContext.query` returns at most; more rejects the command
#: (``ResourceLimit``), so a handler's reads cannot grow the writer's memory without bound.
MAX_QUERY_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class StatementResult:
    """What :meth:`CommandContext.execute` reports, under DB-API's names."""

    #: Rows the statement inserted, updated or deleted (SQLite's ``changes()``).
    rowcount: int
    #: The rowid of the connection's most recent successful INSERT.
    lastrowid: int


@dataclass(slots=True)
class CommandContext:
    """What a named command's handler sees: the transaction, and facts about the command."""

    connection: engine.Connection
    db: str
    command_id: str
    schema_version: int

    def execute(self, sql: str, params: SqlParams | Sequence[Any] = ()) -> StatementResult:
        """Run one statement of the handler's to the end, under the caller checks.

        Rows it returns (``RETURNING``) are stepped through and dropped: use :meth:`query`.
        """
        cursor = engine.execute_one(self.connection, caller_sql(sql), params)
        try:
            for _ in cursor:
                pass
        finally:
            cursor.close()
        conn = self.connection
        return StatementResult(rowcount=conn.changes(), lastrowid=conn.last_insert_rowid())

    def query(self, sql: str, params: SqlParams | Sequence[Any] = ()) -> list[tuple[SqlValue, ...]]:
        """The rows of one statement; more than :data:`MAX_QUERY_ROWS` rejects the command."""
        cursor = engine.execute_one(self.connection, caller_sql(sql), params)
        try:
            rows: list[tuple[SqlValue, ...]] = []
            for row in cursor:
                if len(rows) >= MAX_QUERY_ROWS:
                    raise CommandRejectedError(
                        f"a query in the handler returned more than {MAX_QUERY_ROWS} rows",
                        error_type="ResourceLimit",
                    )
                rows.append(row)
            return rows
        finally:
            cursor.close()


Handler = Callable[[CommandContext, ArgsT], None]


@dataclass(frozen=True, slots=True)
class NamedCommandSpec(Generic[ArgsT]):
    name: str
    args_model: type[ArgsT]
    handler: Handler[ArgsT]


class CommandRegistry(Registry[NamedCommandSpec[Any]]):
    """Name to (args model, handler). Lookups are a dict read: cheap on the packed hot path."""

    kind = "command"

    def command(
        self, name: str, *, args: type[ArgsT]
    ) -> Callable[[Handler[ArgsT]], Handler[ArgsT]]:
        """Register the decorated function as the handler of command ``name``."""

        def decorate(
            handler: Handler[ArgsT],
        ) -> Handler[ArgsT]:
            self.register(name, args, handler)
            return handler

        return decorate

    def register(self, name: str, args: type[ArgsT], handler: Handler[ArgsT]) -> None:
        if not (isinstance(args, type) and issubclass(args, BaseModel)):
            raise RegistryError(f"command {name!r}: args must be a pydantic model class")
        self._put(name, NamedCommandSpec(name, args, handler))


def load_commands(path: str | None) -> CommandRegistry:
    """The registry named by ``EFSQLITE_COMMANDS``, or an empty one."""
    return load_registry(path, CommandRegistry)
