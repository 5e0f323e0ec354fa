"""Throw-away PostgreSQL and Redis servers on 127.0.0.1, for the tests, the benchmarks, and trying the multi-process
set-ups of deploy/ on one machine. Each server lives in its own temporary directory, listens on 127.0.0.1 only, and
is stopped by its own pid. They come from Debian's packages (`apt-get install postgresql redis-server`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The server's program is not installed or did not start; the message says which and how to install it."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    tail = log.read_text()[-2000:] if log.is_file() else ""
    raise ServerUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s; log {log}:\n{tail}")


def _stop(pid: int, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> None:
    """Signal the server by its pid and wait until that process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class PostgresServer:
    """A running PostgreSQL server of `postgres_server`; `restart` stops it by its pid and starts it again on the same
    port and data (what a database restart looks like to its clients)."""

    port: int
    directory: Path
    command: list[str]
    pid: int = 0

    @property
    def url(self) -> str:
        """A SQLAlchemy URL for the `postgres` database (psycopg2 driver, as deploy/dagster.postgres.yaml asks)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = self.directory / "server.log"
        with open(log, "ab") as log_file:
            subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, "PostgreSQL", log)
        self.pid = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])  # its own (runuser forks)

    def stop(self) -> None:
        _stop(self.pid)  # SIGINT: PostgreSQL's fast shutdown (clients are disconnected)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


def _postgres_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or (
        [shutil.which(name)] if shutil.which(name) else []
    )
    if not found:
        raise ServerUnavailable(f"PostgreSQL's {name} not found: apt-get update && apt-get install -y postgresql")
    return found[-1]


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster (trust authentication, user `postgres`) on a free 127.0.0.1 port; stopped on exit.
    As root, initdb and the server run as the `postgres` user, which Debian's PostgreSQL requires."""
    initdb, postgres = _postgres_binary("initdb"), _postgres_binary("postgres")
    directory = Path(tempfile.mkdtemp(prefix="gan-pipeline-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    port = free_port()
    command = [*as_user, postgres, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1"]
    command += ["-c", f"unix_socket_directories={directory}", "-c", "fsync=off"]
    server = PostgresServer(port, directory, command)
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        server.start()
        yield server
    finally:
        if server.pid:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class RedisServer:
    """A running Redis server of `redis_server` (no persistence: a restart loses every queue and result, as a
    broker that is replaced does); `restart` stops it by its pid and starts it again on the same port."""

    port: int
    directory: Path
    command: list[str]
    pid: int = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = self.directory / "server.log"
        with open(log, "ab") as log_file:
            process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, "Redis", log)
        self.pid = process.pid

    def stop(self) -> None:
        _stop(self.pid, signal.SIGTERM)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A Redis server on a free 127.0.0.1 port without persistence, in a temporary directory; stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable("redis-server not found: apt-get update && apt-get install -y redis-server")
    directory = Path(tempfile.mkdtemp(prefix="gan-pipeline-redis-"))
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    command += ["--dir", str(directory), "--protected-mode", "yes"]
    server = RedisServer(port, directory, command)
    try:
        server.start()
        yield server
    finally:
        if server.pid:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
