"""The page log: which pages each commit wrote, in a sidecar file next to the database.

The writer's connection runs through :mod:`efsqlite.core.pagevfs`, which sees every page
SQLite writes to the database file and every truncation. At the commit's sync of the
database file (all of the commit's pages are written by then, and the journal still exists,
so the commit has not happened yet) it appends one :class:`Entry` to ``<db>.sqlite-pages``
and syncs it, in parallel with SQLite's own sync. The entry is keyed by the database header's
file change counter, which SQLite adds one to at every commit, and carries the page size,
the page count after the commit, a CRC-32 of page 1 as written and the runs of pages written.

A reader holding a snapshot at counter ``S`` patches it to the source's counter ``C`` with the
entries ``S+1 .. C`` (:func:`plan_chain`): read under a shared lock on the database, the log
is never behind the file, because an entry is durable before its commit is, and no commit can
finish while the lock is held.

Entries come in segments. An entry continues its segment only when its counter is the last
entry's plus one; anything else (the first commit on a new file, a writer that crashed after
its entry but before its commit, a hot journal rolled back, a page size change, a commit that
wrote no page 1, a file rewritten by another tool and then written by us) starts a new
segment with a fresh random id. A reader never chains across segments, and remembers which
segment its snapshot belongs to: its counter alone could have come from a different history.

DO treat any doubt as "copy the whole file": a chain with a gap, a counter that does not
match, another segment, a page size or page 1 that differs from the entry, a torn entry.
DON'T fsync after the commit: an entry written after the commit point can be lost in a
crash while the commit survives; written before it, a crash leaves at worst an entry for a
commit that never happened, which the next entry's segment change makes harmless.
DON'T read the database file here: this module only knows the sidecar.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from efsqlite.core.exceptions import EfsqliteError

#: Appended to the database file's name: ``main.sqlite`` logs to ``main.sqlite-pages``.
SIDECAR_SUFFIX = "-pages"
MAGIC = b"EFSQLPL1"
#: A log longer than this is rewritten with its newest half at the next commit. A commit's
#: entry is about 240 bytes (18 pages, ``bench/bench_patch.py``), so the half kept covers
#: about 2,000 commits: a reader further behind copies the whole file. Readers read only the
#: tail past their copy's entry, so the size costs them nothing until a rotation.
MAX_LOG_BYTES = 1 << 20
#: A reader reads at most this much of a log; a longer one (not the writer's) is no log.
MAX_READ_BYTES = 16 << 20
_U32 = 0xFFFFFFFF
_HEAD = struct.Struct("<B16sIIIIII")  # kind, segment, counter, size, count, truncated, crc, runs
_RUN = struct.Struct("<II")
_CRC = struct.Struct("<I")
KIND_START = 0
KIND_COMMIT = 1
NO_TRUNCATION = _U32


class PageLogError(EfsqliteError):
    """The page log could not be written (the commit goes on; readers then copy in full)."""


def sidecar_path(db_path: Path | str) -> Path:
    """The page log of the database at ``db_path``."""
    path = Path(db_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


@dataclass(frozen=True, slots=True)
class Entry:
    """One commit (or the start of a segment) as the writer saw it hit the database file."""

    kind: int
    segment: bytes
    counter: int
    page_size: int
    page_count: int
    #: The smallest size, in pages, the file was truncated to (``NO_TRUNCATION`` if never).
    truncated_to: int
    page1_crc: int
    runs: tuple[tuple[int, int], ...] = ()
    #: CRC-32 of each page as written, in the runs' order.
    crcs: tuple[int, ...] = ()
    #: Where the entry ends in the log file (set when parsed).
    end: int = field(default=0, compare=False)

    def encode(self) -> bytes:
        body = _HEAD.pack(
            self.kind,
            self.segment,
            self.counter,
            self.page_size,
            self.page_count,
            self.truncated_to,
            self.page1_crc,
            len(self.runs),
        ) + b"".join(_RUN.pack(first, count) for first, count in self.runs)
        body += struct.pack(f"<{len(self.crcs)}I", *self.crcs)
        return body + _CRC.pack(zlib.crc32(body))

    def pages(self) -> Iterable[int]:
        for first, count in self.runs:
            yield from range(first, first + count)


def runs_of(pages: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged ``(first page, count)`` runs of a set of page numbers."""
    runs: list[list[int]] = []
    for page in sorted(set(pages)):
        if runs and runs[-1][0] + runs[-1][1] == page:
            runs[-1][1] += 1
        else:
            runs.append([page, 1])
    return tuple((first, count) for first, count in runs)


def parse(data: bytes, offset: int = 0) -> list[Entry]:
    """The entries of a log (or of its tail from ``offset``); stops at the first torn one.

    With ``offset == 0`` the data must start with :data:`MAGIC`, else there are no entries.
    """
    entries: list[Entry] = []
    view = memoryview(data)
    pos = 0
    if offset == 0:
        if bytes(view[: len(MAGIC)]) != MAGIC:
            return entries
        pos = len(MAGIC)
    while pos + _HEAD.size + _CRC.size <= len(view):
        kind, segment, counter, size, count, truncated, crc, nruns = _HEAD.unpack_from(view, pos)
        runs_end = pos + _HEAD.size + nruns * _RUN.size
        if kind not in (KIND_START, KIND_COMMIT) or runs_end > len(view):
            break
        runs = tuple(_RUN.unpack_from(view, pos + _HEAD.size + i * _RUN.size) for i in range(nruns))
        npages = sum(count for _, count in runs)
        end = runs_end + 4 * npages
        if end + _CRC.size > len(view):
            break
        (stored,) = _CRC.unpack_from(view, end)
        if zlib.crc32(view[pos:end]) != stored:
            break
        crcs = struct.unpack_from(f"<{npages}I", view, runs_end)
        pos = end + _CRC.size
        entries.append(
            Entry(
                kind, bytes(segment), counter, size, count, truncated, crc, runs, crcs, offset + pos
            )
        )
    return entries


def next_counter(counter: int) -> int:
    """The change counter after ``counter`` (a 32-bit field that wraps)."""
    return (counter + 1) & _U32


@dataclass(frozen=True, slots=True)
class Chain:
    """What changed between two states of one segment, from the entries between them."""

    #: Pages written on the way, at most ``page_count``, and the CRC-32 each was last
    #: written with.
    pages: dict[int, int]
    #: The smallest page count the file had on the way (the start's included): pages above
    #: it that were not written since read back as zeros in the source.
    low_water: int
    page_count: int
    page_size: int
    last: Entry | None

    @classmethod
    def empty(cls, page_count: int) -> Chain:
        """No change: a copy already at the state it is measured against."""
        return cls({}, page_count, page_count, 0, None)


class ChainError(EfsqliteError):
    """The log does not lead from the snapshot's state to the source's (copy in full)."""


def plan_chain(
    entries: Sequence[Entry],
    *,
    segment: bytes,
    start_counter: int,
    start_page_count: int,
    end_counter: int,
) -> Chain:
    """The chain of commit entries ``start_counter+1 .. end_counter`` of ``segment``.

    The entries must be the log's last ones (the log ends at the source's counter) and
    consecutive. Raises :class:`ChainError` naming the doubt otherwise.
    """
    if not entries:
        raise ChainError("the page log is empty")
    last = entries[-1]
    if last.counter != end_counter:
        raise ChainError(
            f"the page log ends at counter {last.counter}, the file is at {end_counter}"
        )
    if last.segment != segment:
        raise ChainError("the page log started a new segment since the snapshot")
    # Walk back from the end to the entry right after the snapshot's state.
    first = len(entries)
    counter = end_counter
    while counter != start_counter:
        first -= 1
        if first < 0:
            raise ChainError(f"the page log no longer reaches back to counter {start_counter}")
        entry = entries[first]
        if entry.segment != segment or entry.kind != KIND_COMMIT or entry.counter != counter:
            raise ChainError(f"the page log has a gap before counter {counter}")
        counter = (counter - 1) & _U32
        if first < len(entries) - 1 and entries[first + 1].page_size != entry.page_size:
            raise ChainError("the page size changed")
    chain = entries[first:]
    low_water = start_page_count
    pages: dict[int, int] = {}
    for entry in chain:
        if entry.truncated_to != NO_TRUNCATION:
            low_water = min(low_water, entry.truncated_to)
            pages = {page: crc for page, crc in pages.items() if page <= entry.truncated_to}
        pages.update(zip(entry.pages(), entry.crcs, strict=True))
        low_water = min(low_water, entry.page_count)
    return Chain(
        pages={page: crc for page, crc in pages.items() if page <= last.page_count},
        low_water=low_water,
        page_count=last.page_count,
        page_size=last.page_size,
        last=last,
    )


class PageLogWriter:
    """Appends entries to one database's sidecar; owned by that database's writer file.

    The first append reads the log's last entry (a torn tail is cut off) to decide whether
    the new entry continues its segment. Any failure to write leaves the writer marked
    broken: the next entry starts a fresh file and segment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0
        self._last: Entry | None = None
        self._loaded = False

    def _load(self) -> None:
        self._loaded = True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PageLogError(f"cannot open the page log {self.path}: {exc}") from None
        self._fd = fd
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0) if size else b""
            entries = parse(data)
            if not entries:
                os.ftruncate(fd, 0)
                os.pwrite(fd, MAGIC, 0)
                self._size = len(MAGIC)
            else:
                self._last = entries[-1]
                self._size = entries[-1].end
                if self._size != size:
                    os.ftruncate(fd, self._size)  # a torn tail from a crash mid-append
        except OSError as exc:
            self._broken()
            raise PageLogError(f"cannot read the page log {self.path}: {exc}") from None

    def entry_for(
        self,
        *,
        counter: int | None,
        page_size: int,
        page_count: int,
        truncated_to: int,
        page1_crc: int,
        pages: dict[int, int],
    ) -> Entry:
        """The entry a commit appends: it continues the segment only if it follows on."""
        last = self._last
        if (
            counter is not None
            and last is not None
            and counter == next_counter(last.counter)
            and page_size == last.page_size
        ):
            runs = runs_of(pages)
            crcs = tuple(
                pages[page] for first, count in runs for page in range(first, first + count)
            )
            return Entry(
                KIND_COMMIT,
                last.segment,
                counter,
                page_size,
                page_count,
                truncated_to,
                page1_crc,
                runs,
                crcs,
            )
        return Entry(
            KIND_START,
            os.urandom(16),
            _U32 if counter is None else counter,
            page_size,
            page_count,
            truncated_to,
            page1_crc,
        )

    def prepare(self) -> None:
        """Open and read the log if not done yet (before :meth:`entry_for`)."""
        if not self._loaded:
            self._load()

    def write(self, entry: Entry) -> None:
        """Write ``entry`` (not yet durable: :meth:`sync`); a full log keeps its newest half."""
        fd = self._fd
        if fd is None:
            raise PageLogError(f"the page log {self.path} is not open")
        data = entry.encode()
        try:
            if self._size + len(data) > MAX_LOG_BYTES:
                self._rotate(fd, data)
            else:
                os.pwrite(fd, data, self._size)
                self._size += len(data)
        except OSError as exc:
            self._broken()
            raise PageLogError(f"cannot write the page log {self.path}: {exc}") from None
        self._last = entry

    def sync(self) -> None:
        """Make what :meth:`write` wrote durable (and visible to other NFS clients)."""
        fd = self._fd
        if fd is None:
            return
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._broken()
            raise PageLogError(f"cannot sync the page log {self.path}: {exc}") from None

    def append(self, entry: Entry) -> None:
        """:meth:`write` then :meth:`sync`."""
        self.write(entry)
        self.sync()

    def _rotate(self, fd: int, data: bytes) -> None:
        """Keep the newest half of the log, then ``data``; readers see the old or new file."""
        kept = os.pread(fd, self._size, 0)
        entries = parse(kept)
        middle = len(MAGIC) + (self._size - len(MAGIC)) // 2
        half = [entry for entry in entries if entry.end > middle]
        tail = b"".join(e.encode() for e in half)
        tmp = self.path.with_name(self.path.name + ".tmp")
        new = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            body = MAGIC + tail + data
            os.pwrite(new, body, 0)
            os.fdatasync(new)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(new)
            raise
        os.close(fd)
        self._fd = new
        self._size = len(body)

    def _broken(self) -> None:
        """Forget the log: the next entry starts over in a fresh file and segment."""
        self.close()
        self._last = None
        self._loaded = False
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def read_log(path: Path, *, inode: int | None = None, offset: int = 0) -> tuple[list[Entry], int]:
    """The log's entries and the file's inode, reading only the tail after ``offset`` when
    the file is still the one (``inode``) that offset was taken in.

    Every read is a ``pread``: on EFS each is a round trip the model charges.
    Returns ``([], 0)`` when there is no log.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return [], 0
    try:
        st = os.fstat(fd)
        if inode is None or st.st_ino != inode or st.st_size < offset or offset == 0:
            offset = 0
        if st.st_size - offset > MAX_READ_BYTES:
            return [], st.st_ino
        data = os.pread(fd, st.st_size - offset, offset) if st.st_size > offset else b""
        return parse(data, offset), st.st_ino
    finally:
        os.close(fd)
