"""Read-your-writes: ``min_position`` waits for the writer, bounded by the request timeout."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.reader_db import (
    TOTAL,
    function_url_event,
    make_reader,
    make_writer,
    seed_accounts,
    transfer_statements,
    write,
)


@pytest.mark.parametrize("mode", ["snapshot", "direct"])
def test_min_position_ahead_then_caught_up(tmp_path: Path, mode: str) -> None:
    # GIVEN a database at position P, a reader with a long staleness window (it must still
    # re-check when asked for more), and a producer that got sequence number Q > P
    writer = make_writer(tmp_path)
    position = seed_accounts(writer)
    reader = make_reader(tmp_path, read_mode=mode, max_staleness_ms=60_000)
    assert reader.handle({"db": "main", "sql": "SELECT 1"})["position"] == position
    ahead = str(int(position) + 10**6)
    query = {"db": "main", "sql": "SELECT sum(balance), max(balance) FROM accounts"}
    # WHEN asked for Q before the writer has applied it
    answer = reader.handle(dict(query, min_position=ahead, timeout_ms=100))
    # THEN "not yet at position", retryable, with the position the reader does have
    assert answer["error"]["type"] == "NotYetAtPosition"
    assert answer["error"]["retryable"] is True
    assert answer["error"]["position"] == position
    # WHEN the writer applies Q while the same call is waiting
    applier = threading.Timer(
        0.2, write, args=(writer, transfer_statements(0, 1, 25)), kwargs={"sequence_number": ahead}
    )
    applier.start()
    waited = reader.handle(dict(query, min_position=ahead, timeout_ms=10_000))
    applier.join()
    # THEN it answers with the write visible and a position >= Q
    assert waited["rows"] == [[TOTAL, 1025]], waited
    assert int(waited["position"]) >= int(ahead)
    # AND the same call now succeeds at once, also through the Function URL
    again = reader.handle(dict(query, min_position=ahead, timeout_ms=100))
    assert again["rows"] == [[TOTAL, 1025]]
    url = reader.handle(function_url_event("POST", "/query", body=dict(query, min_position=ahead)))
    assert url["statusCode"] == 200
    # AND a min_position given as an integer works the same
    assert reader.handle(dict(query, min_position=int(ahead)))["position"] == ahead
    writer.close()
    reader.close()
