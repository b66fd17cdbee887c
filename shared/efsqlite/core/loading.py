"""Loading deployer code named in settings, kept free of pydantic for the reader's cold start."""

from __future__ import annotations

import importlib

from efsqlite.core.exceptions import RegistryError


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
