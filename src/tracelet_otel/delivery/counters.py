"""Per-backend delivery counters, readable from the run handle and reported at stop."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import Observation

from tracelet_otel.reports import DropReason

if TYPE_CHECKING:
    from tracelet_otel.delivery.spool import DeliverySpool

__all__ = ["COUNTERS_KEY", "SPOOL_FULL_KEY", "DeliveryCounters", "delivery_observations", "spool_counters"]


@dataclass
class DeliveryCounters:
    delivered: int = 0
    retried: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> records
    last_error: str | None = None  # the backend's last failure, as `tracelet-otel status` shows it
    last_error_at: float | None = None  # its wall time
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def drop(self, reason: str, amount: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += amount

    def failed(self, error: str) -> None:
        with self._lock:
            self.last_error, self.last_error_at = error, time.time()

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {"delivered": self.delivered, "retried": self.retried, "dropped": dict(self.dropped),
                    "last_error": self.last_error, "last_error_at": self.last_error_at}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any] | None) -> DeliveryCounters:
        body = body or {}
        return cls(delivered=int(body.get("delivered", 0)), retried=int(body.get("retried", 0)),
                   dropped=Counter(body.get("dropped", {})), last_error=body.get("last_error"),
                   last_error_at=body.get("last_error_at"))


COUNTERS_KEY = "counters"  # spool meta, written by the sender in the delivery worker
SPOOL_FULL_KEY = "dropped_spool_full"  # spool meta, written by the exporter (a process of its own)


def spool_counters(spool: DeliverySpool) -> DeliveryCounters:
    """Everything counted for one spool, by whichever process counted it."""
    counters = DeliveryCounters.from_dict(spool.get_meta(COUNTERS_KEY))
    full = spool.get_meta(SPOOL_FULL_KEY)
    if full:
        counters.drop(DropReason.SPOOL_FULL, full)
    return counters


def delivery_observations(backend: str, spool: DeliverySpool) -> Iterator[Observation]:
    """The ``tracelet.delivery.records`` counter for one backend, read from its spool (cumulative)."""
    counters = spool_counters(spool)
    yield Observation(spool.total(), {"backend": backend, "outcome": "spooled"})
    yield Observation(counters.delivered, {"backend": backend, "outcome": "delivered"})
    yield Observation(counters.retried, {"backend": backend, "outcome": "retried"})
    for reason, count in counters.dropped.items():
        yield Observation(count, {"backend": backend, "outcome": "dropped", "reason": reason})
