"""The registries (datasets, models, losses): built from their entries, and an entry looked up by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol, TypeVar


class Named(Protocol):
    name: str


Entry = TypeVar("Entry")
NamedEntry = TypeVar("NamedEntry", bound=Named)


def by_name(*entries: NamedEntry) -> Mapping[str, NamedEntry]:
    """A read-only registry of `entries` under their own names (each name written once, in its entry)."""
    registry = {entry.name: entry for entry in entries}
    if len(registry) != len(entries):
        raise ValueError(f"registry entries share a name: {[entry.name for entry in entries]}")
    return MappingProxyType(registry)


def lookup(registry: Mapping[str, Entry], name: str, what: str, error: type[Exception] = ValueError) -> Entry:
    """`registry[name]`; an unknown name raises `error` naming the known ones ("unknown <what> 'x'; known ...")."""
    try:
        return registry[name]
    except KeyError:
        raise error(f"unknown {what} {name!r}; known {what}s: {sorted(registry)}") from None
