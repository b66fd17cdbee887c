"""The todo service's named queries (``EFSQLITE_QUERIES=examples.todo.queries:queries``).

Kept free of pydantic: the reader imports this module on its cold start.
"""

from __future__ import annotations

from efsqlite.read.queries import QueryRegistry

queries = QueryRegistry()
queries.add(
    "open_todos",
    "SELECT id, title, created_at FROM todos WHERE done = 0 ORDER BY created_at, id",
    description="Todos not done yet, oldest first.",
)
queries.add(
    "todo_by_id",
    "SELECT id, title, done, created_at FROM todos WHERE id = :id",
    description="One todo by its id.",
)
queries.add(
    "todo_counts",
    "SELECT count(*) AS total, coalesce(sum(done), 0) AS done FROM todos",
    description="How many todos, and how many are done.",
)
