"""One process at a time: `exclusive(path)` holds the inter-process lock beside `path` and tells a second process who
holds it while it waits. The operating system releases the lock when its holder dies, so a killed trainer never wedges
the next one."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_SUFFIX = ".lock"
OWNER_SUFFIX = ".lock.owner"


@contextlib.contextmanager
def exclusive(
    path: str | os.PathLike[str], holder: str = "", log: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the inter-process lock of `path` (`<path>.lock`, the `filelock` package; the operating system releases it
    when the holding process dies). While another process holds it, log who (`holder`, its pid and host, from
    `<path>.lock.owner`) and wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + LOCK_SUFFIX)
    owner = Path(str(path) + OWNER_SUFFIX)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            held_by = owner.read_text().strip()
        except OSError:
            held_by = "another process"
        if log:
            log(f"waiting for {path}: {held_by} holds it")
        lock.acquire()
    try:
        owner.write_text(
            f"{holder or 'a process'} (pid {os.getpid()} on {socket.gethostname()}, since {time.ctime()})\n"
        )
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
