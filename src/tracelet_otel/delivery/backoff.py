"""How long to wait before trying again, for everything that delivery retries: a batch, opening a run, a lock."""

from __future__ import annotations

__all__ = ["FIRST_BACKOFF_S", "MAX_BACKOFF_S", "Backoff"]

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class Backoff:
    """Exponential backoff: 0.5 s after the first failure, doubling to at most 30 s, until :meth:`reset`."""

    def __init__(self) -> None:
        self.delay = 0.0

    @property
    def backing_off(self) -> bool:
        """Whether the last attempt failed."""
        return self.delay > 0

    def next(self) -> float:
        """The wait after one more failure."""
        self.delay = min(MAX_BACKOFF_S, self.delay * 2 or FIRST_BACKOFF_S)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0
