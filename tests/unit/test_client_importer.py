"""The import library's pure parts: identifiers, rows, chunking, the resume file, and a run
against an in-memory writer (the e2e suite runs it against the local stack)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from efsqlite.client import Bookmark
from efsqlite.client.exceptions import ImportInputError
from efsqlite.client.importer import (
    Importer,
    ImportProgress,
    ResumeState,
    chunk_command_id,
    chunk_rows,
    insert_statement,
    job_id,
    quote_identifier,
    read_rows,
)


class MemoryWriter:
    """Records what ``send_many`` was given; bookmarks number the commands."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.sent = 0

    def send_many(self, commands: Iterable[Mapping[str, Any]]) -> list[Bookmark]:
        batch = [dict(c) for c in commands]
        self.calls.append(batch)
        marks = []
        for command in batch:
            self.sent += 1
            marks.append(Bookmark(command["db"], command["id"], f"m{self.sent}", str(self.sent)))
        return marks

    @property
    def commands(self) -> list[dict[str, Any]]:
        return [c for call in self.calls for c in call]


def test_identifiers_are_quoted_and_odd_ones_refused() -> None:
    assert quote_identifier("todo_1") == '"todo_1"'
    for odd in ["", "1a", "a b", 'a"b', "a;--", "é"]:
        with pytest.raises(ImportInputError, match="not a plain identifier"):
            quote_identifier(odd)
    with pytest.raises(ImportInputError, match="table name 'x y'"):
        insert_statement("x y", {"a": 1})


def test_values_other_than_scalars_become_json_text() -> None:
    statement = insert_statement("t", {"a": None, "b": True, "c": 1.5, "d": [1, 2]})
    assert statement["params"] == [None, True, 1.5, "[1, 2]"]


def test_rows_from_csv_and_json_lines_and_their_errors(tmp_path: Path) -> None:
    good_csv = tmp_path / "a.csv"
    good_csv.write_text('id,title\n1,"a, b"\n')
    assert list(read_rows(good_csv, "csv")) == [{"id": "1", "title": "a, b"}]
    wide = tmp_path / "wide.csv"
    wide.write_text("id\n1,2\n")
    with pytest.raises(ImportInputError, match=r"wide.csv:2: more fields"):
        list(read_rows(wide, "csv"))
    lines = tmp_path / "a.jsonl"
    lines.write_text('{"id": 1}\n\n[1]\n')
    with pytest.raises(ImportInputError, match=r"a.jsonl:3: each line must be a JSON object"):
        list(read_rows(lines, "jsonl"))


def test_chunks_respect_rows_and_bytes_and_number_from_the_first_index() -> None:
    rows = [{"id": i, "pad": "x" * 50} for i in range(10)]
    by_rows = list(chunk_rows(rows, db="d", table="t", job="j", rows_per_command=4))
    assert [c.rows for c in by_rows] == [4, 4, 2]
    assert [c.command["id"] for c in by_rows] == [chunk_command_id("j", i) for i in range(3)]
    assert by_rows[0].command["db"] == "d" and len(by_rows[0].command["statements"]) == 4
    one_size = len(json.dumps(insert_statement("t", rows[0])))
    by_bytes = list(
        chunk_rows(rows, db="d", table="t", job="j", first_index=5, chunk_bytes=3 * one_size)
    )
    assert [c.rows for c in by_bytes] == [3, 3, 3, 1]
    assert by_bytes[0].index == 5 and by_bytes[0].command["id"] == "import-j-0000005"
    # a row bigger than chunk_bytes still goes, alone
    assert [c.rows for c in chunk_rows(rows[:2], db="d", table="t", job="j", chunk_bytes=1)] == [
        1,
        1,
    ]


def test_resume_file_round_trips_and_ignores_other_jobs(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    ResumeState("job1", 900, 3, {"id": "x", "sequence_number": "7"}).save(path)
    assert json.loads(path.read_text()) == {
        "job": "job1",
        "rows_sent": 900,
        "chunks_sent": 3,
        "last": {"id": "x", "sequence_number": "7"},
    }
    assert ResumeState.load(path, "job1") == ResumeState(
        "job1", 900, 3, {"id": "x", "sequence_number": "7"}
    )
    assert ResumeState.load(path, "job2") is None
    path.write_text("{not json")
    assert ResumeState.load(path, "job1") is None
    assert ResumeState.load(tmp_path / "missing.json", "job1") is None


def test_job_id_depends_on_every_part() -> None:
    base = job_id("d", "t", "abc", 500)
    assert len(base) == 16
    others = [job_id("e", "t", "abc", 500), job_id("d", "u", "abc", 500)]
    others += [job_id("d", "t", "abd", 500), job_id("d", "t", "abc", 501)]
    assert base not in others


def test_importer_sends_in_batches_reports_progress_and_resumes(tmp_path: Path) -> None:
    # GIVEN 120 rows, 1 row per command (so 120 commands, sent 50 at a time)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(120)))
    writer: Any = MemoryWriter()
    seen: list[ImportProgress] = []
    importer = Importer(writer, path, db="d", table="t", rows_per_command=1)
    assert importer.resumed_from == 0
    # WHEN it runs
    result = importer.run(seen.append)
    # THEN it sent every row once, in three calls, saving progress after each
    assert [len(call) for call in writer.calls] == [50, 50, 20]
    assert [p.rows_sent for p in seen] == [50, 100, 120]
    assert {p.total_rows for p in seen} == {120}
    assert (result.rows, result.commands, result.total_rows) == (120, 120, 120)
    assert result.last == Bookmark("d", chunk_command_id(importer.job, 119), "", "120")
    assert result.command_ids[0] == chunk_command_id(importer.job, 0)
    saved = json.loads(result.progress_file.read_text())
    assert saved["rows_sent"] == 120 and saved["chunks_sent"] == 120

    # WHEN the resume file says 100 rows (100 commands) and it runs again
    saved.update(rows_sent=100, chunks_sent=100)
    result.progress_file.write_text(json.dumps(saved))
    again: Any = MemoryWriter()
    resumed = Importer(again, path, db="d", table="t", rows_per_command=1)
    assert resumed.resumed_from == 100
    second = resumed.run()
    # THEN only the last 20 rows go, under the same command ids as the first run's
    assert [c["id"] for c in again.commands] == [c["id"] for c in writer.commands[100:]]
    assert [c["statements"][0]["params"] for c in again.commands] == [[i] for i in range(100, 120)]
    assert (second.rows, second.commands, second.resumed_from) == (120, 120, 100)

    # AND restart=True ignores the resume file; a new chunk size is a new job
    assert (
        Importer(again, path, db="d", table="t", rows_per_command=1, restart=True).resumed_from == 0
    )
    assert Importer(again, path, db="d", table="t", rows_per_command=2).resumed_from == 0


def test_importer_refuses_a_missing_file_and_a_bad_table(tmp_path: Path) -> None:
    writer: Any = MemoryWriter()
    with pytest.raises(ImportInputError, match="no such file"):
        Importer(writer, tmp_path / "none.csv", db="d", table="t")
    with pytest.raises(ImportInputError, match="no such file"):
        Importer(writer, tmp_path, db="d", table="t")
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n")
    with pytest.raises(ImportInputError, match="table name 'bad name'"):
        Importer(writer, path, db="d", table="bad name")
    assert writer.calls == []
