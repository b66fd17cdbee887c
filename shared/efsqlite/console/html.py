"""HTML that escapes by default: every value is text unless it is already :class:`Html`.

Pages are built from :func:`tag` calls. A child or an attribute value that is not
:class:`Html` is escaped (``html.escape`` with quotes), so a cell holding ``<script>`` shows
as the text ``<script>``. Only this module makes :class:`Html` out of text, from constants.

DO build markup with :func:`tag` and :func:`join`; DON'T format values into an ``Html`` string
(``Html(f"<b>{x}</b>")`` is the one way to let markup through, so it is never done with data).
DON'T put a value in a URL by hand: :func:`href` encodes the query string.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

#: Elements with no end tag.
_VOID = frozenset({"br", "hr", "input", "meta", "link", "img"})


class Html(str):
    """Markup that is safe to send as it is (built by this module from constants and escapes)."""

    __slots__ = ()


def escape(value: object) -> Html:
    """``value`` as HTML text: markup characters and both quotes escaped; ``None`` is empty."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(children: Iterable[object]) -> Html:
    """Children (values or ``Html``, nested iterables too) as one piece of markup."""
    parts: list[str] = []
    for child in children:
        if isinstance(child, str | int | float) or child is None:
            parts.append(escape(child))
        elif isinstance(child, Iterable):
            parts.append(join(child))
        else:
            parts.append(escape(child))
    return Html("".join(parts))


def tag(element: str, /, *children: object, **attributes: object) -> Html:
    """``<name attr="value">children</name>``. An attribute named with a trailing ``_``
    (``class_``) loses it and ``_`` inside becomes ``-`` (``data_id``); ``True`` writes the
    attribute bare, ``False`` and ``None`` leave it out."""
    attrs: list[str] = []
    for key, value in attributes.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        attrs.append(f" {attr}" if value is True else f' {attr}="{escape(value)}"')
    opening = f"<{element}{''.join(attrs)}>"
    if element in _VOID:
        return Html(opening)
    return Html(f"{opening}{join(children)}</{element}>")


def href(path: str, params: Mapping[str, object] | None = None) -> str:
    """A link to one of the console's own paths with its query string encoded (``None`` and
    empty values left out). The result is text: :func:`tag` escapes it in the attribute."""
    kept = {k: str(v) for k, v in (params or {}).items() if v is not None and str(v) != ""}
    return f"{path}?{urlencode(kept)}" if kept else path


def raw(markup: str) -> Html:
    """Constant markup from the console's own source (a style sheet): never a value."""
    return Html(markup)
