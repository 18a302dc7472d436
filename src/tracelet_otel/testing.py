"""The delivery contract as a test suite that every backend runs: subclass :class:`BackendContract`.

Like opentelemetry-python's shared exporter test cases, one class holds the tests, and each backend's test
module subclasses it once, saying how to run the backend here and how to read back what its tracker stored::

    import pytest
    from tracelet_otel.testing import BackendContract, StoredRun

    class TestMyTrackerContract(BackendContract):
        backend = "mytracker"  # its name in the tracelet_otel_backends entry points

        @pytest.fixture
        def options(self, tmp_path):  # what makes it run here, offline
            return {"mytracker_directory": str(tmp_path)}

        def stored(self, run):  # run: the BackendRunHandle of a run the test opened
            return StoredRun(exists=True, scalars=..., payloads=..., status=...)

``BackendContract`` does not start with ``Test``, so pytest collects its subclasses only. Every test opens real
runs of the backend through the same code the delivery process runs (``open_run``, ``Sender``); nothing is
mocked. It needs pytest. What it holds a backend to (``docs/durability.md``, "The delivery contract"):

* a batch delivered and flushed just before the delivering process was killed (``SIGKILL``, before the spool
  could record it) is stored once after the run is reopened, and the reopened run is the same run;
* a flush that fails makes the sender send the batch again, and nothing is stored twice;
* a record whose payload is gone from its store is dropped alone, counted under ``DropReason.PAYLOAD_MISSING``
  (a backend that forwards payload references without reading them, ``reads_payloads = False``, delivers it);
* ``discard`` leaves no run behind;
* a backend whose SDK holds one run per process (``one_run_per_process``) lets a run go (``close``) for another
  to be opened in the same process, and the run reopened afterwards goes on, everything in it once;
* ``finish`` ends the run ``FINISHED``, ``FAILED`` or ``KILLED``, as the tracker shows it;
* every declared option is parsed by its type from its ``TRACELET_*`` variable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from tracelet_otel._backend import BackendRun, BackendRunHandle, RunInfo, load_backend
from tracelet_otel.config import Options
from tracelet_otel.delivery.sender import Sender
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import Delivery, open_run
from tracelet_otel.environment_variables import OPTION_PREFIX
from tracelet_otel.errors import BackendUnavailable
from tracelet_otel.payloads import ArtifactStore
from tracelet_otel.records import Record, RecordKind
from tracelet_otel.reports import DropReason, RunStatus

__all__ = ["BackendContract", "StoredRun"]

SCALARS = 40
DRAIN_TIMEOUT_S = 120.0
_OPTION_TEXTS: Mapping[type, tuple[str, Any]] = {bool: ("false", False), int: ("3", 3), float: ("2.5", 2.5),
                                                 str: ("text", "text")}


@dataclass
class StoredRun:
    """What a tracker stored for one run, as read back from the tracker's own data.

    Attributes:
        exists: whether the tracker shows the run (a discarded run is gone, or marked deleted).
        scalars: (tag, step, value) of every scalar point, each time it is stored.
        payloads: (tag, step) of every image, each time it is stored.
        status: how the run ended, as one of ``RunStatus.ENDINGS``; None while it has not.
    """

    exists: bool
    scalars: Counter[tuple[str, int, float]] = field(default_factory=Counter)
    payloads: Counter[tuple[str, int]] = field(default_factory=Counter)
    status: str | None = None


def scalars(first: int, count: int) -> list[Record]:
    """Scalars whose values are exact in float32, as TensorBoard would have stored them."""
    return [Record(RecordKind.SCALAR, "contract/loss", step, 1_700_000_000.0 + step, value=step / 4)
            for step in range(first, first + count)]


def image(store: ArtifactStore, step: int) -> Record:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (step * 40 % 256, 90, 200)).save(buffer, format="PNG")
    return Record(RecordKind.IMAGE, "contract/sample", step, 1_700_000_000.0 + step,
                  blob=store.put(buffer.getvalue(), "image/png"))


def expected_scalars(records: Sequence[Record]) -> Counter[tuple[str, int, float]]:
    return Counter((record.tag, record.step, record.value) for record in records if record.kind is RecordKind.SCALAR
                   and record.value is not None)


def expected_payloads(records: Sequence[Record]) -> Counter[tuple[str, int]]:
    return Counter((record.tag, record.step) for record in records if record.kind is RecordKind.IMAGE)


class _FirstFlushFails(BackendRun):
    """The backend run, except that its first flush fails, as a tracker that did not confirm in time."""

    def __init__(self, run: BackendRun) -> None:
        self._run = run
        self.backend = run.backend  # type: ignore[misc]
        self.max_batch = run.max_batch  # type: ignore[misc]
        self.resend_duplicates = run.resend_duplicates  # type: ignore[misc]
        self.failed = False

    run_id = property(lambda self: self._run.run_id)
    reference = property(lambda self: self._run.reference)
    url = property(lambda self: self._run.url)

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        self._run.deliver(records, through_seq)

    def flush(self) -> None:
        if not self.failed:
            self.failed = True
            raise BackendUnavailable("the tracker did not confirm the batch (a failure the contract injects)")
        self._run.flush()

    def stored_through(self) -> int:
        return self._run.stored_through()

    def is_permanent(self, error: BaseException) -> bool:
        return self._run.is_permanent(error)

    def finish(self, status: str) -> None:
        self._run.finish(status)

    def discard(self) -> None:
        self._run.discard()


class BackendContract:
    """Subclass once per backend (the module docstring shows how); the tests are inherited."""

    backend: ClassVar[str]
    reads_payloads: ClassVar[bool] = True
    """False for a backend that forwards payload references without reading the payloads."""

    @pytest.fixture
    def options(self) -> dict[str, Any]:
        """The backend's options for the tests (override: a local store, an offline mode)."""
        return {}

    def stored(self, run: BackendRunHandle) -> StoredRun:
        """What the tracker stored for ``run`` (override)."""
        raise NotImplementedError(f"{type(self).__name__} must say how to read back what {self.backend} stored")

    # -- fixtures ----------------------------------------------------------------------------------------------
    @pytest.fixture
    def store(self, tmp_path: Any) -> ArtifactStore:
        return ArtifactStore(str(tmp_path / "contract-payloads"))

    @pytest.fixture
    def spool(self, tmp_path: Any, options: dict[str, Any]) -> Iterator[Spool]:
        """A spool as a job's agent leaves it: the backend, its options, and who the run is; no run yet."""
        spool = self._new_spool(str(tmp_path / f"{self.backend}.spool.sqlite"), options)
        yield spool
        spool.close()

    def _new_spool(self, path: str, options: dict[str, Any]) -> Spool:
        spool = Spool(path)
        info = RunInfo(uuid.uuid4().hex, f"contract-{uuid.uuid4().hex[:6]}", "tracelet-contract")
        Delivery(self.backend, None, dict(options), dataclasses.asdict(info)).save(spool)
        return spool

    def _handle(self, run: BackendRun) -> BackendRunHandle:
        return BackendRunHandle.of(self.backend, run)

    def _deliver_all(self, spool: Spool, run: BackendRun) -> Sender:
        sender = Sender(spool, run)
        try:
            assert sender.drain(DRAIN_TIMEOUT_S), f"{self.backend} did not take the spool within {DRAIN_TIMEOUT_S}s"
        finally:
            sender.stop()
        return sender

    # -- the contract ------------------------------------------------------------------------------------------
    def test_a_batch_stored_just_before_a_crash_is_stored_once_in_the_same_run_after_reopening(
            self, spool: Spool, store: ArtifactStore, tmp_path: Any) -> None:
        records = [*scalars(0, SCALARS // 2), image(store, 0), *scalars(SCALARS // 2, SCALARS // 2), image(store, 1)]
        spool.append(records)
        crashed = _deliver_and_die(spool.path, first_batch=SCALARS // 2 + 1, directory=str(tmp_path))

        run = open_run(spool)  # what `tracelet-otel replay` does: the run the spool names
        handle = self._handle(run)
        assert handle.run_id == crashed.run_id and handle.run_id
        self._deliver_all(spool, run)
        run.finish(RunStatus.FINISHED)

        stored = self.stored(handle)
        assert stored.scalars == expected_scalars(records)
        assert stored.payloads == expected_payloads(records)

    def test_a_failed_flush_sends_the_batch_again_and_nothing_is_stored_twice(
            self, spool: Spool, store: ArtifactStore) -> None:
        records = [*scalars(0, SCALARS), image(store, 0)]
        spool.append(records)
        run = _FirstFlushFails(open_run(spool))
        sender = self._deliver_all(spool, run)
        run.finish(RunStatus.FINISHED)

        assert run.failed and sender.counters.retried > 0
        stored = self.stored(self._handle(run))
        assert stored.scalars == expected_scalars(records)
        assert stored.payloads == expected_payloads(records)

    def test_a_missing_payload_drops_only_its_record_under_the_shared_reason(
            self, spool: Spool, store: ArtifactStore) -> None:
        lost = image(store, 7)
        os.remove(lost.blob.uri.removeprefix("file://"))  # type: ignore[union-attr]
        records = [*scalars(0, 5), lost, *scalars(5, 5)]
        spool.append(records)
        run = open_run(spool)
        sender = self._deliver_all(spool, run)
        run.finish(RunStatus.FINISHED)

        if self.reads_payloads:
            assert dict(sender.counters.dropped) == {DropReason.PAYLOAD_MISSING: 1}
            assert sender.counters.delivered == 10
        else:
            assert (dict(sender.counters.dropped), sender.counters.delivered) == ({}, 11)
        assert self.stored(self._handle(run)).scalars == expected_scalars(records)

    def test_discard_leaves_no_run(self, spool: Spool) -> None:
        run = open_run(spool)
        handle = self._handle(run)
        run.discard()
        assert not self.stored(handle).exists

    def test_a_run_let_go_for_another_in_the_same_process_goes_on_when_reopened(
            self, spool: Spool, store: ArtifactStore, options: dict[str, Any], tmp_path: Any) -> None:
        if not load_backend(self.backend).one_run_per_process:
            pytest.skip("the bridge lets a run go only where the SDK holds one run per process")
        # The runs' images share a tag: an SDK that numbers payload files per process must not reuse a number.
        first = [*scalars(0, SCALARS // 2), image(store, 0)]
        rest = [*scalars(SCALARS // 2, SCALARS // 2), image(store, 1)]
        spool.append(first)
        run = open_run(spool)
        self._deliver_all(spool, run)
        run.close()
        other = self._new_spool(str(tmp_path / "other.spool.sqlite"), options)
        try:
            other.append([*scalars(0, 3), image(store, 5)])
            other_run = open_run(other)
            self._deliver_all(other, other_run)
            other_run.finish(RunStatus.FINISHED)
        finally:
            other.close()
        spool.append(rest)
        reopened = open_run(spool)
        self._deliver_all(spool, reopened)
        reopened.finish(RunStatus.FINISHED)

        assert self._handle(reopened).run_id == self._handle(run).run_id
        stored = self.stored(self._handle(reopened))
        assert (stored.status, stored.scalars) == (RunStatus.FINISHED, expected_scalars(first + rest))
        assert stored.payloads == expected_payloads(first + rest)

    @pytest.mark.parametrize("status", RunStatus.ENDINGS)
    def test_finish_ends_the_run_with_its_status(self, spool: Spool, status: str) -> None:
        records = scalars(0, 3)
        spool.append(records)
        run = open_run(spool)
        self._deliver_all(spool, run)
        run.finish(status)

        stored = self.stored(self._handle(run))
        assert (stored.exists, stored.status, stored.scalars) == (True, status, expected_scalars(records))

    def test_options_are_parsed_by_their_declared_type(self) -> None:
        declared = load_backend(self.backend).options
        assert set(declared.values()) <= set(_OPTION_TEXTS), "option types are str, bool, int or float"
        environ = {OPTION_PREFIX + name.upper(): _OPTION_TEXTS[kind][0] for name, kind in declared.items()}
        parsed = Options.resolve(None, declared, environ).backend_options or {}
        assert parsed == {name: _OPTION_TEXTS[kind][1] for name, kind in declared.items()}


def _deliver_and_die(spool_path: str, first_batch: int, directory: str) -> BackendRunHandle:
    """In a process of its own (its own process group, ended whatever happens): open the spool's run, deliver
    the first batch and record it in the spool, then deliver and flush the rest and be killed before the spool
    can record that. Returns the run the process opened."""
    handle_path = os.path.join(directory, "crashed-run.json")
    process = subprocess.Popen([sys.executable, "-m", "tracelet_otel.testing", spool_path, str(first_batch),
                                handle_path], start_new_session=True)
    try:
        status = process.wait(DRAIN_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what the backend may have started (wandb-core) goes too
        process.wait()
    assert status == -signal.SIGKILL, f"the delivering process ended with {status} before it could be killed"
    with open(handle_path) as file:
        return BackendRunHandle.from_json(json.load(file))


def _crash_after_delivering(spool_path: str, first_batch: int, handle_path: str) -> None:
    spool = Spool(spool_path)
    run = open_run(spool)
    with open(handle_path, "w") as file:
        json.dump(BackendRunHandle.of(Delivery.load(spool).backend, run).to_json(), file)
    for limit in (first_batch, 2**31):
        batch = spool.pending(limit)
        run.deliver([record for _, record in batch], batch[-1][0])
        run.flush()
        if limit == first_batch:
            spool.mark_delivered(batch[-1][0])
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    _crash_after_delivering(sys.argv[1], int(sys.argv[2]), sys.argv[3])
