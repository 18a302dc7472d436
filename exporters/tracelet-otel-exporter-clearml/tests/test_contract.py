"""ClearML keeps the delivery contract every backend keeps (``tracelet_otel.testing``), read back from its
offline sessions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tracelet_otel.backends import BackendRunHandle
from tracelet_otel.testing import BackendContract, StoredRun
from tracelet_otel_clearml._run import STATUS
from tracelet_otel_clearml.testing import read_session


def tag(title: str, series: str) -> str:
    """The tag ClearML's title and series came from (``title_series``): the contract's tags all have a ``/``."""
    return f"{title}/{series}"


class TestClearmlContract(BackendContract):
    backend = "clearml"

    @pytest.fixture(autouse=True)
    def offline(self, clearml_cache) -> None:
        """Every run of the contract is an offline session under the test's own cache."""

    def stored(self, run: BackendRunHandle) -> StoredRun:
        folder = Path(run.reference["offline_folder"])
        if not folder.is_dir():
            return StoredRun(exists=False)
        session = read_session(folder)
        scalars = Counter({(tag(title, series), iteration, value): count
                           for (title, series, iteration, value), count in session.scalars.items()})
        payloads = Counter((tag(sample.title, sample.series), sample.iteration) for sample in session.samples)
        return StoredRun(exists=True, scalars=scalars, payloads=payloads,
                         status=session.bookkeeping.get(STATUS))
