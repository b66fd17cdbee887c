"""Bounds on SQLite work done inside one VM step, which no progress handler can interrupt.

The writer's work budget and the reader's deadline are checked between VM steps, so one
built-in function call that loops internally runs to its end. On the pinned SQLite 3.54.1
(``python bench/bench_single_step.py``), with operands far below the length limits:

- ``X LIKE '%<40,000 a>b'`` / ``GLOB`` over a 1 MB value: 28 to 33 s (len(X) * len(pattern));
- ``trim(X, Y)``, 80,000 characters each: 7.9 s (len(X) * len(Y));
- ``replace`` / ``instr``, 400,000 and 200,000 bytes: 0.67 s / 0.17 s (memcmp at each offset).

:func:`install` overrides these functions on a connection with versions whose work is
linear for text (Python's ``str.find``, ``str.replace``, ``str.strip``), and hands every other
case (a blob, a number, ``_`` or ``[`` in a pattern, a NUL, an ``ESCAPE``) to SQLite's own
function on a private in-memory connection, after checking that its work estimate stays
under :data:`MAX_STEP_WORK`; beyond it the call fails with ``SQLITE_TOOBIG`` (the writer's
``ResourceLimit``, the reader's ``too_large``), the same answer every time.
``tests/unit/test_singlestep.py`` checks every override against SQLite's built-in on random
operands, results and errors alike.

DO install the overrides on every connection caller SQL runs on (the writer's, the reader's).
DON'T widen a native fast path without the differential test: SQLite's LIKE folds ASCII only,
ignores text after a NUL in a pattern, and formats numbers its own way.
The one difference: where SQLite's function would return text that is not valid UTF-8 (a
blob read as text), the override fails with ``SQLError``; such text could not be read back
anyway.

DON'T leave them out of views and triggers: they are registered ``SQLITE_INNOCUOUS``, so
``trusted_schema=OFF`` still lets schema objects call them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import apsw

#: Estimated character (or byte) comparisons SQLite's own function may make in one call:
#: about 40 ms at the slowest rate measured (LIKE, 0.75 ns per comparison).
MAX_STEP_WORK = 50_000_000
#: memcmp-based work (``instr``, ``replace`` on blobs and numbers) runs about 40 times
#: faster per byte than a LIKE comparison.
MEMCMP_SPEEDUP = 40
#: A trim set with more distinct characters than this goes to SQLite's trim (bounded).
_NATIVE_TRIM_CHARS = 256
_ASCII_FOLD = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

_local = threading.local()


def install(conn: apsw.Connection) -> None:
    """Override ``like``, ``glob``, ``instr``, ``replace`` and the two-argument trims."""
    pattern_limit = int(conn.limit(apsw.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, -1))
    length_limit = int(conn.limit(apsw.SQLITE_LIMIT_LENGTH, -1))
    functions: list[tuple[str, int, Callable[..., Any]]] = [
        ("like", 2, _wildcard("like", pattern_limit, _fold)),
        ("like", 3, _like_escape),
        ("glob", 2, _wildcard("glob", pattern_limit, str)),
        ("instr", 2, _instr),
        ("replace", 3, _replace(length_limit)),
        ("trim", 2, _trim("trim", str.strip)),
        ("ltrim", 2, _trim("ltrim", str.lstrip)),
        ("rtrim", 2, _trim("rtrim", str.rstrip)),
    ]
    for name, nargs, function in functions:
        conn.create_scalar_function(
            name, function, nargs, deterministic=True, flags=apsw.SQLITE_INNOCUOUS
        )


# -- SQLite's own functions, on a private connection, within the work bound ------------------
def _builtin(name: str, args: tuple[Any, ...], work: int, limit: int = MAX_STEP_WORK) -> Any:
    """``name(*args)`` computed by SQLite itself, if its estimated ``work`` fits ``limit``."""
    if work > limit:
        raise apsw.TooBigError(
            f"{name}() on operands this long would run past any deadline in one step "
            f"(about {work:,} comparisons, more than {limit:,})"
        )
    conn: apsw.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = apsw.Connection(":memory:")
    marks = ", ".join("?" * len(args))
    try:
        rows = conn.execute(f"SELECT {name}({marks})", args).fetchall()
    except UnicodeDecodeError:
        # A blob read as text that is not UTF-8: the result cannot cross back as text.
        raise apsw.SQLError(f"{name}() produced text that is not valid UTF-8") from None
    return rows[0][0]


def _size(value: object) -> int:
    """Bytes SQLite would scan for ``value``: UTF-8 of text is at most 4 bytes a character."""
    if isinstance(value, str):
        return len(value) if value.isascii() else 4 * len(value)
    if isinstance(value, bytes):
        return len(value)
    return 0 if value is None else 32


def _utf8_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


# -- LIKE and GLOB ----------------------------------------------------------------------------
def _check_pattern(pattern: object, limit: int) -> None:
    """SQLite's own check, made first as it makes it (the private connection's limit is the
    default, not this connection's)."""
    if isinstance(pattern, bytes):
        size = len(pattern)
    elif isinstance(pattern, str) and len(pattern) > limit // 4:
        size = _utf8_bytes(pattern)
    else:
        return
    if size > limit:
        raise apsw.SQLError("LIKE or GLOB pattern too complex")


Matcher = Callable[[str], bool]
#: Compiled patterns kept per process (a query's pattern is the same for every row).
_MATCHERS: dict[tuple[str, str], Matcher | None] = {}
_MATCHERS_MAX = 512


def _segments_matcher(pattern: str, wildcard: str) -> Matcher:
    """A matcher for ``pattern`` whose only wildcard is ``wildcard`` (any run of characters).

    Leftmost placement of each middle segment is optimal, so one left-to-right pass of
    ``str.find`` decides: linear in the value, not value times pattern.
    """
    segments = pattern.split(wildcard)
    if len(segments) == 1:
        return pattern.__eq__
    first, last = segments[0], segments[-1]
    middle = [segment for segment in segments[1:-1] if segment]
    if not middle:
        if not first:
            return lambda value: value.endswith(last)
        if not last:
            return lambda value: value.startswith(first)
        fixed = len(first) + len(last)
        return lambda value: (
            len(value) >= fixed and value.startswith(first) and value.endswith(last)
        )
    if not first and not last and len(middle) == 1:
        (only,) = middle
        return lambda value: only in value

    def match(value: str) -> bool:
        if not value.startswith(first):
            return False
        at = len(first)
        for segment in middle:
            found = value.find(segment, at)
            if found < 0:
                return False
            at = found + len(segment)
        return len(value) - len(last) >= at and value.endswith(last)

    return match


def _compiled(kind: str, pattern: str) -> Matcher | None:
    """The linear matcher of a LIKE or GLOB pattern, or None when SQLite must decide."""
    key = (kind, pattern)
    if key in _MATCHERS:
        return _MATCHERS[key]
    matcher: Matcher | None = None
    if kind == "like" and "_" not in pattern and "\x00" not in pattern:
        matcher = _segments_matcher(_fold(pattern), "%")
    elif kind == "glob" and not any(c in pattern for c in "?[\x00"):
        matcher = _segments_matcher(pattern, "*")
    if len(_MATCHERS) >= _MATCHERS_MAX:
        _MATCHERS.clear()
    _MATCHERS[key] = matcher
    return matcher


def _fold(text: str) -> str:
    """ASCII-only case folding, as SQLite's LIKE does without ICU."""
    return text.lower() if text.isascii() else text.translate(_ASCII_FOLD)


def _wildcard(
    name: str, pattern_limit: int, fold: Callable[[str], str]
) -> Callable[[Any, Any], Any]:
    """``like(pattern, value)`` or ``glob(pattern, value)``: linear when it can be."""

    def match(pattern: Any, value: Any) -> Any:
        if type(pattern) is str and type(value) is str:
            if len(pattern) > pattern_limit // 4:
                _check_pattern(pattern, pattern_limit)
            matcher = _compiled(name, pattern)
            if matcher is not None and "\x00" not in value:
                return 1 if matcher(fold(value)) else 0
        else:
            _check_pattern(pattern, pattern_limit)
        return _builtin(name, (pattern, value), _size(pattern) * _size(value))

    return match


def _like_escape(pattern: Any, value: Any, escape: Any) -> Any:
    return _builtin("like", (pattern, value, escape), _size(pattern) * _size(value))


# -- instr, replace, trim ---------------------------------------------------------------------
def _memcmp_work(haystack: object, needle: object) -> int:
    positions = max(_size(haystack) - _size(needle) + 1, 1)
    return positions * max(_size(needle), 1) // MEMCMP_SPEEDUP


def _instr(haystack: Any, needle: Any) -> Any:
    if haystack is None or needle is None:
        return None
    if isinstance(haystack, str) and isinstance(needle, str):
        return haystack.find(needle) + 1
    if isinstance(haystack, bytes) and isinstance(needle, bytes):
        return haystack.find(needle) + 1
    return _builtin("instr", (haystack, needle), _memcmp_work(haystack, needle))


def _replace(length_limit: int) -> Callable[[Any, Any, Any], Any]:
    def replace(text: Any, old: Any, new: Any) -> Any:
        if (
            isinstance(text, str)
            and isinstance(old, str)
            and isinstance(new, str)
            and "\x00" not in old
        ):
            if old == "":
                return text
            # Bound the result before building it, as SQLite does while it grows.
            count = text.count(old)
            if 4 * (len(text) + count * len(new)) > length_limit:
                size = _utf8_bytes(text) + count * (_utf8_bytes(new) - _utf8_bytes(old))
                if size > length_limit:
                    raise apsw.TooBigError("string or blob too big")
            return text.replace(old, new)
        return _builtin("replace", (text, old, new), _memcmp_work(text, old))

    return replace


_TRIM_SETS: dict[str, str | None] = {}


def _trim_set(chars: str) -> str | None:
    """``chars`` without repeats (what ``str.strip`` scans per character), if short enough."""
    found = _TRIM_SETS.get(chars, "")
    if found == "":
        distinct = "".join(dict.fromkeys(chars))
        found = distinct if len(distinct) <= _NATIVE_TRIM_CHARS and "\x00" not in chars else None
        if len(_TRIM_SETS) >= _MATCHERS_MAX:
            _TRIM_SETS.clear()
        _TRIM_SETS[chars] = found
    return found


def _trim(name: str, strip: Callable[[str, str], str]) -> Callable[[Any, Any], Any]:
    def trim(text: Any, chars: Any) -> Any:
        if type(text) is str and type(chars) is str:
            if chars == "":
                return text
            distinct = _trim_set(chars)
            if distinct is not None:
                return strip(text, distinct)
        return _builtin(name, (text, chars), _size(text) * _size(chars))

    return trim
