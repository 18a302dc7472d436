"""How many batches one delivery process has in flight towards its tracker: bounded, adaptive, oldest first.

The bridge delivers hundreds of runs from one process, a sender per run. Let loose, they would all call the
tracker at once, and a tracker pushed past its capacity answers late, times out, and every run backs off
while the backlog grows. So each batch waits for a permit first. How many permits there are adapts to the
tracker, as TCP Vegas and Netflix's concurrency-limits do: while a batch takes about as long as the fastest
seen lately the limit grows by one per round of batches; once batches take much longer (the tracker queues
them) it is cut a fifth per round; a failed batch halves it. Permits go out oldest first: the batch whose
records were logged earliest, across runs, so that no run starves behind runs that keep sending.

Only full batches judge the latency: a batch of a few records costs the tracker's fixed overhead, so it would
read as fast or slow for reasons that are not load.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["ConcurrencyLimit", "Permit"]

INITIAL = 8
SMALLEST = 1
LARGEST = 32
GOOD = 2.0  # a batch within this many times the fastest lately: the tracker has room
CONGESTED = 4.0  # a batch past this many times: the tracker is queueing
FORGET = 0.002  # how fast the fastest latency seen drifts up, per batch: trackers slow down as they fill
SMOOTHING = 0.2


@dataclass
class Permit:
    """One batch's turn; ``failed()`` says the tracker was unavailable (a record it rejects says nothing of its
    load)."""

    judged: bool  # a full batch, as large as the backend takes: its latency says something of the tracker's load
    started: float
    ok: bool = True

    def failed(self) -> None:
        self.ok = False


class ConcurrencyLimit:
    def __init__(self, initial: int = INITIAL) -> None:
        self._lock = threading.Lock()
        self._limit = float(initial)
        self._in_flight = 0
        self._waiting: list[tuple[float, int, threading.Event]] = []
        self._tickets = itertools.count()
        self._fastest: float | None = None
        self._recent: float | None = None

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def permit(self, oldest: float) -> Iterator[Permit]:
        """Wait for a turn to send a batch whose oldest record was logged at ``oldest`` (any clock shared by
        the senders); the holder says whether the batch is full (``Permit.judged``)."""
        self._acquire(oldest)
        permit = Permit(judged=False, started=time.monotonic())
        try:
            yield permit
        finally:
            self._release(permit, time.monotonic() - permit.started)

    def _acquire(self, oldest: float) -> None:
        with self._lock:
            if not self._waiting and self._in_flight < int(self._limit):
                self._in_flight += 1
                return
            turn = threading.Event()
            heapq.heappush(self._waiting, (oldest, next(self._tickets), turn))
        turn.wait()  # _hand_out counted it in flight before setting it

    def _release(self, permit: Permit, latency: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._adapt(permit, latency)
            self._hand_out()

    def _adapt(self, permit: Permit, latency: float) -> None:
        if not permit.ok:
            self._limit = max(SMALLEST, self._limit / 2)
            return
        if not permit.judged:
            return
        self._fastest = latency if self._fastest is None else min(self._fastest * (1 + FORGET), latency)
        self._recent = latency if self._recent is None else self._recent + SMOOTHING * (latency - self._recent)
        ratio = self._recent / max(self._fastest, 1e-6)
        if ratio <= GOOD:
            self._limit = min(LARGEST, self._limit + 1 / self._limit)
        elif ratio >= CONGESTED:
            self._limit = max(SMALLEST, self._limit - 0.2)

    def _hand_out(self) -> None:
        while self._waiting and self._in_flight < int(self._limit):
            _, _, turn = heapq.heappop(self._waiting)
            self._in_flight += 1
            turn.set()
