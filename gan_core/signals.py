"""Turning an interrupt into a clean stop. SIGINT (Ctrl-C, or Dagster's termination of a run, which delivers SIGINT to
the run's process) and SIGTERM (a service manager, Kubernetes, `kill`):
- inside `stop_on_signals` only set a flag that the training loop polls after each step, so it can finish the step,
  write a checkpoint and stop (a second signal interrupts at once);
- inside `raise_on_signals` raise `StopRequested` at once, for work that has nothing to save midway (sampling,
  Parzen, metrics): its files are written atomically, so stopping anywhere leaves no half-written file."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):  # noqa: N818 (like KeyboardInterrupt: not an error, not caught as Exception)
    """A termination signal arrived inside `raise_on_signals`. A BaseException, so that no `except Exception` on the
    way up mistakes it for a failure to retry or report."""


@contextlib.contextmanager
def raise_on_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Raise StopRequested in the main thread as soon as one of `signals` arrives; restore the previous handlers on
    exit. Off the main thread (where Python cannot handle signals) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        raise StopRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stop_on_signals(
    signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
) -> Iterator[Callable[[], bool]]:
    """Yield a function telling whether one of `signals` arrived; restore the previous handlers on exit.
    Off the main thread (where Python cannot handle signals) the flag simply never rises."""
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield received.is_set
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if received.is_set():
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        received.set()

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield received.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
