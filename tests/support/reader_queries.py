"""Named queries for the reader tests: ``EFSQLITE_QUERIES=tests.support.reader_queries:queries``."""

from __future__ import annotations

from efsqlite.read.queries import QueryRegistry

queries = QueryRegistry()
queries.add("account_by_id", "SELECT id, name, balance FROM accounts WHERE id = :id")
queries.add("total", "SELECT sum(balance) AS total FROM accounts")
queries.add("sneaky_write", "DELETE FROM accounts")

not_a_registry = {"total": "SELECT 1"}
