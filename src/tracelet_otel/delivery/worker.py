"""The delivery worker: a process that owns one backend run and drains one spool into it.

Each tracker exporter starts one (``python -m tracelet_otel.delivery SPOOL``), so delivery has a core of its
own, the process that spools never imports the backend's SDK, and delivery outlives a crash of that process.
Everything the worker needs is in the spool's meta: the backend, its options, and the run to resume (none
yet: it creates one and records it there, so replay resumes the same run).

It reports ``{"ready": {"run": ..., "url": ...}}`` (or ``{"error": ...}``) as one JSON line on its protocol
pipe (see :mod:`tracelet_otel._child`), then takes control lines on stdin:

* ``wake``: records were appended;
* ``finish STATUS TIMEOUT``: nothing more will come; deliver for up to TIMEOUT seconds, end the backend run
  with STATUS if everything was delivered, and exit. What is left stays in the spool for replay. The status
  ``DISCARD`` undoes the run instead (``BackendRun.discard``): ``start_logging`` failed before training began.

End of input without ``finish`` means the spooling process died: the worker still delivers what was spooled
(up to ``ORPHAN_TIMEOUT_S``) and ends the run as ``KILLED``. ``tracelet-otel replay`` runs the same
an agent in the foreground, which starts workers like this one.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tracelet_otel._child import become_helper, try_lock
from tracelet_otel.backends import DISCARD, BackendRun, RunInfo, load_backend
from tracelet_otel.delivery.counters import COUNTERS_KEY, DeliveryCounters
from tracelet_otel.delivery.sender import Sender
from tracelet_otel.delivery.spool import Spool

__all__ = ["DELIVERY_KEY", "FINISHED_KEY", "Delivery", "deliver", "end_run", "main", "open_run"]

_logger = logging.getLogger("tracelet_otel.delivery")

DELIVERY_KEY = "delivery"  # spool meta: {"backend", "run", "options", "info"}
FINISHED_KEY = "finished"  # spool meta: the status the backend run was ended with
CREATING_KEY = "creating"  # spool meta: a backend run is being created and not recorded yet
ORPHAN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Delivery:
    """What a spool is delivered to: a backend, its options, and its run (None until created)."""

    backend: str
    run: dict[str, Any] | None
    options: dict[str, Any]
    info: dict[str, Any]

    def save(self, spool: Spool) -> None:
        spool.set_meta(DELIVERY_KEY, {"backend": self.backend, "run": self.run, "options": self.options,
                                      "info": self.info})

    @classmethod
    def load(cls, spool: Spool) -> Delivery:
        return cls(**spool.get_meta(DELIVERY_KEY))


def open_run(spool: Spool) -> BackendRun:
    """Resume the spool's backend run, or create it and record it in the spool."""
    delivery = Delivery.load(spool)
    backend = load_backend(delivery.backend)
    info = RunInfo(**delivery.info)
    if delivery.run is not None:
        return backend.open_run(info, delivery.options, resume=delivery.run)
    backend_run = None
    if spool.get_meta(CREATING_KEY):  # a crash came between creating the run and recording it here, maybe
        backend_run = backend.find_run(info, delivery.options)
    if backend_run is None:
        spool.set_meta(CREATING_KEY, True)
        backend_run = backend.open_run(info, delivery.options)
    replace(delivery, run=backend_run.reference).save(spool)
    return backend_run


def deliver(spool: Spool, backend_run: BackendRun, wait_for_finish: Callable[[Sender], tuple[str, float]]) -> bool:
    """Deliver the spool; ``wait_for_finish`` returns (status, timeout) once nothing more will be spooled.

    Returns whether everything was delivered and the backend run ended.
    """
    counters = DeliveryCounters.from_dict(spool.get_meta(COUNTERS_KEY))
    sender = Sender(spool, backend_run, counters)
    status, timeout = wait_for_finish(sender)
    if status == DISCARD:
        sender.stop()
        backend_run.discard()
        spool.set_meta(FINISHED_KEY, DISCARD)
        return True
    delivered = sender.drain(timeout)
    sender.stop()
    spool.set_meta(COUNTERS_KEY, counters.as_dict())
    return delivered and end_run(spool, backend_run, status)


def end_run(spool: Spool, backend_run: BackendRun, status: str) -> bool:
    """End the backend run and record it in the spool; False if the backend could not be reached."""
    try:
        backend_run.finish(status)
    except Exception as error:  # the backend went away at the last moment: replay ends the run
        _logger.warning("tracelet-otel: could not end the %s run: %s", backend_run.backend, error)
        return False
    spool.set_meta(FINISHED_KEY, status)
    return True


def _follow_control(sender: Sender) -> tuple[str, float]:
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["wake"]:
            sender.wake()
        elif words[:1] == ["finish"]:
            return words[1], float(words[2])
    return "KILLED", ORPHAN_TIMEOUT_S


def main(argv: list[str] | None = None) -> int:
    protocol = become_helper()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the sender reports outages once, itself
    path = (argv or sys.argv[1:])[0]
    lock = try_lock(path + ".lock")  # replay and an orphaned worker must never deliver one spool twice over
    if lock is None:
        protocol.write(json.dumps({"error": f"{path} is being delivered by another process"}) + "\n")
        return 2
    spool = Spool(path)
    try:
        try:
            backend_run = open_run(spool)
        except Exception as error:
            protocol.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
            return 2
        protocol.write(json.dumps({"ready": {"run": backend_run.reference, "url": backend_run.url}}) + "\n")
        return 0 if deliver(spool, backend_run, _follow_control) else 3
    finally:
        spool.close()
        lock.close()
