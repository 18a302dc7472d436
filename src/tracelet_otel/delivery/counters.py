"""Per-backend delivery counters, readable from the run handle and reported at stop."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["DeliveryCounters"]


@dataclass
class DeliveryCounters:
    delivered: int = 0
    retried: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> records
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def drop(self, reason: str, amount: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += amount

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {"delivered": self.delivered, "retried": self.retried, "dropped": dict(self.dropped)}

    @classmethod
    def from_dict(cls, body: dict[str, object] | None) -> DeliveryCounters:
        body = body or {}
        return cls(delivered=int(body.get("delivered", 0)), retried=int(body.get("retried", 0)),  # type: ignore[arg-type]
                   dropped=Counter(body.get("dropped", {})))  # type: ignore[arg-type]
