"""End-to-end cost of the local stack: commands/s and write-to-visible latency, 4 producers.

Runs ``efsqlite dev`` as a subprocess (its own process, as the real services are) and measures,
in the same run and on the same commands:

- **writer alone**: ``Writer.handle_event`` called in-process with Lambda-shaped events of 10
  records (single-command messages, then packed messages): the physical limit of the handler.
- **stack, single**: 4 producer threads, one SQS message per command (``WriteClient.send``),
  until every command is applied.
- **stack, packed**: the same through ``WriteClient.send_many`` (packed envelopes).
- **write-to-visible**: 4 producers, each sending one command and then reading it back with
  ``min_position`` (read-your-writes), timing send start to answer.

The stack's poller logs receive, handler and delete time per batch; the report splits the
stack's elapsed time into moto (receive + delete), the handler, and the rest (producers' sends
to moto, long-poll waits, reader). Output: ``bench/results/e2e.json`` and Markdown on stdout.

    .venv/bin/python bench/bench_e2e.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from efsqlite.client import Endpoints, ReadClient, WriteClient, named_command  # noqa: E402
from efsqlite.write.settings import WriterSettings  # noqa: E402
from efsqlite.write.writer import Writer  # noqa: E402

MIGRATIONS = REPO / "examples" / "todo" / "migrations"
REGISTRY = "examples.todo.commands:registry"
PRODUCERS = 4
_BATCH_LINE = re.compile(
    r"batch: (\d+) records.*\(receive ([\d.]+) ms, handler ([\d.]+) ms, delete ([\d.]+) ms\)"
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def commands_for(run: str, count: int) -> list[dict[str, Any]]:
    return [
        named_command(
            "main", "add_todo", {"id": f"{run}-{i:06d}", "title": f"t{i}"}, id=f"{run}-{i:06d}"
        )
        for i in range(count)
    ]


# -- the writer alone ---------------------------------------------------------------------------
def _record(body: str, sequence: int) -> dict[str, Any]:
    now = str(int(time.time() * 1000))
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": now,
            "SequenceNumber": str(sequence),
            "MessageGroupId": "main",
            "SenderId": "AIDAEXAMPLE",
            "MessageDeduplicationId": uuid.uuid4().hex,
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:efsqlite-writes.fifo",
        "awsRegion": "us-east-1",
    }


def writer_alone(folder: Path, commands: list[dict[str, Any]], per_message: int) -> dict[str, Any]:
    """Apply ``commands`` through Writer.handle_event, 10 messages per event."""
    settings = WriterSettings(
        data_dir=folder, migrations_dir=MIGRATIONS, commands=REGISTRY, databases="*"
    )
    writer = Writer(settings)
    writer.database("main")  # migrations outside the timing, as a warm Lambda
    bodies = []
    for start in range(0, len(commands), per_message):
        chunk = commands[start : start + per_message]
        if len(chunk) == 1:
            bodies.append(json.dumps(chunk[0]))
        else:
            bodies.append(json.dumps({"v": 1, "db": "main", "commands": chunk}))
    sequence = 2 * 10**19
    batch_ms: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(bodies), 10):
        records = []
        for body in bodies[start : start + 10]:
            sequence += 1
            records.append(_record(body, sequence))
        t0 = time.perf_counter()
        result = writer.handle_event({"Records": records})
        batch_ms.append((time.perf_counter() - t0) * 1000)
        assert not result.failed_message_ids()
    elapsed = time.perf_counter() - started
    writer.close()
    return {
        "commands": len(commands),
        "commands_per_message": per_message,
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(commands) / elapsed, 1),
        "batch_ms_p50": round(percentile(batch_ms, 0.5), 2),
        "batch_ms_p99": round(percentile(batch_ms, 0.99), 2),
    }


# -- the stack ----------------------------------------------------------------------------------
class StackProcess:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log_path = folder / "stack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Endpoints:
        command = [
            sys.executable,
            "-m",
            "efsqlite",
            "dev",
            "--data-dir",
            str(self.folder / "data"),
            "--sqs-port",
            "0",
            "--lambda-port",
            "0",
            "--url-port",
            "0",
            "--no-console",
            "--migrations-dir",
            str(MIGRATIONS),
            "--commands",
            REGISTRY,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        endpoints = self.folder / "data" / "endpoints.json"
        deadline = time.monotonic() + 60
        while not endpoints.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"stack did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)
        return Endpoints.from_file(endpoints)

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def batches_since(self, offset: int) -> list[tuple[int, float, float, float]]:
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        return [
            (int(m[1]), float(m[2]), float(m[3]), float(m[4])) for m in _BATCH_LINE.finditer(text)
        ]

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def stack_throughput(
    stack: StackProcess, endpoints: Endpoints, commands: list[dict[str, Any]], packed: bool
) -> dict[str, Any]:
    shares = [commands[i::PRODUCERS] for i in range(PRODUCERS)]
    last: list[Any] = [None] * PRODUCERS
    send_s = [0.0] * PRODUCERS

    def produce(index: int) -> None:
        client = WriteClient(endpoints=endpoints)
        t0 = time.perf_counter()
        if packed:
            for start in range(0, len(shares[index]), 100):
                last[index] = client.send_many(shares[index][start : start + 100])[-1]
        else:
            for command in shares[index]:
                last[index] = client.send(command)
        send_s[index] = time.perf_counter() - t0

    offset = stack.log_offset()
    started = time.perf_counter()
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reader = ReadClient(endpoints=endpoints)
    for bookmark in last:
        assert reader.wait_for(bookmark, timeout=300, poll_s=0.005).state == "applied"
    elapsed = time.perf_counter() - started
    time.sleep(0.3)  # let the last batch's log line land
    batches = stack.batches_since(offset)
    receive = sum(b[1] for b in batches) / 1000
    handler = sum(b[2] for b in batches) / 1000
    delete = sum(b[3] for b in batches) / 1000
    return {
        "commands": len(commands),
        "packed": packed,
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(commands) / elapsed, 1),
        "batches": len(batches),
        "records_per_batch": round(sum(b[0] for b in batches) / max(1, len(batches)), 2),
        "poller_receive_s": round(receive, 3),
        "poller_handler_s": round(handler, 3),
        "poller_delete_s": round(delete, 3),
        "poller_other_s": round(max(0.0, elapsed - receive - handler - delete), 3),
        "producer_send_s_mean": round(statistics.mean(send_s), 3),
    }


def write_to_visible(endpoints: Endpoints, samples: int) -> dict[str, Any]:
    per = max(1, samples // PRODUCERS)
    latencies: list[float] = []
    lock = threading.Lock()

    def produce(index: int) -> None:
        writer, reader = WriteClient(endpoints=endpoints), ReadClient(endpoints=endpoints)
        mine = []
        for i in range(per):
            todo = f"lat-{index}-{i:05d}-{uuid.uuid4().hex[:6]}"
            t0 = time.perf_counter()
            bookmark = writer.send(named_command("main", "add_todo", {"id": todo, "title": "x"}))
            result = reader.query(
                "SELECT id FROM todos WHERE id = ?",
                [todo],
                db="main",
                min_position=bookmark.sequence_number,
                timeout_ms=10_000,
            )
            mine.append((time.perf_counter() - t0) * 1000)
            assert result.rows == [[todo]], result
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


def markdown(report: dict[str, Any]) -> str:
    alone, stack = report["writer_alone"], report["stack"]
    lines = [
        f"## End-to-end through the local stack ({report['producers']} producers, "
        f"{report['commands']} commands per run)",
        "",
        "| path | commands/s | seconds | notes |",
        "|---|---:|---:|---|",
    ]
    for key, label in (("single", "1 command/message"), ("packed", "packed messages")):
        a, s = alone[key], stack[key]
        lines.append(
            f"| writer alone, {label} | {a['commands_per_s']} | {a['seconds']} | "
            f"batch p50 {a['batch_ms_p50']} ms, p99 {a['batch_ms_p99']} ms |"
        )
        lines.append(
            f"| local stack, {label} | {s['commands_per_s']} | {s['seconds']} | "
            f"{s['batches']} batches of {s['records_per_batch']} records |"
        )
    lines += [
        "",
        "Where the stack's time goes (seconds of the run's wall time, single then packed):",
        "",
        "| run | moto receive | handler | moto delete | other (sends, waits) "
        "| producers' send time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("single", "packed"):
        s = stack[key]
        lines.append(
            f"| {key} | {s['poller_receive_s']} | {s['poller_handler_s']} | "
            f"{s['poller_delete_s']} | {s['poller_other_s']} | {s['producer_send_s_mean']} |"
        )
    latency = report["write_to_visible"]
    lines += [
        "",
        f"Write-to-visible (send, then query with min_position), {latency['samples']} samples: "
        f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI")
    parser.add_argument("--commands", type=int)
    parser.add_argument("--latency-samples", type=int)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "e2e.json"))
    args = parser.parse_args()
    count = args.commands or (400 if args.quick else 2000)
    samples = args.latency_samples or (80 if args.quick else 400)
    folder = Path(tempfile.mkdtemp(prefix="efsqlite-bench-e2e-"))
    os.chdir(REPO)
    try:
        alone = {
            "single": writer_alone(folder / "alone-single", commands_for("as", count), 1),
            "packed": writer_alone(folder / "alone-packed", commands_for("ap", count), 100),
        }
        stack = StackProcess(folder)
        endpoints = stack.start()
        try:
            warm = WriteClient(endpoints=endpoints).send(commands_for("warm", 1)[0])
            ReadClient(endpoints=endpoints).wait_for(warm, timeout=60)
            results = {
                "single": stack_throughput(stack, endpoints, commands_for("ss", count), False),
                "packed": stack_throughput(stack, endpoints, commands_for("sp", count), True),
            }
            latency = write_to_visible(endpoints, samples)
        finally:
            stack.stop()
        report = {
            "producers": PRODUCERS,
            "commands": count,
            "quick": args.quick,
            "python": sys.version.split()[0],
            "writer_alone": alone,
            "stack": results,
            "write_to_visible": latency,
        }
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        print(markdown(report))
        print(f"\n(JSON: {output})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
