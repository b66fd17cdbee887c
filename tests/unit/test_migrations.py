from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from efsqlite.core.connections import open_writer_connection
from efsqlite.write.exceptions import MigrationError
from efsqlite.write.migrations import discover, migrate, split_statements


def test_split_keeps_triggers_and_quoted_semicolons_whole() -> None:
    sql = """
    CREATE TABLE a (x TEXT);
    INSERT INTO a VALUES ('1;2');
    CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO a VALUES ('x'); SELECT 1; END;
    """
    statements = split_statements(sql)
    assert len(statements) == 3
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END;")


def test_incomplete_statement_is_refused() -> None:
    with pytest.raises(MigrationError, match="incomplete"):
        split_statements("CREATE TABLE a (x); CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "1, 2, 3"),
        (["0001_a.sql", "001_b.sql"], "twice"),
        (["create.sql"], "NNNN_description.sql"),
        (["0000_zero.sql"], "start at 1"),
    ],
)
def test_discover_refuses_bad_sets(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        discover(tmp_path, "main")


def test_per_database_folder_wins(tmp_path: Path) -> None:
    (tmp_path / "0001_all.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "0001_billing.sql").write_text("CREATE TABLE b (x);")
    assert [m.name for m in discover(tmp_path, "main")] == ["all"]
    assert [m.name for m in discover(tmp_path, "billing")] == ["billing"]


def test_failed_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    # GIVEN a migration whose second statement fails
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "0001_ok.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "m" / "0002_bad.sql").write_text("CREATE TABLE b (x); INSERT INTO nope VALUES (1);")
    conn = open_writer_connection(tmp_path / "db.sqlite")
    # WHEN migrating
    with pytest.raises(MigrationError, match=r"2_bad failed"):
        migrate(conn, discover(tmp_path / "m", "db"))
    # THEN version 1 is applied and recorded, and nothing of version 2 exists
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "a" in names and "b" not in names
    assert not conn.in_transaction


def test_fresh_database_gets_its_ledger_with_the_first_migration(tmp_path: Path) -> None:
    # GIVEN a new database file and two migrations
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x);")
    conn = open_writer_connection(tmp_path / "db.sqlite")
    statements: list[str] = []
    conn.exec_trace = lambda _cursor, sql, _bindings: statements.append(sql.strip()) or True
    # WHEN migrating
    assert migrate(conn, discover(tmp_path, "db")) == 2
    # THEN the first commit holds migration 1 as well as the ledger: no reader can see a
    # database with a ledger but without the application's tables (schema version 0)
    commits = [i for i, sql in enumerate(statements) if sql == "COMMIT"]
    assert len(commits) == 2
    first_table = next(i for i, sql in enumerate(statements) if sql.startswith("CREATE TABLE a"))
    assert first_table < commits[0]


def test_fresh_database_whose_first_migration_fails_stays_empty(tmp_path: Path) -> None:
    # GIVEN a new database file whose only migration fails
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE a (x); INSERT INTO nope VALUES (1);")
    conn = open_writer_connection(tmp_path / "db.sqlite")
    # WHEN migrating
    with pytest.raises(MigrationError, match=r"1_bad failed"):
        migrate(conn, discover(tmp_path, "db"))
    # THEN nothing was committed, not even the ledger tables
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)


def test_transaction_control_in_a_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_tx.sql").write_text("BEGIN; CREATE TABLE a (x); COMMIT;")
    conn = open_writer_connection(tmp_path / "db.sqlite")
    with pytest.raises(MigrationError, match="transaction control"):
        migrate(conn, discover(tmp_path, "db"))


def test_database_ahead_of_the_code_is_refused(tmp_path: Path) -> None:
    # GIVEN a database migrated to version 2 by newer code
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x);")
    conn = open_writer_connection(tmp_path / "db.sqlite")
    migrate(conn, discover(tmp_path, "db"))
    # WHEN older code that knows only version 1 starts
    (tmp_path / "0002_b.sql").unlink()
    # THEN it refuses rather than writing with the wrong schema in mind
    with pytest.raises(MigrationError, match="does not know"):
        migrate(conn, discover(tmp_path, "db"))


def test_writer_connection_pragmas(tmp_path: Path) -> None:
    conn = open_writer_connection(tmp_path / "sub" / "db.sqlite", busy_timeout_ms=1234)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (1234,)
    assert conn.execute("PRAGMA trusted_schema").fetchone() == (0,)
    # AND it is the pinned build's, hardened: no attachments, no extensions, defensive
    assert isinstance(conn, apsw.Connection)
    assert conn.limit(apsw.SQLITE_LIMIT_ATTACHED, -1) == 0
    assert conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, -1) == 1
    assert conn.config(apsw.SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, -1) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"CREATE TABLE a (x TEXT DEFAULT '\xe9');", "not UTF-8"),
        (b"CREATE TABLE a (x);\x00", "NUL"),
    ],
)
def test_migration_that_is_not_text_is_a_migration_error_naming_it(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "0001_latin1.sql").write_bytes(content)
    with pytest.raises(MigrationError, match=message) as caught:
        discover(tmp_path, "main")
    assert "0001_latin1.sql" in str(caught.value)


def test_migration_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    # A directory, a dangling link and a FIFO (reading it would block the cold start)
    (tmp_path / "0001_dir.sql").mkdir()
    with pytest.raises(MigrationError, match=r"0001_dir\.sql is not a regular file"):
        discover(tmp_path, "main")
    (tmp_path / "0001_dir.sql").rmdir()
    (tmp_path / "0001_link.sql").symlink_to(tmp_path / "nowhere")
    with pytest.raises(MigrationError, match="not a regular file"):
        discover(tmp_path, "main")
    (tmp_path / "0001_link.sql").unlink()
    os.mkfifo(tmp_path / "0001_fifo.sql")
    # In a child with a timeout: a regression would block on the FIFO, not fail.
    probe = (
        "import sys; from pathlib import Path; from efsqlite.write.migrations import discover\n"
        "try:\n    discover(Path(sys.argv[1]), 'main')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.startswith("MigrationError") and "not a regular file" in done.stdout


def test_migration_versions_are_ascii_digits(tmp_path: Path) -> None:
    (tmp_path / "\u0661_arabic.sql").write_text("CREATE TABLE a (x);")
    with pytest.raises(MigrationError, match="NNNN_description"):
        discover(tmp_path, "main")


def test_a_vacuum_migration_runs_outside_the_transaction_and_is_recorded(tmp_path: Path) -> None:
    # GIVEN a database that grew and then lost its rows
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "0001_t.sql").write_text("CREATE TABLE t (v BLOB);")
    conn = open_writer_connection(tmp_path / "db.sqlite")
    migrate(conn, discover(tmp_path / "m", "main"))
    conn.execute("INSERT INTO t VALUES (randomblob(200000))")
    conn.execute("DELETE FROM t")
    grown = (tmp_path / "db.sqlite").stat().st_size
    # WHEN a migration holding only VACUUM ships (comments aside)
    (tmp_path / "m" / "0002_vacuum.sql").write_text("-- reclaim the space\nVACUUM;\n")
    assert migrate(conn, discover(tmp_path / "m", "main")) == 2
    # THEN the file shrank, the migration is recorded, and the writer still attaches nothing
    assert (tmp_path / "db.sqlite").stat().st_size < grown
    assert conn.execute("SELECT version FROM _efsqlite_migrations").fetchall() == [(1,), (2,)]
    assert conn.limit(apsw.SQLITE_LIMIT_ATTACHED, -1) == 0
    conn.close()


@pytest.mark.parametrize("sql", ["VACUUM INTO '{copy}';", "CREATE TABLE u (x); VACUUM;"])
def test_vacuum_mixed_with_anything_else_fails_the_migration(tmp_path: Path, sql: str) -> None:
    # GIVEN VACUUM INTO, or VACUUM beside another statement  WHEN migrating
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "0001_v.sql").write_text(sql.format(copy=tmp_path / "copy.sqlite"))
    conn = open_writer_connection(tmp_path / "db.sqlite")
    # THEN it runs inside the migration's transaction like any statement, and SQLite refuses
    with pytest.raises(MigrationError, match="1_v failed: cannot VACUUM from within"):
        migrate(conn, discover(tmp_path / "m", "main"))
    assert not (tmp_path / "copy.sqlite").exists()
    conn.close()
