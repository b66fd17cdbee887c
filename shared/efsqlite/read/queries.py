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
from dataclasses import dataclass

from efsqlite.core.exceptions import RegistryError
from efsqlite.core.loading import Registry, load_registry
from efsqlite.core.names import REGISTERED_NAME_PATTERN

_NAME_RE = re.compile(REGISTERED_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class NamedQuery:
    name: str
    sql: str
    description: str = ""


class QueryRegistry(Registry[NamedQuery]):
    """Name to SQL. Lookups are one dict read."""

    kind = "query"

    def add(self, name: str, sql: str, *, description: str = "") -> NamedQuery:
        """Register ``sql`` under ``name``; names are unique."""
        if not _NAME_RE.fullmatch(name):
            raise RegistryError(f"query name {name!r} must match {REGISTERED_NAME_PATTERN}")
        if not isinstance(sql, str) or not sql.strip():
            raise RegistryError(f"query {name!r} has no SQL")
        return self._put(name, NamedQuery(name, sql, description))


def load_queries(path: str | None) -> QueryRegistry:
    """The registry named by ``EFSQLITE_QUERIES``, or an empty one."""
    return load_registry(path, QueryRegistry)
