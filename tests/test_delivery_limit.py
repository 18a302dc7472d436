"""The delivery process's concurrency limit: how many batches are in flight towards one tracker, and whose turn
comes first. The clock is a fake one here, so that a batch's latency is what the test says."""

from __future__ import annotations

import threading
import time

import pytest

from tracelet_otel.delivery import limit as limit_module
from tracelet_otel.delivery.limit import ConcurrencyLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(limit_module.time, "monotonic", fake)
    return fake


def send(limit: ConcurrencyLimit, clock: FakeClock, latency: float, *, failed: bool = False) -> None:
    with limit.permit(oldest=0.0) as permit:
        permit.judged = True
        clock.now += latency
        if failed:
            permit.failed()


def test_the_limit_grows_while_batches_stay_as_fast_as_the_fastest(clock):
    limit = ConcurrencyLimit(initial=4)
    for _ in range(100):
        send(limit, clock, 0.1)
    assert limit.limit > 10


def test_the_limit_is_cut_once_the_tracker_queues_batches(clock):
    limit = ConcurrencyLimit(initial=16)
    for _ in range(20):
        send(limit, clock, 0.1)
    grown = limit.limit
    for _ in range(60):  # a few rounds of batches
        send(limit, clock, 1.0)
    assert limit.limit < grown / 2


def test_a_failed_batch_halves_the_limit_and_it_never_falls_below_one(clock):
    limit = ConcurrencyLimit(initial=8)
    send(limit, clock, 0.1, failed=True)
    assert limit.limit == 4
    for _ in range(10):
        send(limit, clock, 0.1, failed=True)
    assert limit.limit == 1


def test_small_batches_do_not_judge_the_latency(clock):
    limit = ConcurrencyLimit(initial=4)
    send(limit, clock, 0.01)
    for _ in range(50):
        with limit.permit(oldest=0.0):
            clock.now += 10.0
    assert limit.limit == 4


def test_no_more_batches_are_in_flight_than_the_limit_and_waiting_ones_go_oldest_first_across_runs():
    limit = ConcurrencyLimit(initial=1)
    release = threading.Event()
    order: list[float] = []
    most_in_flight = 0

    def batch(oldest: float) -> None:
        nonlocal most_in_flight
        with limit.permit(oldest):
            most_in_flight = max(most_in_flight, limit.in_flight)
            order.append(oldest)
            release.wait()

    holders = [threading.Thread(target=batch, args=(float(oldest),)) for oldest in (100,)]
    for thread in holders:
        thread.start()
    while limit.in_flight < 1:
        time.sleep(0.01)
    waiters = []
    for oldest in (50, 10, 30, 20, 40):  # logged earlier than the two in flight, and out of order
        waiters.append(threading.Thread(target=batch, args=(float(oldest),)))
        waiters[-1].start()
    while len(limit._waiting) < 5:
        time.sleep(0.01)
    release.set()
    for thread in holders + waiters:
        thread.join(10)
    assert most_in_flight == 1
    assert order == [100, 10, 20, 30, 40, 50]
