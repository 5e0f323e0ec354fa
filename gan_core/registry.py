"""Looking an entry up in one of the registries (datasets, models, losses) by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Entry = TypeVar("Entry")


def lookup(registry: Mapping[str, Entry], name: str, what: str, error: type[Exception] = ValueError) -> Entry:
    """`registry[name]`; an unknown name raises `error` naming the known ones ("unknown <what> 'x'; known ...")."""
    try:
        return registry[name]
    except KeyError:
        raise error(f"unknown {what} {name!r}; known {what}s: {sorted(registry)}") from None
