"""Named queries: a deployer's fixed, reviewed SQL, callable by name.

A deployer builds a :class:`QueryRegistry` in a module of their own and points the reader at
it with ``EFSQLITE_QUERIES=package.module:registry``; with ``EFSQLITE_ALLOW_RAW_SQL=false``
callers can then run only those::

    queries = QueryRegistry()
    queries.add("order_by_id", "SELECT id, total FROM orders WHERE id = :id")

A named query still runs on the hardened read-only connection: naming a query restricts what
callers may ask, it does not grant anything.

DO give each query the parameters it needs by name (``:id``) so callers pass an object.
DON'T import pydantic here or in the registry module: it is on the reader's cold start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from efsqlite.core.exceptions import RegistryError
from efsqlite.core.loading import load_object

QUERY_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(QUERY_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class NamedQuery:
    name: str
    sql: str
    description: str = ""


class QueryRegistry:
    """Name to SQL. Lookups are one dict read."""

    def __init__(self) -> None:
        self._queries: dict[str, NamedQuery] = {}

    def add(self, name: str, sql: str, *, description: str = "") -> NamedQuery:
        """Register ``sql`` under ``name``; names are unique."""
        if not _NAME_RE.fullmatch(name):
            raise RegistryError(f"query name {name!r} must match {QUERY_NAME_PATTERN}")
        if name in self._queries:
            raise RegistryError(f"query {name!r} is registered twice")
        if not isinstance(sql, str) or not sql.strip():
            raise RegistryError(f"query {name!r} has no SQL")
        query = NamedQuery(name, sql, description)
        self._queries[name] = query
        return query

    def get(self, name: str) -> NamedQuery | None:
        return self._queries.get(name)

    def __iter__(self) -> Iterator[NamedQuery]:
        return iter(self._queries.values())

    def __len__(self) -> int:
        return len(self._queries)


def load_queries(path: str | None) -> QueryRegistry:
    """The registry named by ``EFSQLITE_QUERIES``, or an empty one."""
    if path is None:
        return QueryRegistry()
    registry = load_object(path)
    if not isinstance(registry, QueryRegistry):
        raise RegistryError(f"{path!r} is a {type(registry).__name__}, not a QueryRegistry")
    return registry
