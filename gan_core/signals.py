"""Turning an interrupt into a clean stop: inside `stop_on_signals`, SIGINT (Ctrl-C, or Dagster's termination of a
run, which delivers SIGINT to the run's process) and SIGTERM only set a flag that the training loop polls after each
step, so it can finish the step, write a checkpoint and stop. A second signal interrupts at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def stop_on_signals(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
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
