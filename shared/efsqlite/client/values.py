"""SQLite values as people read them: the reader's JSON blobs back to bytes, blobs as hex.

The reader answers a blob as ``{"$blob": base64}`` (JSON has no bytes). The CLI's tables and
the console's pages show it as SQL's hex literal, ``x'0a1b'``, so both print one value alike.

DON'T guess a blob from any one-key object: only ``{"$blob": <valid base64>}`` is one.
"""

from __future__ import annotations

import binascii
from typing import Any


def blob_bytes(value: Any) -> bytes | None:
    """``value`` as bytes if it is a blob: bytes, or the reader's ``{"$blob": base64}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$blob"), str):
        try:
            return binascii.a2b_base64(value["$blob"], strict_mode=True)
        except (binascii.Error, ValueError):
            return None
    return None


def format_blob(data: bytes, width: int = 60) -> str:
    """A blob as SQL's hex literal, ``x'0a1b'``; one wider than ``width`` is cut and sized:
    ``x'0a1b…' (4096 bytes)``."""
    text = f"x'{data.hex()}'"
    if len(text) <= width:
        return text
    size = f"…' ({len(data)} bytes)"
    keep = max(0, (width - len(size) - 2) // 2)
    return f"x'{data[:keep].hex()}{size}"
