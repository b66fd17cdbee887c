"""1,000 commands from 4 producers, with duplicates and retried ids: each applied once, in order."""

from __future__ import annotations

import threading
from typing import Any

from efsqlite.client import Bookmark, Endpoints, ReadClient, WriteClient, named_command

from .conftest import Stack, wait_until

PRODUCERS = 4
PER_PRODUCER = 250


def _producer(endpoints: Endpoints, number: int, out: dict[int, list[Bookmark]]) -> None:
    client = WriteClient(endpoints=endpoints)
    commands = [
        named_command(
            "main",
            "add_todo",
            {"id": f"p{number}-{i:04d}", "title": f"task {i}"},
            id=f"p{number}-{i:04d}",
        )
        for i in range(PER_PRODUCER)
    ]
    bookmarks: list[Bookmark] = []
    i = 0
    while i < PER_PRODUCER:
        if i % 50 < 10:
            # One message per command, each sent twice: SQS deduplication drops the second.
            bookmarks.append(client.send(commands[i]))
            client.send(commands[i])
            i += 1
        else:
            # Packed: 20 commands in one message; the first of them is repeated in the next
            # pack (a different message and dedup id), so only the writer's ledger stops it.
            chunk = commands[i : i + 20]
            bookmarks.extend(client.send_many(chunk))
            if i + 20 < PER_PRODUCER:
                client.send_many([commands[i], commands[i + 20]])
            i += 20
    # A producer that lost its answers retries ids it already sent, long after.
    client.send_many(commands[::25])
    out[number] = bookmarks


def test_thousand_commands_applied_exactly_once_in_producer_order(stack: Stack) -> None:
    # GIVEN four producer threads, each with its own client, sending 250 commands each
    endpoints = Endpoints.from_file(stack.data_dir / "endpoints.json")
    results: dict[int, list[Bookmark]] = {}
    threads = [
        threading.Thread(target=_producer, args=(endpoints, n, results)) for n in range(PRODUCERS)
    ]
    # WHEN they all send at once (with duplicate sends and retried ids)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(results) == PRODUCERS, "a producer thread failed"

    # THEN every last bookmark settles as applied
    reader = ReadClient(endpoints=endpoints)
    for bookmarks in results.values():
        assert len(bookmarks) == PER_PRODUCER
        assert reader.wait_for(bookmarks[-1], timeout=120).state == "applied"
    expected = PRODUCERS * PER_PRODUCER
    wait_until(
        lambda: stack.rows("SELECT count(*) FROM todos WHERE id LIKE 'p%'")[0][0] >= expected,
        timeout=120,
        what="all rows",
    )

    # AND queried back through a stock lambda.invoke: 1,000 distinct rows, no more
    assert stack.rows("SELECT count(*), count(DISTINCT id) FROM todos WHERE id LIKE 'p%'") == [
        [expected, expected]
    ]
    # AND the ledger says applied once per id, never rejected (a second apply of an INSERT
    # would have been a constraint violation)
    ledger: dict[str, Any] = dict(
        stack.rows(
            "SELECT outcome, count(*) FROM _efsqlite_commands WHERE id LIKE 'p%' GROUP BY outcome"
        )
    )
    assert ledger == {"applied": expected}
    # AND each producer's commands were applied in the order it sent them (rowid order)
    for number in range(PRODUCERS):
        mine = [
            r[0]
            for r in stack.rows(
                "SELECT id FROM todos WHERE id LIKE ? ORDER BY rowid", [f"p{number}-%"]
            )
        ]
        assert len(mine) == PER_PRODUCER
        assert mine == sorted(mine), f"producer {number} out of order"
    # AND bookmarks carry increasing sequence numbers per producer (read-your-writes positions)
    for bookmarks in results.values():
        positions = [int(b.sequence_number) for b in bookmarks]
        assert positions == sorted(positions)
