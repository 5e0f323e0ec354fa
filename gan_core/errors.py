"""Walking an exception's chain: the error, then what it was raised from or while handling, and so on."""

from __future__ import annotations

from collections.abc import Iterator


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then its cause (`raise ... from`) or, unless suppressed (`from None`), the exception it was raised
    while handling, and so on; each exception once, so a chain that loops back on itself ends."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
