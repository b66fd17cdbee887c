"""A snapshot-mode reader process (``snapshot_child.py``) and the checks of what it serves.

The checks compare the reader's answer with what a direct-mode reader (the real
:class:`Reader`, ``read_mode="direct"``) answers on the same file at the same moment, and its
snapshot file with the source's bytes. Both run in this process, and only while no writer is
in a commit: the direct reader's connection is closed before the source is read with a
plain ``open()`` (closing any descriptor of a file drops this process's SQLite locks on it).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults.harness import DB, child_env

CHILD = Path(__file__).with_name("snapshot_child.py")

#: The bank's state in one row: the total, every balance in order, and the transfers.
QUERY = {
    "db": DB,
    "sql": "SELECT (SELECT sum(balance) FROM accounts), "
    "(SELECT group_concat(balance, ',') FROM (SELECT balance FROM accounts ORDER BY id)), "
    "(SELECT count(*) FROM transfers), "
    "(SELECT group_concat(cmd_id, ',') FROM (SELECT cmd_id FROM transfers ORDER BY n))",
}


class ReaderProcess:
    """One reader execution environment: a process with its own snapshots in ``snapshots``.

    ``prefix`` wraps it (an ``strace`` fault injector). :meth:`ask` returns None once the
    process is dead.
    """

    def __init__(self, data_dir: Path, snapshots: Path, prefix: Sequence[str] = ()) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, str(CHILD), str(data_dir), str(snapshots)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        self.alive = self.proc.stdout.readline().strip() == '{"ready": true}'
        self.stderr = ""

    def ask(self, query: dict[str, Any] = QUERY) -> dict[str, Any] | None:
        """The answer and the snapshot's state after it (None if the process died)."""
        if not self.alive:
            return None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(query) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.alive = False
            return None
        line = self.proc.stdout.readline()
        if not line:
            self.alive = False
            return None
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> int:
        """End the process (its handler closes the reader); returns its exit code."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        self.proc.stdout.read()
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self.proc.wait(timeout=60)
        self.alive = False
        return self.proc.returncode


def direct_answer(data_dir: Path, query: dict[str, Any] = QUERY) -> dict[str, Any]:
    """What the reader answers in direct mode (on the EFS file itself), connection closed."""
    from efsqlite.read.reader import Reader
    from efsqlite.read.settings import ReaderSettings

    settings = ReaderSettings(
        data_dir=data_dir, read_mode="direct", snapshot_dir=data_dir.parent / "unused-snapshots"
    )
    reader = Reader(settings)
    try:
        return reader.handle(query)
    finally:
        reader.close()


def same_answer(snapshot: dict[str, Any], direct: dict[str, Any]) -> bool:
    """Equal rows at the equal position (the part of an answer both modes must agree on)."""
    keys = ("columns", "rows", "position", "schema_version")
    return all(snapshot.get(k) == direct.get(k) for k in keys) and "error" not in direct


def snapshot_differs(state: dict[str, Any], source: Path) -> str | None:
    """Why the reader's snapshot is not the source's first ``page_count`` pages (None if it is).

    Reads the source with a plain ``open()``: call only between commits, from a process
    that holds no SQLite connection to it.
    """
    info = state.get(DB) or {}
    if not info.get("path"):
        return "the reader has no snapshot"
    size = info["page_size"] * info["page_count"]
    copy = Path(info["path"]).read_bytes()
    with source.open("rb") as f:
        original = f.read(size)
    if len(copy) != size or len(original) != size:
        return f"sizes: snapshot {len(copy)}, source {len(original)}, expected {size}"
    if copy == original:
        return None
    page_size = info["page_size"]
    for offset in range(0, size, page_size):
        if copy[offset : offset + page_size] != original[offset : offset + page_size]:
            return f"page {offset // page_size + 1} differs from the source"
    return "differs"  # unreachable: equal pages make equal files


def files_under(root: Path) -> list[str]:
    """Every file under ``root``, relative to it."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class SnapshotWatch:
    """A snapshot-mode reader beside a writer's run, checked against a direct read each look.

    Call :meth:`look` only while no commit is in progress (between two events of a live
    writer, or after it died). Each look refreshes the snapshot, then:

    - when a direct read sees a state, the answer must be fresh and equal to it, and the
      snapshot the source's bytes;
    - when a direct read is refused because of a hot journal (a writer died mid-commit), the
      answer must be the last good snapshot's, marked stale.
    """

    def __init__(self, source: Path, snapshots: Path) -> None:
        self.source = source
        self.reader = ReaderProcess(source.parent, snapshots)
        self.problems: list[str] = []
        self.last: dict[str, Any] | None = None
        self.state: dict[str, Any] = {}
        #: Each refresh: "patch", or the reason the whole file was copied.
        self.refreshes: list[str] = []

    def look(self, when: str) -> None:
        reply = self.reader.ask()
        direct = direct_answer(self.source.parent)
        if reply is None:
            self.problems.append(f"{when}: the reader died")
            return
        answer, before, self.state = reply["answer"], self.counts(), reply["snapshot"]
        now = self.counts()
        if now.get("refreshes", 0) > before.get("refreshes", 0):
            self.refreshes.append("patch" if now["patched"] else now["full_copy_reason"])
        refused = direct.get("error", {}).get("type") == "Recovering"
        if refused:
            last = self.last
            if last is None or answer.get("stale") is not True or not same_answer(answer, last):
                self.problems.append(f"{when}: with a hot journal it answered {answer}")
            return
        if answer.get("stale") is not False or not same_answer(answer, direct):
            self.problems.append(f"{when}: answered {answer}, a direct read {direct}")
            return
        self.last = answer
        differs = snapshot_differs(self.state, self.source)
        if differs:
            self.problems.append(f"{when}: the snapshot {differs}")

    def counts(self) -> dict[str, Any]:
        """The reader's refreshes, patches and its last full copy's reason."""
        return dict(self.state.get(DB) or {})

    def close(self) -> None:
        if self.reader.close() != 0:
            self.problems.append(f"the reader failed: {self.reader.stderr[-500:]}")
