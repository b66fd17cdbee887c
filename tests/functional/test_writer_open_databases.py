"""The writer keeps at most ``EFSQLITE_MAX_OPEN_DATABASES`` databases open, closing the least
recently used first, and a database it closed reopens and still applies each command once.

Open connections are counted twice, by counts that cannot drift apart from the truth: the file
descriptors of this process that point at the test's ``*.sqlite`` files (``/proc/self/fd``),
and the writer's own map. The descriptors are also counted right after every connection the
writer opens, so a peak inside a batch (a new database being built) cannot hide between
batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from efsqlite.core import engine
from efsqlite.core.exceptions import InvalidSettingError
from efsqlite.write import writer as writer_module
from efsqlite.write.settings import (
    DEFAULT_MAX_OPEN_DATABASES,
    MAX_OPEN_DATABASES_LIMIT,
    WriterSettings,
)
from efsqlite.write.writer import Writer

from tests.support.events import redelivered, sqs_event, sqs_record
from tests.support.sample_app import registry
from tests.support.sqlite_files import open_db

PROC_FD = Path("/proc/self/fd")
pytestmark = pytest.mark.skipif(not PROC_FD.is_dir(), reason="needs /proc/self/fd (Linux)")


def open_sqlite_files(folder: Path) -> list[str]:
    """Names of the database files under ``folder`` this process holds a descriptor on.

    Counts the staging name of a database being built (``<db>.sqlite.new``) as well.
    """
    names = []
    for fd in os.listdir(PROC_FD):
        try:
            target = Path(os.readlink(PROC_FD / fd))
        except OSError:  # closed since the listing (the listing's own descriptor, say)
            continue
        if target.parent == folder and target.name.endswith((".sqlite", ".sqlite.new")):
            names.append(target.name)
    return sorted(names)


def put(cid: str, db: str) -> dict[str, Any]:
    sql = "INSERT INTO kv (k, v) VALUES (?, 'x')"
    return {"v": 1, "id": cid, "db": db, "statements": [{"sql": sql, "params": [cid]}]}


class Counted:
    """The writer under test, and the descriptor count seen after each connection it opened."""

    def __init__(self, data_dir: Path, migrations_dir: Path, cap: int) -> None:
        self.data_dir = data_dir
        self.cap = cap
        self.peaks: list[int] = []
        self.writer = Writer(
            WriterSettings(
                data_dir=data_dir,
                migrations_dir=migrations_dir,
                databases="*",
                busy_timeout_ms=200,
                max_open_databases=cap,
            ),
            registry=registry,
        )

    def send(self, *records: dict[str, Any]) -> list[Any]:
        result = self.writer.handle_event(sqs_event(*records))
        assert result.failed_message_ids() == [], result
        return result.batches

    def open_files(self) -> list[str]:
        return open_sqlite_files(self.data_dir)


@pytest.fixture
def counted(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, migrations_dir: Path
) -> Iterator[Callable[[int], Counted]]:
    made: list[Counted] = []
    real_open = writer_module.open_writer_connection

    def counting_open(*args: Any, **kwargs: Any) -> engine.Connection:
        conn = real_open(*args, **kwargs)
        for one in made:
            one.peaks.append(len(one.open_files()))
        return conn

    monkeypatch.setattr(writer_module, "open_writer_connection", counting_open)

    def make(cap: int) -> Counted:
        one = Counted(data_dir, migrations_dir, cap)
        made.append(one)
        return one

    yield make
    for one in made:
        one.writer.close()


def test_more_databases_than_the_cap_never_hold_more_than_the_cap_open(
    counted: Callable[[int], Counted],
) -> None:
    # GIVEN a writer that may keep 3 databases open, and 7 databases written in turn, twice
    subject = counted(3)
    dbs = [f"tenant-{n}" for n in range(7)]
    for round_ in range(2):
        for db in dbs:
            # WHEN each gets a batch (the first round creates it)
            subject.send(sqs_record(put(f"c-{db}-{round_}", db), group=db))
            # THEN this process holds exactly the databases the writer's map holds, at most 3
            open_now = subject.writer.open_databases()
            assert len(open_now) <= 3
            assert subject.open_files() == sorted(f"{d}.sqlite" for d in open_now)
            assert open_now[-1] == db
    # AND no connection the writer opened, staging copies included, ever pushed it past 3
    assert subject.peaks and max(subject.peaks) <= 3
    # AND every command was applied, to its own database
    for db in dbs:
        with open_db(subject.data_dir / f"{db}.sqlite") as conn:
            keys = [k for (k,) in conn.execute("SELECT k FROM kv WHERE k != 'seed' ORDER BY k")]
        assert keys == [f"c-{db}-0", f"c-{db}-1"]


def test_the_least_recently_used_database_is_the_one_closed(
    counted: Callable[[int], Counted],
) -> None:
    # GIVEN a cap of 3, databases a, b and c opened in that order, then a used again
    subject = counted(3)
    for n, db in enumerate(("a", "b", "c", "a")):
        subject.send(sqs_record(put(f"c-{n}", db), group=db))
    assert subject.writer.open_databases() == ["b", "c", "a"]
    # WHEN a fourth database opens
    subject.send(sqs_record(put("c-d", "d"), group="d"))
    # THEN b, used longest ago, was closed (its descriptor too); a, c and d stay open
    assert subject.writer.open_databases() == ["c", "a", "d"]
    assert subject.open_files() == ["a.sqlite", "c.sqlite", "d.sqlite"]


def test_one_event_for_more_databases_than_the_cap_applies_every_group(
    counted: Callable[[int], Counted],
) -> None:
    # GIVEN a cap of 2 and one event holding groups for 5 databases, two records each
    subject = counted(2)
    records = [sqs_record(put(f"c-{db}-{n}", db), group=db) for db in "vwxyz" for n in range(2)]
    # WHEN it is handled
    batches = subject.send(*records)
    # THEN every group's batch applied on its own open database: none closed under it
    assert [(b.db, b.applied, b.failure_type) for b in batches] == [(db, 2, None) for db in "vwxyz"]
    assert subject.writer.open_databases() == ["y", "z"]
    assert subject.open_files() == ["y.sqlite", "z.sqlite"]
    assert max(subject.peaks) <= 2


def test_a_closed_database_reopens_and_still_applies_exactly_once(
    counted: Callable[[int], Counted],
) -> None:
    # GIVEN a cap of 2, a command applied to a, then a closed to make room for b and c
    subject = counted(2)
    first = sqs_record(put("c-once", "a"), group="a")
    [applied] = subject.send(first)
    assert applied.applied == 1
    subject.send(sqs_record(put("c-b", "b"), group="b"))
    subject.send(sqs_record(put("c-c", "c"), group="c"))
    assert "a" not in subject.writer.open_databases()
    assert "a.sqlite" not in subject.open_files()
    # WHEN the same command comes again (a redelivery and a redrive) with a new one
    again = [
        redelivered(first),
        redelivered(first, new_message_id=True),
        sqs_record(put("c-new", "a"), group="a"),
    ]
    [batch] = subject.send(*again)
    # THEN a reopened, the ledger knew both copies as duplicates and only the new one applied
    assert (batch.duplicates, batch.applied) == (2, 1)
    assert subject.writer.open_databases() == ["c", "a"]
    with open_db(subject.data_dir / "a.sqlite") as conn:
        rows = list(conn.execute("SELECT k FROM kv WHERE k != 'seed' ORDER BY k"))
    assert rows == [("c-new",), ("c-once",)]


def test_the_default_cap_and_its_bounds() -> None:
    assert WriterSettings().max_open_databases == DEFAULT_MAX_OPEN_DATABASES == 64
    assert WriterSettings.from_env({"EFSQLITE_MAX_OPEN_DATABASES": "1"}).max_open_databases == 1
    limit = str(MAX_OPEN_DATABASES_LIMIT)
    assert WriterSettings.from_env({"EFSQLITE_MAX_OPEN_DATABASES": limit}).max_open_databases == 512


@pytest.mark.parametrize(
    "value", ["0", "-1", "513", "1024", "9" * 5000, "sixty-four", "64.5", "1e3", "0x40", "6 4"]
)
def test_a_hostile_max_open_databases_is_refused_at_cold_start(value: str) -> None:
    with pytest.raises(InvalidSettingError, match="EFSQLITE_MAX_OPEN_DATABASES"):
        WriterSettings.from_env({"EFSQLITE_MAX_OPEN_DATABASES": value})


def test_the_handler_does_not_start_with_a_hostile_cap(
    monkeypatch: pytest.MonkeyPatch, cold_start_writer: Callable[[], ModuleType]
) -> None:
    # GIVEN a deployment that sets the cap to 0
    monkeypatch.setenv("EFSQLITE_MAX_OPEN_DATABASES", "0")
    # WHEN the writer cold-starts THEN it refuses, naming the variable
    with pytest.raises(InvalidSettingError, match=r"EFSQLITE_MAX_OPEN_DATABASES=.*greater than"):
        cold_start_writer()
