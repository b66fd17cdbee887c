"""Property: a patched snapshot is, byte for byte, the source at the same change counter.

Random commits through the real Writer (Lambda-shaped SQS events): inserts of random sizes,
updates that grow and shrink rows, deletes, a ``VACUUM`` shipped as a migration (the file
shrinks), writer cold starts, and reader refreshes at random points. After every refresh the
reader's snapshot must equal the source file (the same bytes SQLite would read) and a fresh
backup of it, and every refresh after the first must have been a patch, not a full copy.

A fresh backup differs from its source in three header fields the backup API sets itself:
the change counter (offset 24), the version-valid-for number (92) and the schema cookie (40).
Those are masked for that comparison only; the snapshot is compared with the source in full.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import apsw
from efsqlite.read.reader import Reader
from efsqlite.write.writer import Writer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.reader_db import make_reader, make_writer, write

SUM = {"db": "main", "sql": "SELECT count(*), coalesce(sum(length(data)), 0) FROM blobs"}
#: Header bytes a backup rewrites: change counter, schema cookie, version-valid-for.
BACKUP_FIELDS = ((24, 28), (40, 44), (92, 96))

Step = tuple[Any, ...]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(1, 30), st.integers(1, 9000)),
        st.tuples(st.just("update"), st.integers(1, 30), st.integers(1, 9000)),
        st.tuples(st.just("delete"), st.integers(1, 60)),
        st.tuples(st.just("churn"), st.integers(1, 40)),
        st.just(("vacuum",)),
        st.just(("restart",)),
        st.just(("refresh",)),
    ),
    min_size=1,
    max_size=24,
)


class World:
    """A writer, a reader in snapshot mode and the migrations folder they share."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.writer: Writer = make_writer(root)
        self.reader: Reader = make_reader(root)
        self.migration = 1
        self.refreshes = 0
        self.moved = True  # the source changed since the last refresh

    def run(self, step: Step) -> None:
        kind = step[0]
        if kind == "insert":
            _, rows, size = step
            self.command([("INSERT INTO blobs (data) VALUES (randomblob(?))", [size])] * rows)
        elif kind == "update":
            _, rows, size = step
            self.command(
                [
                    (
                        "UPDATE blobs SET data = randomblob(?) WHERE id IN "
                        "(SELECT id FROM blobs ORDER BY random() LIMIT ?)",
                        [size, rows],
                    )
                ]
            )
        elif kind == "churn":
            # Grow and free in one transaction with no savepoint open (a migration; commands
            # run in savepoints): the freed pages are freelist leaves SQLite never writes,
            # so the file gets holes that read back as zeros.
            rows = step[1]
            self.migrate(
                "churn",
                "INSERT INTO blobs (data) SELECT randomblob(3000) FROM (WITH RECURSIVE "
                f"r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {rows}) "
                "SELECT i FROM r);\n"
                f"DELETE FROM blobs WHERE id > (SELECT max(id) FROM blobs) - {rows};\n",
            )
        elif kind == "delete":
            self.command([("DELETE FROM blobs WHERE id % 61 < ?", [step[1]])])
        elif kind == "vacuum":
            self.migrate("vacuum", "VACUUM;\n")
        elif kind == "restart":
            self.restart()
        else:
            self.refresh()

    def command(self, statements: list[tuple[str, list[Any]]]) -> None:
        write(self.writer, statements)
        self.moved = True

    def migrate(self, name: str, sql: str) -> None:
        """Ship a migration; the writer's next cold start applies it."""
        self.migration += 1
        (self.root / "migrations" / f"{self.migration:04d}_{name}.sql").write_text(sql)
        self.restart()
        self.moved = True

    def restart(self) -> None:
        """A writer cold start (it applies any new migration before the next command)."""
        self.writer.close()
        self.writer = make_writer(self.root)
        self.writer.database("main")

    def refresh(self) -> None:
        answer = self.reader.handle(SUM)
        assert "error" not in answer and answer["stale"] is False, answer
        self.refreshes += self.moved
        self.moved = False
        self.check()

    def check(self) -> None:
        snap = self.reader._snapshots["main"]
        current = snap.current
        assert current is not None
        source = (self.root / "data" / "main.sqlite").read_bytes()  # between commits only
        image = current.image
        assert int.from_bytes(source[24:28], "big") == image.counter
        state = source[: image.page_count * image.page_size]
        copy = current.path.read_bytes()
        assert len(copy) == len(state)
        assert copy == state, first_difference(copy, state, image.page_size)
        assert masked(copy) == masked(backup(self.root))
        # Every refresh after the first one patched the previous copy.
        assert snap.refreshes == self.refreshes
        assert snap.patches == self.refreshes - 1, snap.last_full_copy_reason

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


def first_difference(a: bytes, b: bytes, page_size: int) -> str:
    for offset in range(0, min(len(a), len(b)), page_size):
        if a[offset : offset + page_size] != b[offset : offset + page_size]:
            return f"page {offset // page_size + 1} differs"
    return f"sizes {len(a)} and {len(b)}"


def backup(root: Path) -> bytes:
    """A fresh copy of the source made with SQLite's backup API."""
    target_path = root / "backup.sqlite"
    target_path.unlink(missing_ok=True)
    source = apsw.Connection(str(root / "data" / "main.sqlite"), flags=apsw.SQLITE_OPEN_READONLY)
    target = apsw.Connection(str(target_path))
    with target.backup("main", source, "main") as copy:
        copy.step(-1)
    target.close()
    source.close()
    return target_path.read_bytes()


def masked(data: bytes) -> bytes:
    out = bytearray(data)
    for start, end in BACKUP_FIELDS:
        out[start:end] = bytes(end - start)
    return bytes(out)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=STEPS)
# Grow, refresh, shrink by VACUUM, refresh, then grow past the old size writing only the
# last page: the spare (two refreshes behind, still long) must be cut at the low water, or
# it keeps old pages where the source reads zeros.
@example(
    steps=[
        ("insert", 30, 3000),
        ("refresh",),
        ("delete", 60),
        ("vacuum",),
        ("refresh",),
        ("churn", 40),
        ("refresh",),
    ]
)
def test_a_patched_snapshot_is_the_source_byte_for_byte(steps: list[Step]) -> None:
    root = Path(tempfile.mkdtemp(prefix="patch-property-"))
    world = World(root)
    try:
        world.command([("INSERT INTO blobs (data) VALUES (randomblob(100))", [])])
        world.refresh()  # the first refresh copies the whole file
        for step in steps:
            world.run(step)
        world.refresh()
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)
