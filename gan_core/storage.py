"""Atomic file output and content hashing.

Every file this project writes goes to a temporary name beside its final path and is renamed into place only when it
is complete, so a failed or killed run never leaves a half-written file and never damages the previous good one. The
file is flushed to disk (fsync) before the rename and its directory after it, so a power loss cannot leave a
zero-length "complete" file either. A temporary name carries its writer's host and pid: a writer killed outright
(SIGKILL, out of memory) leaves its temporary behind, and the next write of the same file removes it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gan_core.errors import error_chain


def _default_mode() -> int:
    """The permission bits a plain `open(path, "w")` would give (0o666 less the umask); mkstemp's are 0o600."""
    try:  # Linux reports the umask without changing it (os.umask can only read it by setting it)
        with open("/proc/self/status") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration):
        umask = 0o022
    return 0o666 & ~umask


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a directory's contents to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """`os.replace` after flushing `source`, then flush the directory so the rename itself survives a power loss."""
    fsync_path(source)
    os.replace(source, target)
    fsync_path(Path(target).parent)


TEMPORARY_SUFFIX = ".tmp"


def _writer_host() -> str:
    """This host as it appears in temporary names: its name reduced to letters, digits and '-', then a digest of its
    full name and of this process's pid namespace (two containers of one name sharing a volume, or two names reduced
    alike, are two hosts)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    name = socket.gethostname()
    digest = hashlib.sha256(f"{name}/{namespace}".encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9-]', '-', name)[:48]}-{digest}"


def _temporary_prefix(final_path: Path) -> str:
    """The start of every temporary name of `final_path`: `.<name>.<host>~<pid>.` (then mkstemp's letters, `.tmp`)."""
    return f".{final_path.name}.{_writer_host()}~{os.getpid()}."


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal is sent, only the process looked up
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process, or no pid: left alone
        return True
    return True


def remove_abandoned_temporaries(final_path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders of `final_path` whose writer was a process of this host that no longer
    exists (killed before its cleanup ran), and return them. A live writer's, or another host's, are left alone."""
    final_path = Path(final_path)
    pattern = re.compile(
        rf"\.{re.escape(final_path.name)}\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)\.[^.]+{re.escape(TEMPORARY_SUFFIX)}"
    )
    this_host = _writer_host()
    removed = []
    for candidate in final_path.parent.glob(f".{glob.escape(final_path.name)}.*{TEMPORARY_SUFFIX}"):
        match = pattern.fullmatch(candidate.name)
        if match is None or match["host"] != this_host or _process_exists(int(match["pid"])):
            continue
        if candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


class DiskFullError(OSError):
    """A write found no space left (errno ENOSPC): its one-line message names the file, the bytes it needs and the
    bytes free."""

    def __str__(self) -> str:
        return str(self.strerror)


# torch.save reports a short write as "unexpected pos ... vs ..." with no errno: with less than this many bytes free
# that error is taken for a full disk
NEARLY_FULL_BYTES = 1 << 20
SHORT_WRITE = "unexpected pos"


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _no_space(path: Path, needed: str, free: int) -> DiskFullError:
    return DiskFullError(
        errno.ENOSPC,
        f"no space left for {path}: it needs {needed} bytes and {free:,} bytes are free there; free some space and "
        "run again (earlier results and the previous version of this file are intact)",
    )


def ensure_space(path: str | os.PathLike[str], needed: int) -> None:
    """Raise DiskFullError before writing `needed` bytes to `path` where they do not fit."""
    if (free := free_bytes(Path(path).parent)) < needed:
        raise _no_space(Path(path), f"{needed:,}", free)


def _is_out_of_space(error: BaseException) -> bool:
    """Whether `error` or one of its causes is a write that found the disk full (ENOSPC or EDQUOT; h5py puts the
    errno in its message)."""
    for seen in error_chain(error):
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(seen) or "errno = 28" in str(seen):
            return True
    return False


@contextlib.contextmanager
def atomic_output(
    final_path: str | os.PathLike[str],
    keep_previous: str | os.PathLike[str] | None = None,
    size: int | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; flush it and rename it into place only if the block succeeds.
    With `keep_previous`, the file being replaced is kept under that name (the last good version). With `size` (the
    bytes to be written, where known), a disk without that much space is refused before anything is written; a write
    that runs out of space raises DiskFullError, the temporary file removed and everything else untouched."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(final_path)  # first: a killed writer's leftover may be what fills the disk
    if size is not None:
        ensure_space(final_path, size)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_temporary_prefix(final_path), suffix=TEMPORARY_SUFFIX, dir=final_path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode())  # readable like any other file (a report is served or mailed)
        fsync_path(tmp_path)  # on the disk before the file it replaces moves aside (a full disk shows up here)
        if keep_previous is not None and final_path.exists():
            os.replace(final_path, keep_previous)
        os.replace(tmp_path, final_path)
        fsync_path(final_path.parent)  # the renames themselves survive a power loss
    except Exception as error:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        short_write = SHORT_WRITE in str(error)
        nearly_full = short_write and free_bytes(final_path.parent) < NEARLY_FULL_BYTES
        full = _is_out_of_space(error) or nearly_full
        if not isinstance(error, DiskFullError) and full:
            tmp_path.unlink(missing_ok=True)
            needed = f"{size:,}" if size is not None else f"more than {written:,}"
            raise _no_space(final_path, needed, free_bytes(final_path.parent)) from error
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory; swap it in for `final_dir` only if the block succeeds."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(final_dir)
    tmp_dir = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final_dir), suffix=TEMPORARY_SUFFIX, dir=final_dir.parent))
    try:
        yield tmp_dir
        for written in [*tmp_dir.rglob("*"), tmp_dir]:
            fsync_path(written)
        if final_dir.exists():
            old_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".old", dir=final_dir.parent))
            os.replace(final_dir, old_dir / "previous")
            durable_replace(tmp_dir, final_dir)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            durable_replace(tmp_dir, final_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON via a temporary file."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def hash_json(payload: Any, length: int = 16) -> str:
    """Short stable hash of a JSON-serialisable value (sorted keys), used to key stored results by config."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
