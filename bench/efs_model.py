"""The EFS latency model and the EFS usage counter, both built on ``strace``.

On EFS every durable or coordinating filesystem call is a network round trip, and so is every
page read after a lock. Two tools make that visible on one machine:

- **The latency model.** ``strace -e inject=SYSCALL:delay_exit=MICROSECONDS`` holds each call
  for a fixed time after it returns, as if it had crossed the network. The default model is
  2.7 ms per ``fdatasync``/``fsync`` (EFS's write latency), 1 ms per ``fcntl`` lock,
  ``openat`` and ``unlink`` (a metadata round trip) and 250 µs per ``pread64`` (AWS's EFS
  performance documentation gives reads "as low as 250 microseconds"). ``strace -P`` limits
  the delays to the calls on the database files (:func:`database_paths`: each ``.sqlite``,
  its ``-journal`` and the folder holding them, which SQLite opens and syncs): a reader's
  private snapshot in ``/tmp`` is local disk on Lambda and is not charged.
- **Counting.** ``strace -f -y`` writes every call with the path behind each descriptor;
  :func:`parse_trace` keeps the calls on the database files and their return values: calls
  per syscall, data operations (``pread64``/``pwrite64``) and their bytes, metadata
  operations (the other traced calls), and the bytes EFS Elastic throughput meters, at least
  32 KiB per data operation and 4 KiB per metadata operation. Counts are noise-free, so they
  compare designs exactly. Start-up is subtracted by running the same work twice, ``N`` and
  ``2N`` units, and taking the difference (:func:`difference`).

DO charge every ``pread64`` on a database file: EFS grants no NFS delegations, so every lock
drops the client's page cache (Linux ``fs/nfs/file.c``, ``do_setlk``) and the next read of a
page goes to the server. SQLite's own page cache is not affected: pages it kept since the last
change of the file are not read again.
DON'T read the usage counts as NFS operations one for one: they are syscalls. The client
buffers ``pwrite64`` until the sync and may send fewer, larger WRITEs, and its readahead may
merge sequential ``pread64`` (a snapshot's copy) into larger READs. The metered bytes, a
minimum per syscall, are then an upper bound and the plain bytes a lower bound.
DON'T expect ``stat``/``fstat``/``access`` to be charged: they are neither delayed nor counted.

``--seccomp-bpf`` stops only the traced calls, so untraced syscalls run at native speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Microseconds added to each call on a database file under the model.
MODEL_US: dict[str, int] = {
    "fdatasync": 2700,
    "fsync": 2700,
    "fcntl": 1000,
    "openat": 1000,
    "unlink": 1000,
    "pread64": 250,
}
#: The same calls stopped by the same ``strace``, with no delay: what tracing alone costs.
ZERO_MODEL: dict[str, int] = dict.fromkeys(MODEL_US, 0)
#: What the counter traces: the round-trip calls plus page reads and writes.
COUNTED = ("fdatasync", "fsync", "fcntl", "openat", "unlink", "ftruncate", "pwrite64", "pread64")
#: The calls that are a network round trip on EFS. ``pwrite64`` is not: the NFS client
#: buffers writes until the sync.
ROUND_TRIPS = ("fdatasync", "fsync", "fcntl", "openat", "unlink", "ftruncate", "pread64")
#: Data operations (metered at least :data:`DATA_MINIMUM` bytes each); the rest is metadata.
DATA_CALLS = ("pread64", "pwrite64")
METADATA_CALLS = tuple(name for name in COUNTED if name not in DATA_CALLS)
#: EFS Elastic throughput's minimum metered size of one data and one metadata operation.
DATA_MINIMUM = 32 * 1024
METADATA_MINIMUM = 4 * 1024
#: The usage figures :func:`parse_trace` adds to the per-syscall counts.
USAGE_KEYS = (
    "data_ops",
    "metadata_ops",
    "bytes",
    "read_bytes",
    "written_bytes",
    "metered_bytes",
    "metered_read_bytes",
    "metered_write_bytes",
    "metered_metadata_bytes",
    "coalesced_write_ops",
    "metered_write_bytes_coalesced",
)


def strace_path() -> str | None:
    return shutil.which("strace")


def _strace() -> str:
    strace = strace_path()
    if strace is None:
        raise RuntimeError("strace is not installed")
    return strace


def describe_model(model: Mapping[str, int] = MODEL_US) -> str:
    parts = [f"{name} {us / 1000:g} ms" for name, us in model.items()]
    return (
        ", ".join(parts) + " per call on the database files (each .sqlite, its -journal, its "
        "-pages log and their folder; not the reader's snapshot in /tmp)"
    )


def database_paths(folder: Path | str, dbs: Iterable[str] = ("main",)) -> list[str]:
    """The EFS paths of databases ``dbs`` in ``folder``: the folder, each file, its journal
    and its page log (``-pages``, which the writer syncs at every commit and readers read)."""
    root = os.path.realpath(folder)
    paths = [root]
    for db in dbs:
        paths += [
            os.path.join(root, f"{db}.sqlite{suffix}") for suffix in ("", "-journal", "-pages")
        ]
    return paths


def model_prefix(paths: Sequence[str], model: Mapping[str, int] = MODEL_US) -> list[str]:
    """``strace`` arguments that run a command under the latency model.

    Only calls on ``paths`` (see :func:`database_paths`) are delayed: ``strace -P`` matches
    a path argument or the file behind a descriptor, and a path that does not exist yet (a
    journal) still matches once it is created.
    """
    if not paths:
        raise ValueError("the model needs the database paths to charge")
    args = [_strace(), "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null"]
    args += ["-e", "trace=" + ",".join(model)]
    for name, us in model.items():
        args += ["-e", f"inject={name}:delay_exit={us}"]
    for path in paths:
        args += ["-P", path]
    return args


def trace_prefix(output: Path) -> list[str]:
    """``strace`` arguments that write every counted call, with descriptor paths, to ``output``."""
    return [
        _strace(),
        "-f",
        "-y",
        "-qq",
        "-s",
        "0",
        "--seccomp-bpf",
        "-o",
        str(output),
        "-e",
        "trace=" + ",".join(COUNTED),
    ]


# -- parsing ---------------------------------------------------------------------------------
_PID = re.compile(r"^(\d+)\s+(.*)$")
_FD_PATH = re.compile(r"^-?\d+<([^>]*)>")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_UNFINISHED = " <unfinished ...>"
_RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
_PADDED_RETURN = re.compile(r"\)\s+= ")


def in_folder(folder: Path | str) -> Callable[[str], bool]:
    """A path filter: ``folder`` itself and the files directly in it (not its subfolders)."""
    root = os.path.realpath(folder)
    return lambda path: path == root or os.path.dirname(path) == root


def _call_path(name: str, args: str) -> str | None:
    if name in ("openat", "unlink"):
        # openat(AT_FDCWD</cwd>, "path", ...) or unlink("path"); SQLite passes full paths.
        dirfd = _FD_PATH.match(args) if name == "openat" else None
        found = _STRING.search(args)
        if found is None:
            return None
        path = found.group(1)
        if not path.startswith("/") and dirfd is not None:
            path = os.path.join(dirfd.group(1), path)
        return os.path.normpath(path)
    fd = _FD_PATH.match(args)
    return fd.group(1) if fd else None


def empty_usage() -> dict[str, float]:
    return dict.fromkeys((*COUNTED, *USAGE_KEYS), 0.0)


def _flush(usage: dict[str, float], ranges: list[tuple[int, int]]) -> None:
    """Count the contiguous runs of ``ranges`` (byte ranges written) as one WRITE each."""
    end = -1
    run = 0
    for start, stop in sorted(ranges):
        if start > end:
            if run:
                usage["coalesced_write_ops"] += 1
                usage["metered_write_bytes_coalesced"] += max(run, DATA_MINIMUM)
            run, end = 0, start
        run += max(stop - max(start, end), 0)
        end = max(end, stop)
    if run:
        usage["coalesced_write_ops"] += 1
        usage["metered_write_bytes_coalesced"] += max(run, DATA_MINIMUM)
    ranges.clear()


def parse_trace(text: str, keep: Callable[[str], bool]) -> dict[str, float]:
    """Calls, data/metadata operations and bytes of an ``strace -f -y`` log, on ``keep`` paths.

    Returns calls per syscall of :data:`COUNTED` and the :data:`USAGE_KEYS`: ``bytes`` are
    the return values of ``pread64``/``pwrite64`` (0 for a failed call), ``metered_bytes``
    ``max(bytes, DATA_MINIMUM)`` per data operation plus ``METADATA_MINIMUM`` per metadata
    operation.

    ``metered_write_bytes_coalesced`` is an estimate, not a count: the write bytes metered if
    the NFS client sent each contiguous range a file got between two of its syncs or locks
    as one WRITE (``coalesced_write_ops``), at least ``DATA_MINIMUM`` each.
    """
    usage = empty_usage()
    pending: dict[str, str] = {}
    dirty: dict[str, list[tuple[int, int]]] = {}
    for raw in text.splitlines():
        match = _PID.match(raw)
        pid, line = (match.group(1), match.group(2)) if match else ("", raw)
        if line.endswith(_UNFINISHED):
            pending[pid] = line[: -len(_UNFINISHED)]
            continue
        resumed = _RESUMED.match(line)
        if resumed:
            # strace pads a resumed call's return value into a column: ")          = 0".
            rest = _PADDED_RETURN.sub(") = ", resumed.group(2), count=1)
            line = pending.pop(pid, resumed.group(1) + "(") + rest
        head, sep, tail = line.rpartition(") = ")
        if not sep or "(" not in head:
            continue
        name, args = head.split("(", 1)
        if name not in usage or name in USAGE_KEYS:
            continue
        path = _call_path(name, args)
        if path is None or not keep(path):
            continue
        usage[name] += 1
        if name in DATA_CALLS:
            token = tail.split(maxsplit=1)[0] if tail.strip() else "?"
            size = int(token) if token.lstrip("-").isdigit() else 0
            size = max(size, 0)
            metered = max(size, DATA_MINIMUM)
            usage["data_ops"] += 1
            usage["bytes"] += size
            usage["metered_bytes"] += metered
            if name == "pread64":
                usage["read_bytes"] += size
                usage["metered_read_bytes"] += metered
            else:
                usage["written_bytes"] += size
                usage["metered_write_bytes"] += metered
                offset = args.rsplit(",", 1)[-1].strip()
                if size and offset.isdigit():
                    dirty.setdefault(path, []).append((int(offset), int(offset) + size))
        else:
            usage["metadata_ops"] += 1
            usage["metered_bytes"] += METADATA_MINIMUM
            usage["metered_metadata_bytes"] += METADATA_MINIMUM
            if name in ("fsync", "fdatasync", "fcntl", "ftruncate") and path in dirty:
                _flush(usage, dirty[path])
    for ranges in dirty.values():
        _flush(usage, ranges)
    return usage


def count_calls(
    command: Sequence[str],
    workdir: Path,
    *,
    env: Mapping[str, str],
    folder: Path | str,
) -> dict[str, float]:
    """Run ``command`` under the tracer; usage on the files directly in ``folder``.

    Returns calls per syscall of :data:`COUNTED` and the :data:`USAGE_KEYS` (see
    :func:`parse_trace`).
    """
    handle, name = tempfile.mkstemp(prefix="strace-trace-", suffix=".txt", dir=workdir)
    os.close(handle)
    output = Path(name)
    try:
        subprocess.run(
            [*trace_prefix(output), *command],
            check=True,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        return parse_trace(output.read_text(errors="replace"), in_folder(folder))
    finally:
        output.unlink(missing_ok=True)


def drive_child(
    command: Sequence[str], on_request: Callable[[str], None] | None, *, cwd: Path | str
) -> dict[str, Any]:
    """Run a benchmark child; return the JSON of the last line it prints.

    A line ``w`` or ``w ARGS`` is the child asking the parent to change something (a write)
    before it goes on: ``on_request(line)`` runs, then the child reads ``ok`` on stdin.
    """
    proc = subprocess.Popen(
        list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd
    )
    assert proc.stdin is not None and proc.stdout is not None
    last = ""
    for line in proc.stdout:
        if on_request is not None and (line == "w\n" or line.startswith("w ")):
            on_request(line)
            proc.stdin.write("ok\n")
            proc.stdin.flush()
            continue
        last = line
    proc.stdin.close()
    if proc.wait() != 0 or not last:
        raise RuntimeError(f"child failed ({proc.returncode}): {' '.join(command[-6:])}")
    result: dict[str, Any] = json.loads(last)
    return result


def difference(
    big: Mapping[str, float], small: Mapping[str, float], units: int
) -> dict[str, float]:
    """Per-unit figures of the steady state: ``(big - small) / units``, for every key."""
    return {name: (big.get(name, 0) - small.get(name, 0)) / units for name in {**small, **big}}


def round_trips(per_unit: Mapping[str, float]) -> float:
    return sum(per_unit.get(name, 0.0) for name in ROUND_TRIPS)


def usage_summary(per_unit: Mapping[str, float]) -> dict[str, float]:
    """The per-operation figures the cost model reads (``bench/results/usage.json``)."""
    return {
        "data_ops": per_unit.get("data_ops", 0.0),
        "metadata_ops": per_unit.get("metadata_ops", 0.0),
        "bytes": per_unit.get("bytes", 0.0),
        "metered_bytes": per_unit.get("metered_bytes", 0.0),
        "round_trips": round_trips(per_unit),
    }


def printed(run: Callable[[], T]) -> tuple[T, bytes]:
    """Run ``run`` with file descriptors 1 and 2 sent to a file: its result and every byte
    the process printed meanwhile (what a handler adds to its logs)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            result = run()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        capture.seek(0)
        return result, capture.read()
