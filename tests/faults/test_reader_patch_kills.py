"""Crash matrix of a snapshot refresh by patching: the reader SIGKILLed at every call of it.

A real reader process (the reader Lambda's handler, ``snapshot_child.py``, snapshot mode,
patching on) answers three queries on the bank database while a real :class:`Writer` (in
this process, closed between commands) commits a batch between two of them:

1. the first query copies the whole file (and its twin, the spare);
2. the second patches the spare with the pages the batch wrote, read from the source;
3. the third patches the older spare: pages written since it by the second batch come from
   the source, pages only the first batch wrote from the current snapshot on local disk.

A fault-free run under ``strace`` counts each syscall a refresh makes (``pread64`` on the
source, the page log and the copies, ``pwrite64`` and ``ftruncate`` on the copy, ``rename``
of spare, copy and old snapshot) before and during queries 2 and 3. Then, for each of those
two queries, each syscall and every K from 1 to its count in that query, a new process is
killed by ``strace`` on entry to its K-th call of that query (the count before it + K).

Pass, at every point: the process died in that query without answering it; a second reader
process started on the same snapshot folder (a Lambda environment restarted in the same
``/tmp``) answers fresh, equal to a direct-mode answer and to the fault-free run's; the dead
process's folder and lock are gone (none of its ``.tmp``, ``.spare`` or ``.sqlite`` left,
none served); and the new snapshot is, byte for byte, the source's pages.
"""

from __future__ import annotations

import collections
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults import harness
from tests.faults.snapshot_reader import (
    ReaderProcess,
    direct_answer,
    files_under,
    same_answer,
    snapshot_differs,
)
from tests.support.events import sqs_event

pytestmark = pytest.mark.faults

#: The syscalls of a refresh that a kill can land on (reads, writes, cuts, renames).
SYSCALLS = ("pread64", "pwrite64", "ftruncate", "rename")
#: Kill points run in parallel: mostly process start-up and waiting on strace.
WORKERS = 3
#: Queries 2 and 3 (1-based) are the patches.
PATCH_QUERIES = (2, 3)
_WRITE_TO_STDOUT = re.compile(r"^write\(1<")
_RENAME = re.compile(r'^rename\("([^"]*)", "([^"]*)"\)')
_LOCAL_READ = re.compile(r"^pread64\(\d+<[^>]*/snapshots/[^>]*\.sqlite>")

Reply = dict[str, Any]


@dataclass
class World:
    """A database primed with one logged commit, two more batches, and the fault-free run."""

    primed: Path
    migrations: Path
    batches: list[list[dict[str, Any]]]
    #: The fault-free run's replies to the three queries.
    replies: list[Reply]
    #: Calls of each syscall before query n starts (index n, 1-based) and during it.
    before: dict[int, dict[str, int]]
    during: dict[int, dict[str, int]]
    problems: list[str]


#: The kill points' writers (threads of this process, each on its own copy) take turns:
#: each batch takes milliseconds.
_writer_lock = threading.Lock()


def _apply(migrations: Path, data: Path, batch: list[dict[str, Any]]) -> None:
    """One batch through the real Writer, closed afterwards (no connection left open here)."""
    from efsqlite.write.settings import WriterSettings
    from efsqlite.write.writer import Writer

    with _writer_lock:
        writer = Writer(WriterSettings(data_dir=data, migrations_dir=migrations, databases="*"))
        try:
            result = writer.handle_event(sqs_event(*batch))
            assert not result.failed_message_ids(), result
        finally:
            writer.close()


def _run_queries(
    primed: Path,
    migrations: Path,
    batches: list[list[dict[str, Any]]],
    folder: Path,
    prefix: list[str],
    after_reply: Callable[[int, Reply, Path], None] | None = None,
) -> tuple[Path, list[Reply], ReaderProcess, int]:
    """A fresh copy of the primed database; a reader answers 3 queries, a batch between two."""
    data = folder / "data"
    shutil.copytree(primed, data)
    reader = ReaderProcess(data, folder / "snapshots", prefix)
    replies: list[Reply] = []
    for n in (1, 2, 3):
        reply = reader.ask()
        if reply is None:
            break
        replies.append(reply)
        if after_reply is not None:
            after_reply(n, reply, data)
        if n < 3:
            _apply(migrations, data, batches[n])
    return data, replies, reader, reader.close()


def _marks(log: Path) -> list[dict[str, int]]:
    """Cumulative counts of each syscall at each line the reader wrote to stdout."""
    counts = dict.fromkeys(SYSCALLS, 0)
    marks = []
    for line in log.read_text().splitlines():
        if _WRITE_TO_STDOUT.match(line):
            marks.append(dict(counts))
            continue
        name = line.split("(", 1)[0].strip()
        if name in counts:
            counts[name] += 1
    return marks


def _copies_local_pages(log: Path, query: int) -> bool:
    """True if, in ``query``, the copy being patched got pages read from the current snapshot
    (a ``pread64`` of a ``.sqlite`` file under the snapshot folder before the copy's rename)."""
    answers = 0
    patching = False
    for line in log.read_text().splitlines():
        if _WRITE_TO_STDOUT.match(line):
            answers += 1
        elif answers == query:  # the ready line, then one line per answer
            renamed = _RENAME.match(line)
            if renamed and renamed[2].endswith(".tmp"):
                patching = True  # the spare renamed to the copy's name
            elif renamed:
                return False  # the copy renamed to its final name: patching is over
            elif patching and _LOCAL_READ.match(line):
                return True
    return False


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, strace: str) -> World:
    root = tmp_path_factory.mktemp("patch-kills")
    template, migrations = harness.make_template(root)
    records = harness.build_workload(30, seed=11)
    batches = [records[0:10], records[10:20], records[20:30]]
    # The first batch makes the page log's first segment: the first snapshot is in it.
    primed = root / "primed"
    primed.mkdir()
    shutil.copy(template, primed / template.name)
    _apply(migrations, primed, batches[0])
    problems: list[str] = []

    def check(n: int, reply: Reply, data: Path) -> None:
        state = reply["snapshot"][harness.DB]
        if state["refreshes"] != n or state["patches"] != n - 1:
            problems.append(f"query {n}: {state} (expected {n - 1} patches)")
        if n > 1 and not (state["patched"] and 0 < state["pages_read"] < state["page_count"]):
            problems.append(f"query {n} did not patch a few pages: {state}")
        direct = direct_answer(data)
        if reply["answer"].get("stale") is not False or not same_answer(reply["answer"], direct):
            problems.append(f"query {n}: {reply['answer']} != direct {direct}")
        differs = snapshot_differs(reply["snapshot"], data / template.name)
        if differs:
            problems.append(f"query {n}: {differs}")

    log = root / "count.strace"
    trace = ["-e", "trace=" + ",".join((*SYSCALLS, "write"))]
    prefix = [strace, "-qq", "-y", *trace, "-o", str(log)]
    _, replies, reader, code = _run_queries(
        primed, migrations, batches, root / "count", prefix, check
    )
    if code != 0 or len(replies) != 3:
        problems.append(f"fault-free run: exit {code}, {len(replies)} answers: {reader.stderr}")
    marks = _marks(log)  # ready, answer 1, answer 2, answer 3
    assert len(marks) == 4, marks
    if not _copies_local_pages(log, query=3):
        problems.append("query 3 copied no page from the current snapshot on local disk")
    before = {n: marks[n - 1] for n in PATCH_QUERIES}
    during = {n: {s: marks[n][s] - marks[n - 1][s] for s in SYSCALLS} for n in PATCH_QUERIES}
    return World(primed, migrations, batches, replies, before, during, problems)


def test_fault_free_refreshes_after_commits_are_patches_equal_to_the_source(
    world: World,
) -> None:
    # GIVEN a reader with a snapshot, and a batch committed before each of its next queries
    # WHEN it answers (in the fault-free counting run)
    # THEN the first query copied the file, the next two patched it (a few pages read; the
    # third also pages from its current snapshot), each answer equals a direct read and each
    # snapshot is the source's bytes
    assert world.problems == []
    # AND each patch made calls of every kind the matrix kills at
    for n in PATCH_QUERIES:
        assert all(world.during[n][s] > 0 for s in SYSCALLS), (n, world.during[n])


def _kill_point(world: World, n: int, syscall: str, k: int, work: Path) -> tuple[str, list[str]]:
    """Kill the reader at its K-th ``syscall`` of query ``n``; a new reader takes over."""
    folder = work / f"q{n}-{syscall}-{k}"
    when = world.before[n][syscall] + k
    prefix = harness.strace_fault(syscall, "signal=KILL", when)
    data, replies, _, code = _run_queries(
        world.primed, world.migrations, world.batches, folder, prefix
    )
    snapshots = folder / "snapshots"
    problems = []
    if code != -9 or len(replies) != n - 1:
        problems.append(f"expected a SIGKILL in query {n}: exit {code}, {len(replies)} answers")
    owner = replies[0]["snapshot"]["owner"] if replies else None
    left = files_under(snapshots / owner) if owner else []
    kinds = ",".join(sorted({Path(name).suffix for name in left})) or "none"
    # WHEN a new reader process starts on the same snapshot folder and answers
    second = ReaderProcess(data, snapshots)
    reply = second.ask()
    direct = direct_answer(data)
    if reply is None:
        second.close()
        return kinds, [*problems, f"the next reader died: {second.stderr[-500:]}"]
    answer = reply["answer"]
    expected = world.replies[n - 1]["answer"]
    if answer.get("stale") is not False or not same_answer(answer, direct):
        problems.append(f"next reader answered {answer}, direct {direct}")
    if not same_answer(answer, expected):
        problems.append(f"next reader answered {answer}, the fault-free run {expected}")
    if owner and ((snapshots / owner).exists() or (snapshots / f"{owner}.lock").exists()):
        problems.append(f"the dead reader's files are still there: {files_under(snapshots)}")
    mine = reply["snapshot"]["owner"]
    on_disk = files_under(snapshots)
    own = sorted([f"{mine}.lock", *(f"{mine}/{name}" for name in reply["snapshot"]["files"])])
    if on_disk != own or sorted(Path(p).suffix for p in reply["snapshot"]["files"]) != [
        ".spare",
        ".sqlite",
    ]:
        problems.append(f"snapshot folder holds {on_disk}")
    differs = snapshot_differs(reply["snapshot"], data / f"{harness.DB}.sqlite")
    if differs:
        problems.append(f"the next reader's snapshot: {differs}")
    if second.close() != 0:
        problems.append(f"the next reader failed: {second.stderr[-500:]}")
    return kinds, [f"query {n} {syscall} K={k} (call {when}): {p}" for p in problems]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("n", PATCH_QUERIES, ids=["first-patch", "second-patch"])
def test_reader_killed_at_every_call_of_a_patch_leaves_nothing_served(
    world: World, n: int, tmp_path: Path
) -> None:
    # GIVEN a refresh that patches (in the fault-free run), making during[n][s] calls of
    # each syscall s
    assert world.replies[n - 1]["snapshot"][harness.DB]["patched"], world.replies[n - 1]
    points = [(s, k) for s in SYSCALLS for k in range(1, world.during[n][s] + 1)]
    assert points
    # WHEN the reader is killed at each of those calls, then a new reader starts in its /tmp
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda p: _kill_point(world, n, p[0], p[1], tmp_path), points))
    elapsed = time.monotonic() - started
    # THEN the new reader answers fresh and right, from its own copy equal to the source
    problems = [p for _, found in results for p in found]
    left = collections.Counter(kinds for kinds, _ in results)
    print(
        f"\npatch kill matrix, query {n}: {len(points)} kill points {world.during[n]}, "
        f"{len(problems)} problems; the dead reader left {dict(left)}; {elapsed:.1f}s"
    )
    assert not problems, "\n".join(problems[:20])
    # AND some kills left a half-patched copy (.tmp) behind, which nobody served
    assert any(".tmp" in kinds for kinds in left), left
