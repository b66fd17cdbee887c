"""What caller SQL may touch: the allow-lists the writer's and the reader's authorizers share.

Commands and queries are untrusted. Both authorizers allow what they list here and deny the
rest, so a function or a virtual table that a future SQLite build adds is denied until someone
reads what it does and lists it:

- **Functions**: SQLite's built-in scalar, aggregate, window, date/time, JSON and math
  functions, the full-text functions of the app's own FTS tables, plus the names a deployer
  lists (``EFSQLITE_EXTRA_FUNCTIONS``). Not listed, so denied: ``load_extension``,
  ``fts3_tokenizer`` (its two-argument form registers a raw pointer: the next FTS insert
  crashed the writer with SIGSEGV), ``fts5()`` (a pointer too), the r-tree and geopoly
  debugging functions, ``sqlite_log`` and the compile-option probes.
- **Tables**: columns of the database's own tables, views and virtual tables (the ones its
  migrations created; their names are read from ``sqlite_schema``), of the schema table
  itself, and of the JSON table-valued functions. Every other name is a virtual table SQLite
  makes up on first use (``sqlite_stmt``, which let a command read the writer's savepoint
  name, ``dbstat``, ``sqlite_dbpage``, ``pragma_*``, anything a build adds): none of its
  columns can be read (see :func:`reads_allowed` for the one valueless exception).
- **Cache separation without a secret**: the authorizer runs when a statement is prepared,
  and the engine caches prepared statements by their text. Caller SQL is therefore always run
  as :func:`caller_sql` (a fixed prefix our own statements never start with), so a command
  that sends the exact text of one of our statements (``COMMIT``, a ledger insert) still gets
  a statement of its own, prepared under the caller checks. (Installing an authorizer
  expires every prepared statement, so what matters is what our own code prepares after it:
  the writer's ``SAVEPOINT``/``RELEASE`` within a batch; ``tests/hostile`` sends both.)

DO run caller SQL only as ``caller_sql(text)``.
DON'T widen :data:`BUILTIN_FUNCTIONS` without a test that shows what the function can reach.
DON'T allow ``SQLITE_READ`` of a name because it is absent from a deny-list: unknown means no.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import apsw

from efsqlite.core.engine import Connection

#: Prepended to every caller statement; none of efsqlite's own statements starts with it.
CALLER_SQL_PREFIX = "/* efsqlite caller */ "
#: A name a deployer may list in ``EFSQLITE_EXTRA_FUNCTIONS`` (writer and reader alike).
FUNCTION_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")

_CORE_SCALAR = {
    "abs", "char", "changes", "coalesce", "concat", "concat_ws", "format", "glob", "hex",
    "if", "ifnull", "iif", "instr", "last_insert_rowid", "length", "like", "likelihood",
    "likely", "lower", "ltrim", "max", "min", "nullif", "octet_length", "printf", "quote",
    "random", "randomblob", "replace", "round", "rtrim", "sign", "soundex", "sqlite_source_id",
    "sqlite_version", "substr", "substring", "total_changes", "trim", "typeof", "unhex",
    "unicode", "unistr", "unistr_quote", "unlikely", "upper", "zeroblob",
}  # fmt: skip
_AGGREGATE = {
    "avg", "count", "group_concat", "median", "percentile", "percentile_cont",
    "percentile_disc", "string_agg", "sum", "total",
}  # fmt: skip
_WINDOW = {
    "cume_dist", "dense_rank", "first_value", "lag", "last_value", "lead", "nth_value",
    "ntile", "percent_rank", "rank", "row_number",
}  # fmt: skip
_DATETIME = {
    "current_date", "current_time", "current_timestamp", "date", "datetime", "julianday",
    "strftime", "time", "timediff", "unixepoch",
}  # fmt: skip
_MATH = {
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos",
    "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow",
    "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
}  # fmt: skip
_JSON = {
    "->", "->>", "json", "json_array", "json_array_insert", "json_array_length",
    "json_error_position", "json_extract", "json_group_array", "json_group_object",
    "json_insert", "json_object", "json_patch", "json_pretty", "json_quote", "json_remove",
    "json_replace", "json_set", "json_type", "json_valid", "jsonb", "jsonb_array",
    "jsonb_array_insert", "jsonb_extract", "jsonb_group_array", "jsonb_group_object",
    "jsonb_insert", "jsonb_object", "jsonb_patch", "jsonb_remove", "jsonb_replace", "jsonb_set",
}  # fmt: skip
#: The auxiliary functions of FTS3/4/5 tables (``MATCH`` reaches the authorizer as ``match``).
_FULL_TEXT = {"bm25", "highlight", "match", "matchinfo", "offsets", "snippet"}

#: Every built-in function caller SQL may call (lower case).
BUILTIN_FUNCTIONS: frozenset[str] = frozenset(
    _CORE_SCALAR | _AGGREGATE | _WINDOW | _DATETIME | _MATH | _JSON | _FULL_TEXT
)
#: Table-valued functions (eponymous virtual tables) caller SQL may read.
TABLE_FUNCTIONS: frozenset[str] = frozenset({"json_each", "json_tree"})
#: The schema table under its names. A virtual table's constructor declares its columns by
#: "updating" it, so that action is allowed too; SQLite itself refuses a real write to it.
SCHEMA_TABLES: frozenset[str] = frozenset(
    {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}
)

#: PRAGMAs that virtual table modules run on their own, read-only when given no value (FTS5
#: reads ``data_version`` to notice other connections' writes).
MODULE_PRAGMAS: frozenset[str] = frozenset({"data_version"})

#: Longest SQL text a caller may send, writer and reader alike (characters).
MAX_SQL_CHARS = 100_000

#: Authorizer actions that change the schema, named as the statement that asks for them.
SCHEMA_ACTIONS: dict[int, str] = {
    apsw.SQLITE_CREATE_TABLE: "CREATE TABLE",
    apsw.SQLITE_CREATE_TEMP_TABLE: "CREATE TABLE",
    apsw.SQLITE_CREATE_INDEX: "CREATE INDEX",
    apsw.SQLITE_CREATE_TEMP_INDEX: "CREATE INDEX",
    apsw.SQLITE_CREATE_VIEW: "CREATE VIEW",
    apsw.SQLITE_CREATE_TEMP_VIEW: "CREATE VIEW",
    apsw.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    apsw.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TRIGGER",
    apsw.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    apsw.SQLITE_DROP_TABLE: "DROP TABLE",
    apsw.SQLITE_DROP_TEMP_TABLE: "DROP TABLE",
    apsw.SQLITE_DROP_INDEX: "DROP INDEX",
    apsw.SQLITE_DROP_TEMP_INDEX: "DROP INDEX",
    apsw.SQLITE_DROP_VIEW: "DROP VIEW",
    apsw.SQLITE_DROP_TEMP_VIEW: "DROP VIEW",
    apsw.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    apsw.SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER",
    apsw.SQLITE_DROP_VTABLE: "DROP TABLE",
    apsw.SQLITE_ALTER_TABLE: "ALTER TABLE",
}
#: Where a rejected schema change should go instead.
MIGRATION_HINT = (
    "schema changes go in a migration (a NNNN_name.sql file in EFSQLITE_MIGRATIONS_DIR, "
    'applied on cold start; see docs/architecture.md, "Migrations")'
)
_DDL_RE = re.compile(
    r"^(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
    r"(CREATE|ALTER|DROP)\s+((?:(?:TEMP|TEMPORARY|UNIQUE|VIRTUAL)\s+)*)(TABLE|INDEX|VIEW|TRIGGER)\b",
    re.IGNORECASE | re.DOTALL,
)


def schema_change(action: int, table: str | None) -> str | None:
    """What a denied authorizer action is, if it is a schema change: ``"CREATE TABLE"``...,
    or ``"a schema change"`` for a write to the schema table (the first check SQLite makes
    for ``CREATE``). ``None`` for anything else."""
    if action in SCHEMA_ACTIONS:
        return SCHEMA_ACTIONS[action]
    if action in (apsw.SQLITE_INSERT, apsw.SQLITE_DELETE) and (table or "").lower() in (
        SCHEMA_TABLES
    ):
        return "a schema change"
    return None


def ddl_statement(sql: str) -> str | None:
    """``"CREATE TABLE"``, ``"DROP INDEX"``... if ``sql`` starts (after comments) with DDL."""
    match = _DDL_RE.match(sql)
    if match is None:
        return None
    verb, modifiers, what = (match.group(n).upper() for n in (1, 2, 3))
    return f"{verb} {'VIRTUAL ' if 'VIRTUAL' in modifiers else ''}{what}"


def is_text(value: str) -> bool:
    """True if ``value`` is Unicode text (no lone surrogate): what SQLite can bind.

    JSON's ``"\\ud800"`` escape decodes to a lone surrogate, and binding it raises
    ``UnicodeEncodeError``, which no SQLite error handler catches: check caller text first.
    """
    return value.isascii() or _LONE_SURROGATE_RE.search(value) is None


def caller_sql(sql: str) -> str:
    """The text a caller statement is prepared under (see the module docstring)."""
    return CALLER_SQL_PREFIX + sql


def reads_allowed(table: str | None, column: str | None, schema: frozenset[str]) -> bool:
    """The ``SQLITE_READ`` rule: may caller SQL read ``column`` of ``table``?

    Columns of the database's own tables, of the schema table and of the JSON table-valued
    functions, yes. SQLite also reports a table that a statement uses without reading any
    column (``count(*)``, a common table expression's name) as a read with an empty column
    name: that carries no value, and a CTE's name cannot be known in advance, so it is
    allowed. Every column of any other table is denied.
    """
    if column == "":
        return True
    name = (table or "").lower()
    return name in schema or name in SCHEMA_TABLES or name in TABLE_FUNCTIONS


def function_allow_list(extra: Iterable[str] = ()) -> frozenset[str]:
    """The built-in functions plus the deployer's, all in lower case."""
    return BUILTIN_FUNCTIONS | {name.lower() for name in extra}


def read_schema_names(conn: Connection) -> frozenset[str]:
    """The lower-cased names of the tables, views and virtual tables in ``main``.

    Run it with the caller checks off (our own statement, never caller text).
    """
    rows = conn.execute(
        "SELECT lower(name) FROM sqlite_schema WHERE type IN ('table', 'view')"
    ).fetchall()
    return frozenset(str(name) for (name,) in rows)


def schema_cookie(conn: Connection) -> int:
    """SQLite's schema cookie: it changes whenever any table, view or index is created."""
    return int(conn.pragma("schema_version"))
