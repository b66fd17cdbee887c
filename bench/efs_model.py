"""The EFS latency model and the syscall counter, both built on ``strace``.

On EFS every durable or coordinating filesystem call is a network round trip. Two tools make
that visible on one machine:

- **Counting.** ``strace -f -c`` counts the calls a process makes. Counts are noise-free, so
  they compare designs exactly. Start-up is subtracted by running the same work twice, ``N``
  and ``2N`` units, and taking the difference.
- **The latency model.** ``strace -e inject=SYSCALL:delay_exit=MICROSECONDS`` holds each call
  for a fixed time after it returns, as if it had crossed the network. The default model is
  2.7 ms per ``fdatasync``/``fsync`` (EFS's write latency) and 1 ms per ``fcntl`` lock,
  ``openat`` and ``unlink`` (a metadata round trip). Reads and writes of pages are not
  delayed: NFS client caching absorbs most of them, which flatters direct-on-EFS designs, not
  ours.

``--seccomp-bpf`` stops only the traced calls, so untraced syscalls run at native speed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Microseconds added to each call under the model.
MODEL_US: dict[str, int] = {
    "fdatasync": 2700,
    "fsync": 2700,
    "fcntl": 1000,
    "openat": 1000,
    "unlink": 1000,
}
#: What the counter counts: the round-trip calls plus page reads and writes.
COUNTED = ("fdatasync", "fsync", "fcntl", "openat", "unlink", "ftruncate", "pwrite64", "pread64")
#: The calls that are a network round trip on EFS (the "filesystem syscalls" of the goals).
ROUND_TRIPS = ("fdatasync", "fsync", "fcntl", "openat", "unlink", "ftruncate")


def strace_path() -> str | None:
    return shutil.which("strace")


def describe_model(model: Mapping[str, int] = MODEL_US) -> str:
    parts = [f"{name} {us / 1000:g} ms" for name, us in model.items()]
    return ", ".join(parts)


def model_prefix(model: Mapping[str, int] = MODEL_US) -> list[str]:
    """``strace`` arguments that run a command under the latency model."""
    strace = strace_path()
    if strace is None:
        raise RuntimeError("strace is not installed")
    args = [strace, "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null"]
    args += ["-e", "trace=" + ",".join(model)]
    for name, us in model.items():
        args += ["-e", f"inject={name}:delay_exit={us}"]
    return args


def count_prefix(output: Path) -> list[str]:
    """``strace`` arguments that count the calls in :data:`COUNTED` into ``output``."""
    strace = strace_path()
    if strace is None:
        raise RuntimeError("strace is not installed")
    return [strace, "-f", "-c", "-o", str(output), "-e", "trace=" + ",".join(COUNTED)]


@dataclass(frozen=True)
class CallCount:
    calls: int
    errors: int


_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*([a-z0-9_]+)\s*$")


def parse_summary(text: str) -> dict[str, CallCount]:
    """Parse the table ``strace -c`` writes (calls and errors per syscall)."""
    counts: dict[str, CallCount] = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match and match.group(3) != "total":
            counts[match.group(3)] = CallCount(int(match.group(1)), int(match.group(2) or 0))
    return counts


def count_calls(command: Sequence[str], workdir: Path, *, env: Mapping[str, str]) -> dict[str, int]:
    """Run ``command`` under the counter and return calls per syscall (all of :data:`COUNTED`)."""
    handle, name = tempfile.mkstemp(prefix="strace-count-", suffix=".txt", dir=workdir)
    os.close(handle)
    output = Path(name)
    subprocess.run(
        [*count_prefix(output), *command],
        check=True,
        env=dict(env),
        stdout=subprocess.DEVNULL,
    )
    parsed = parse_summary(output.read_text())
    return {name: parsed[name].calls if name in parsed else 0 for name in COUNTED}


def difference(big: Mapping[str, int], small: Mapping[str, int], units: int) -> dict[str, float]:
    """Per-unit calls of the steady state: ``(big - small) / units``."""
    return {name: (big.get(name, 0) - small.get(name, 0)) / units for name in COUNTED}


def round_trips(per_unit: Mapping[str, float]) -> float:
    return sum(per_unit.get(name, 0.0) for name in ROUND_TRIPS)
