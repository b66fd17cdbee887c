"""Bulk import: CSV or JSON lines rows become INSERT commands, sent in chunks, resumable.

:class:`Importer` reads a file's rows, turns each into one parameterized ``INSERT``, groups
them into commands of at most ``rows_per_command`` rows and ``chunk_bytes`` bytes of SQL, and
sends them through a :class:`~efsqlite.client.WriteClient` (which packs them into messages).
After every batch of commands it saves a resume file; a new run of the same job (same
database, table, file contents and chunk size) continues after the rows already sent.

DO derive command ids from the job and the chunk number (``import-<job>-<chunk>``): a resumed
run resends a chunk under the same id, and the writer's ledger applies it once, so resuming
never duplicates rows. DON'T change ``rows_per_command`` to resume a job: it is part of the
job id (the chunks would differ), so a new value starts a new job.
DO report progress through ``on_progress`` (sending: :class:`ImportProgress`; waiting:
:class:`SettleProgress`); DON'T print here (the CLI draws the bar).
DO quote identifiers, and refuse those that are not plain (``[A-Za-z_][A-Za-z0-9_]*``): they
come from a file's header, and quoting alone is not enough to keep odd ones readable.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from efsqlite.client import Bookmark, ReadClient, WriteClient
from efsqlite.client.exceptions import ImportInputError, WaitTimeoutError

Format = Literal["csv", "jsonl"]
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_ROWS_PER_COMMAND = 500
DEFAULT_CHUNK_BYTES = 256 * 1024
#: Commands handed to ``send_many`` at a time, between two saves of the resume file.
COMMANDS_PER_SEND = 50


# -- pure parts -------------------------------------------------------------------------------
def quote_identifier(name: str, what: str = "column") -> str:
    """``"name"``, or :class:`ImportInputError` if ``name`` is not a plain identifier."""
    if not IDENTIFIER.fullmatch(name):
        raise ImportInputError(f"{what} name {name!r} is not a plain identifier")
    return f'"{name}"'


def insert_statement(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """One ``INSERT`` statement (wire format ``{"sql", "params"}``) for one row.

    Values other than text, numbers, booleans and NULL are stored as their JSON text.
    """
    quoted_table = quote_identifier(table, "table")
    columns = ", ".join(quote_identifier(c) for c in row)
    marks = ", ".join("?" * len(row))
    values = [
        v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v)
        for v in row.values()
    ]
    return {"sql": f"INSERT INTO {quoted_table} ({columns}) VALUES ({marks})", "params": values}


def guess_format(path: Path) -> Format:
    """``csv`` for a ``.csv`` file, else ``jsonl``."""
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def read_rows(path: Path, fmt: Format) -> Iterator[dict[str, Any]]:
    """The rows of a CSV file (with a header row) or a JSON lines file (one object a line)."""
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ImportInputError(f"{path}: no header row")
            for line, row in enumerate(reader, start=2):
                if None in row:
                    raise ImportInputError(f"{path}:{line}: more fields than the header has")
                yield dict(row)
    else:
        with path.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise ImportInputError(f"{path}:{line}: not valid JSON: {exc}") from None
                if not isinstance(value, dict):
                    raise ImportInputError(f"{path}:{line}: each line must be a JSON object")
                yield value


def job_id(db: str, table: str, file_sha256: str, rows_per_command: int) -> str:
    """The import job's id: what a resume file must match to be resumed."""
    key = f"{db}\0{table}\0{file_sha256}\0{rows_per_command}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def chunk_command_id(job: str, index: int) -> str:
    return f"import-{job}-{index:07d}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One command of an import and how many rows it holds."""

    index: int
    command: dict[str, Any]
    rows: int


def chunk_rows(
    rows: Iterable[dict[str, Any]],
    *,
    db: str,
    table: str,
    job: str,
    first_index: int = 0,
    rows_per_command: int = DEFAULT_ROWS_PER_COMMAND,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[Chunk]:
    """Group ``rows`` into INSERT commands of at most ``rows_per_command`` rows and (unless
    one row alone is bigger) ``chunk_bytes`` bytes of statement JSON, numbered from
    ``first_index``."""
    statements: list[dict[str, Any]] = []
    size_so_far = 0
    index = first_index
    for row in rows:
        statement = insert_statement(table, row)
        size = len(json.dumps(statement))
        if statements and (len(statements) >= rows_per_command or size_so_far + size > chunk_bytes):
            yield _chunk(index, db, job, statements)
            index += 1
            statements, size_so_far = [], 0
        statements.append(statement)
        size_so_far += size
    if statements:
        yield _chunk(index, db, job, statements)


def _chunk(index: int, db: str, job: str, statements: list[dict[str, Any]]) -> Chunk:
    command = {"v": 1, "id": chunk_command_id(job, index), "db": db, "statements": statements}
    return Chunk(index, command, len(statements))


@dataclass(slots=True)
class ResumeState:
    """The resume file's content: the job, rows and chunks sent, the last command sent."""

    job: str
    rows_sent: int = 0
    chunks_sent: int = 0
    last: dict[str, str] | None = None  # {"id", "sequence_number"}

    @classmethod
    def load(cls, path: Path, job: str) -> ResumeState | None:
        """The saved state of ``job``; ``None`` if the file is missing, unreadable or holds
        another job."""
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("job") != job:
            return None
        try:
            return cls(
                job=job,
                rows_sent=int(saved.get("rows_sent", 0)),
                chunks_sent=int(saved.get("chunks_sent", 0)),
                last=dict(saved["last"]) if saved.get("last") else None,
            )
        except (TypeError, ValueError):
            return None

    def save(self, path: Path) -> None:
        """Write the file atomically (a temporary file, then a rename)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, path)


# -- the job ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Rows sent so far (this run and earlier ones) of ``total_rows``."""

    rows_sent: int
    total_rows: int
    commands_sent: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import sent. ``rows`` and ``commands`` count every run of the job, ``last`` is
    the last command sent by any run; ``resumed_from`` and ``resumed_commands`` are what the
    earlier runs sent, ``chunk_rows`` the rows of each command this run sent, in order."""

    job: str
    rows: int
    total_rows: int
    commands: int
    progress_file: Path
    resumed_from: int
    last: Bookmark | None
    resumed_commands: int = 0
    chunk_rows: tuple[int, ...] = ()

    @property
    def rows_this_run(self) -> int:
        """Rows this run sent (not those an earlier, interrupted run sent)."""
        return self.rows - self.resumed_from

    @property
    def commands_this_run(self) -> int:
        return self.commands - self.resumed_commands

    @property
    def command_ids(self) -> list[str]:
        """Every command id of the job, in order."""
        return [chunk_command_id(self.job, i) for i in range(self.commands)]


@dataclass(frozen=True, slots=True)
class SettleProgress:
    """How far the writer is through an import's commands (:meth:`Importer.wait`).

    The rows of the commands an earlier run sent are shared out evenly among them (their
    sizes are not saved); this run's are exact.
    """

    rows_settled: int
    rows: int
    commands_settled: int
    commands: int
    rejected: int


@dataclass(frozen=True, slots=True)
class RejectedChunk:
    id: str
    error_type: str | None
    error_message: str | None

    def __str__(self) -> str:
        return f"{self.id}: {self.error_type}: {self.error_message}"


class Importer:
    """One import job: ``file`` into ``table`` of ``db``.

    The constructor checks the file and the table name and reads the resume file (see
    ``resumed_from``); :meth:`run` sends; :meth:`wait` checks the outcome of every chunk.
    """

    def __init__(
        self,
        writer: WriteClient,
        file: str | Path,
        *,
        db: str,
        table: str,
        fmt: Format | None = None,
        rows_per_command: int = DEFAULT_ROWS_PER_COMMAND,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        progress_file: str | Path | None = None,
        restart: bool = False,
    ) -> None:
        self.path = Path(file)
        if not self.path.is_file():
            raise ImportInputError(f"{self.path}: no such file")
        quote_identifier(table, "table")
        if rows_per_command < 1 or chunk_bytes < 1:
            raise ImportInputError("rows_per_command and chunk_bytes must be at least 1")
        self.writer = writer
        self.db = db
        self.table = table
        self.fmt: Format = fmt or guess_format(self.path)
        self.rows_per_command = rows_per_command
        self.chunk_bytes = chunk_bytes
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.job = job_id(db, table, digest.hexdigest(), rows_per_command)
        self.progress_file = Path(progress_file or f"{self.path}.import-progress.json")
        saved = None
        if self.progress_file.exists() and not restart:
            saved = ResumeState.load(self.progress_file, self.job)
        self.state = saved or ResumeState(self.job)

    @property
    def resumed_from(self) -> int:
        """Rows an earlier run of this job sent (0 for a new job)."""
        return self.state.rows_sent

    def run(self, on_progress: Callable[[ImportProgress], None] | None = None) -> ImportResult:
        """Send the rows not sent yet, saving the resume file after each batch of commands."""
        resumed_from = self.state.rows_sent
        resumed_commands = self.state.chunks_sent
        total = sum(1 for _ in read_rows(self.path, self.fmt))
        state = self.state
        pending: list[Chunk] = []
        sent_rows: list[int] = []

        def flush() -> None:
            if not pending:
                return
            sent = self.writer.send_many([c.command for c in pending])
            sent_rows.extend(c.rows for c in pending)
            state.rows_sent += sum(c.rows for c in pending)
            state.chunks_sent = pending[-1].index + 1
            state.last = {"id": sent[-1].id, "sequence_number": sent[-1].sequence_number}
            state.save(self.progress_file)
            pending.clear()
            if on_progress is not None:
                on_progress(ImportProgress(state.rows_sent, total, state.chunks_sent))

        rows = (row for n, row in enumerate(read_rows(self.path, self.fmt)) if n >= resumed_from)
        for chunk in chunk_rows(
            rows,
            db=self.db,
            table=self.table,
            job=self.job,
            first_index=state.chunks_sent,
            rows_per_command=self.rows_per_command,
            chunk_bytes=self.chunk_bytes,
        ):
            pending.append(chunk)
            if len(pending) >= COMMANDS_PER_SEND:
                flush()
        flush()
        last = state.last
        return ImportResult(
            job=self.job,
            rows=state.rows_sent,
            total_rows=total,
            commands=state.chunks_sent,
            progress_file=self.progress_file,
            resumed_from=resumed_from,
            last=Bookmark(self.db, last["id"], "", last["sequence_number"]) if last else None,
            resumed_commands=resumed_commands,
            chunk_rows=tuple(sent_rows),
        )

    def wait(
        self,
        reader: ReadClient,
        result: ImportResult,
        *,
        timeout: float = 120.0,
        on_progress: Callable[[SettleProgress], None] | None = None,
    ) -> list[RejectedChunk]:
        """Wait until every command of the job is settled, in order (one group applies in
        order), and return the chunks the writer rejected. ``on_progress`` hears after each
        command settles. Raises :class:`~efsqlite.client.exceptions.WaitTimeoutError` when
        ``timeout`` seconds pass with a command still unsettled."""
        if result.last is None:
            return []
        deadline = time.monotonic() + timeout
        ids = result.command_ids
        # Rows up to each command: exact for what this run sent, shared out evenly over the
        # commands of earlier runs (their sizes are not saved; they are full but for bytes).
        first_new = len(ids) - len(result.chunk_rows)
        earlier = result.rows - sum(result.chunk_rows)
        rows_at = [earlier * (i + 1) // first_new for i in range(first_new)]
        running = earlier
        for rows in result.chunk_rows:
            running += rows
            rows_at.append(running)
        rejected: list[RejectedChunk] = []
        for index, command_id in enumerate(ids):
            bookmark = Bookmark(self.db, command_id, "", "")
            try:
                status = reader.wait_for(bookmark, max(0.0, deadline - time.monotonic()))
            except WaitTimeoutError as exc:
                # Same error (and class, status, reason), with how far the import got.
                settled = rows_at[index - 1] if index else 0
                exc.args = (
                    f"after {timeout:g} s, {settled}/{result.rows} rows settled; "
                    f"command {index + 1} of {len(ids)}: {exc}",
                )
                raise
            if status.state == "rejected":
                rejected.append(RejectedChunk(command_id, status.error_type, status.error_message))
            if on_progress is not None:
                on_progress(
                    SettleProgress(rows_at[index], result.rows, index + 1, len(ids), len(rejected))
                )
        return rejected


def import_file(
    writer: WriteClient,
    file: str | Path,
    *,
    db: str,
    table: str,
    on_progress: Callable[[ImportProgress], None] | None = None,
    **options: Any,
) -> ImportResult:
    """Import ``file`` into ``table`` of ``db`` (``options`` as :class:`Importer` takes)."""
    return Importer(writer, file, db=db, table=table, **options).run(on_progress)
