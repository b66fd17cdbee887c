"""The VFS shim behind writer and snapshot-source connections (apsw's Python VFS over unix).

Two jobs, one registered VFS (:data:`VFS_NAME`):

- **Writer files** (a main database opened read-write whose name ends in ``.sqlite``) record
  every page SQLite writes and every truncation, and at the commit's sync of the database
  file append the commit's :class:`~efsqlite.core.pagelog.Entry` to the page log. The log's
  ``fdatasync`` runs in a second thread while SQLite's own sync of the database runs, so a
  commit waits for one round trip, not two: apsw holds the GIL through the base file's
  ``xSync``, so the thread is inside its ``fdatasync`` (which releases the GIL) before
  SQLite's starts.
- **Source files** (read-only opens) are handed to the snapshot code as :class:`RawFile`:
  reads through the very descriptor SQLite locks, so the snapshot can copy pages under the
  connection's shared lock without opening the database file a second time.

DO keep the shim thin: every I/O call of these connections passes through Python (about a
microsecond each), which is nothing next to an EFS round trip.
DON'T fail a commit because its log entry could not be written: the log is an optimisation.
The entry is lost, the next one starts a new segment, and readers copy in full once.
DON'T read or write the database file here outside SQLite's calls: the raw reads go through
the file object SQLite itself opened, never through a second descriptor (closing one would
drop the process's locks on the file).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import zlib
from typing import Any

import apsw

from efsqlite.core.pagelog import NO_TRUNCATION, PageLogError, PageLogWriter, sidecar_path

VFS_NAME = "efsqlite"
_LOGGED_SUFFIX = ".sqlite"


def header_u32(data: bytes, offset: int) -> int:
    """A big-endian 4-byte field of the database header."""
    return int.from_bytes(data[offset : offset + 4], "big")


def header_page_size(data: bytes) -> int:
    """The page size in a database header (the value 1 means 65,536)."""
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size


class RawFile(apsw.VFSFile):
    """A database file SQLite opened; :meth:`read` reads through SQLite's own descriptor."""

    def read(self, amount: int, offset: int) -> bytes:
        return bytes(self.xRead(amount, offset))

    def size(self) -> int:
        return int(self.xFileSize())


class _Syncer:
    """One thread per writer file that syncs its page log while SQLite syncs the database.

    A thread started per commit cost about 1.2 ms of each commit under the EFS model
    (``strace -f`` attaches to every new thread); one kept for the file's life does not.
    """

    def __init__(self, log: PageLogWriter) -> None:
        self._log = log
        self._go = threading.Event()
        self._started = threading.Event()
        self._done = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="efsqlite-pagelog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._stopping:
                return
            self._started.set()
            try:
                with contextlib.suppress(PageLogError):  # the log is dropped; readers copy
                    self._log.sync()
            finally:
                self._done.set()

    def start_sync(self) -> None:
        self._started.clear()
        self._done.clear()
        if not self._thread.is_alive():  # it died of something unforeseen: sync here
            with contextlib.suppress(PageLogError):
                self._log.sync()
            self._done.set()
            return
        self._go.set()
        self._started.wait()  # the thread is about to block in fdatasync, GIL released

    def wait(self) -> None:
        self._done.wait()

    def stop(self) -> None:
        self._stopping = True
        self._go.set()
        # At interpreter exit daemon threads are frozen: joining one would hang forever.
        if not sys.is_finalizing():
            self._thread.join()


class _LoggedFile(RawFile):
    """A writer's database file: pages written since the last sync, and the page log."""

    def __init__(self, vfs: str, name: Any, flags: list[int], log: PageLogWriter) -> None:
        super().__init__(vfs, name, flags)
        self._log = log
        #: Page number -> CRC-32 of what was last written there.
        self._pages: dict[int, int] = {}
        self._write_size = 0
        self._truncated_bytes: int | None = None
        self._page1: bytes | None = None
        self._irregular = False
        self._syncer: _Syncer | None = None

    def xWrite(self, data: bytes, offset: int) -> None:
        super().xWrite(data, offset)
        size = len(data)
        if size:
            if offset % size or (self._write_size and size != self._write_size):
                self._irregular = True  # not whole pages of one size: no entry can say it
            self._write_size = size
            self._pages[offset // size + 1] = zlib.crc32(data)
            if offset == 0:
                self._page1 = bytes(data)

    def xTruncate(self, newsize: int) -> None:
        super().xTruncate(newsize)
        if self._truncated_bytes is None or newsize < self._truncated_bytes:
            self._truncated_bytes = newsize

    def xSync(self, flags: int) -> None:
        if not self._pages:  # a truncation alone goes with the next commit's entry
            super().xSync(flags)
            return
        entry = None
        try:
            entry = self._entry()
        except (PageLogError, apsw.Error, OSError, ValueError):
            entry = None
        self._pages = {}
        self._page1 = None
        self._irregular = False
        if entry is not None:
            self._truncated_bytes = None
        if entry is None:
            super().xSync(flags)
            return
        try:
            self._log.write(entry)  # into the client's cache: no round trip yet
        except PageLogError:  # the commit goes on; readers copy in full
            super().xSync(flags)
            return
        if self._syncer is None:
            self._syncer = _Syncer(self._log)
        self._syncer.start_sync()  # returns as the thread blocks in fdatasync
        try:
            super().xSync(flags)
        finally:
            self._syncer.wait()

    def _entry(self) -> Any:
        self._log.prepare()
        page1 = self._page1
        if page1 is not None and len(page1) >= 100 and not self._irregular:
            page_size = header_page_size(page1)
            counter: int | None = header_u32(page1, 24)
            valid_for = header_u32(page1, 92)
            page_count = header_u32(page1, 28) if valid_for == counter else 0
            crc = zlib.crc32(page1)
        else:  # no page 1 written, or odd writes: not a commit an entry can key; new segment
            page_size = self._write_size or 4096
            counter, page_count, crc = None, 0, 0
        if page_count == 0:
            page_count = int(self.xFileSize()) // page_size
        truncated = (
            NO_TRUNCATION if self._truncated_bytes is None else self._truncated_bytes // page_size
        )
        return self._log.entry_for(
            counter=counter,
            page_size=page_size,
            page_count=page_count,
            truncated_to=truncated,
            page1_crc=crc,
            pages=self._pages,
        )

    def xClose(self) -> None:
        try:
            super().xClose()
        finally:
            if self._syncer is not None:
                self._syncer.stop()
            self._log.close()


class _VFS(apsw.VFS):
    def __init__(self) -> None:
        super().__init__(VFS_NAME, "")
        self._opened: dict[int, RawFile] = {}

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        if not flags[0] & apsw.SQLITE_OPEN_MAIN_DB:
            return apsw.VFSFile("", name, flags)
        filename = name.filename() if isinstance(name, apsw.URIFilename) else str(name)
        file: RawFile
        if flags[0] & apsw.SQLITE_OPEN_READWRITE and filename.endswith(_LOGGED_SUFFIX):
            file = _LoggedFile("", name, flags, PageLogWriter(sidecar_path(filename)))
        else:
            file = RawFile("", name, flags)
        self._opened[threading.get_ident()] = file
        return file

    def take_opened(self) -> RawFile | None:
        """The main file this thread's last open made (call right after the open)."""
        return self._opened.pop(threading.get_ident(), None)


_vfs: _VFS | None = None
_vfs_lock = threading.Lock()


def registered() -> _VFS:
    """The process's VFS, registered on first use."""
    global _vfs
    with _vfs_lock:
        if _vfs is None:
            _vfs = _VFS()
        return _vfs


def vfs_name() -> str:
    """The VFS name to open connections with (registering it first)."""
    registered()
    return VFS_NAME


def open_with_raw_file(filename: str, flags: int, **kwargs: Any) -> tuple[apsw.Connection, RawFile]:
    """``apsw.Connection(filename, flags, vfs=...)`` and the main file SQLite opened for it."""
    vfs = registered()
    conn = apsw.Connection(filename, flags=flags, vfs=VFS_NAME, **kwargs)
    raw = vfs.take_opened()
    if raw is None:
        conn.close()
        raise apsw.CantOpenError(f"no database file was opened for {filename}")
    return conn, raw
