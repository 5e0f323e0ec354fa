"""Stored JSON records and the one compute-or-load helper: a result is keyed by a content hash of everything it
depends on, never "the latest file"; `compute_or_load` returns the record stored under the same key, or computes,
stores (atomically) and returns a new one, one process at a time (gan_core.locks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gan_core.locks import exclusive
from gan_core.storage import hash_json, write_json_atomic


def read_record(path: Path, what: str) -> dict[str, Any]:
    """A stored JSON record; a missing file names the asset (`what`) that writes it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: materialise {what} first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): materialise {what} again") from error


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Store a JSON record atomically."""
    write_json_atomic(path, record)


def compute_or_load(
    path: Path | Callable[[str], Path],
    key_parts: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
    log: Callable[[str], None] | None = None,
    holder: str = "",
) -> tuple[dict[str, Any], bool]:
    """The record at `path` if it was stored under the same key (the hash of `key_parts`) and every file it lists
    under "files" still exists; else `compute()`, stored there atomically with its key. Returns (record, cached).
    `path` may be a function of the key, for records whose file name carries it.

    `key_parts` holds everything the record depends on: input content hashes, settings and the code version. An
    unreadable record (named in the log), or one stored under another key, is recomputed and replaced. One process
    computes a record at a time (`exclusive`): a second one asking for the same record waits, logging the holder,
    then finds it stored and returns it as cached.
    """
    key = hash_json(key_parts)
    path = path(key) if callable(path) else path
    stored = _stored_record(path, key, log)
    if stored is not None:
        return stored, True
    with exclusive(path, holder, log):
        stored = _stored_record(path, key, log)
        if stored is not None:
            return stored, True
        record = {"key": key, **compute()}
        write_json_atomic(path, record)
    return record, False


def _stored_record(path: Path, key: str, log: Callable[[str], None] | None) -> dict[str, Any] | None:
    """The record at `path` if it holds `key` and every file it owns exists."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        if log:
            log(f"stored record {path} is unreadable ({error}); computing it again")
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    missing = [file for file in stored.get("files", []) if not Path(file).is_file()]
    if missing and log:
        log(f"stored record {path} lists missing file(s) {missing}; computing it again")
    return None if missing else stored
