"""Loading deployer code named in settings, kept free of pydantic for the reader's cold start.

Both registries (named queries for the reader, named commands for the writer) are a
:class:`Registry`: name to entry, filled by the deployer's module at import, found by
:func:`load_registry` from a ``package.module:attribute`` setting.

DO keep lookups one dict read: the writer looks a name up per command on the packed hot path.
DON'T import the deployer's module anywhere but :func:`load_object`: one place says why a
setting named the wrong thing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, TypeVar

from efsqlite.core.exceptions import RegistryError

EntryT = TypeVar("EntryT")
RegistryT = TypeVar("RegistryT", bound="Registry[Any]")


def load_object(path: str) -> object:
    """Import ``package.module:attribute`` (the form every registry setting uses)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise RegistryError(f"{path!r} is not of the form 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} for {path!r}: {exc}") from exc
    try:
        found: object = getattr(module, attribute)
    except AttributeError:
        raise RegistryError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return found


class Registry(Generic[EntryT]):
    """Name to entry; a name is registered once."""

    #: What an entry is called in errors ("query", "command").
    kind: ClassVar[str] = "entry"

    def __init__(self) -> None:
        self._entries: dict[str, EntryT] = {}

    def _put(self, name: str, entry: EntryT) -> EntryT:
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> EntryT | None:
        return self._entries.get(name)

    def __iter__(self) -> Iterator[EntryT]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def load_registry(path: str | None, kind: type[RegistryT]) -> RegistryT:
    """The registry of type ``kind`` a setting names, or an empty one when it names none."""
    if path is None:
        return kind()
    registry = load_object(path)
    if not isinstance(registry, kind):
        raise RegistryError(f"{path!r} is a {type(registry).__name__}, not a {kind.__name__}")
    return registry
