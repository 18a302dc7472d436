"""Shared delivery: spool, sender and the tracker span exporter. Backends only translate and call."""

from tracelet_otel.delivery.counters import DeliveryCounters
from tracelet_otel.delivery.exporter import TrackerSpanExporter
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import Delivery

__all__ = ["Delivery", "DeliveryCounters", "Spool", "TrackerSpanExporter"]
