"""start_logging / stop_logging as a user sees them: patching, unpatching, restarts, threads."""

from __future__ import annotations

import gc
import logging
import os
import time
import warnings

import pytest
import tensorboardX
import tensorboardX.writer
import torch.utils.tensorboard.writer as torch_writer
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import helper_processes

PATCHED = [(module.FileWriter, "add_event") for module in (torch_writer, tensorboardX.writer)] + [
    (module.SummaryWriter, method) for module in (torch_writer, tensorboardX.writer)
    for method in ("add_scalars", "add_hparams", "add_embedding")]


def is_wrapped(owner, name) -> bool:
    return hasattr(owner.__dict__[name], "__wrapped__")


def test_stop_logging_restores_every_patched_method(mlflow_store):
    tracelet_otel.start_logging("patching")
    assert all(is_wrapped(owner, name) for owner, name in PATCHED)
    tracelet_otel.stop_logging()
    assert not any(is_wrapped(owner, name) for owner, name in PATCHED)


def test_values_logged_after_stop_stay_in_tensorboard_only(mlflow_store, tmp_path):
    run = tracelet_otel.start_logging("after-stop")
    writer = SummaryWriter(str(tmp_path / "runs"))
    writer.add_scalar("loss", 1.0, 0)
    tracelet_otel.stop_logging()
    writer.add_scalar("loss", 2.0, 1)
    writer.close()

    points = mlflow_store.metric_points(run.backends["mlflow"].run_id)
    assert [(key, step, value) for key, step, value, _ in points] == [("loss", 0, 1.0)]


def test_a_second_run_is_clean_nothing_wrapped_twice_nothing_shared(mlflow_store, tmp_path):
    writer = SummaryWriter(str(tmp_path / "runs"))
    first = tracelet_otel.start_logging("first")
    writer.add_scalar("loss", 1.0, 0)
    tracelet_otel.stop_logging()
    second = tracelet_otel.start_logging("second")
    assert not hasattr(torch_writer.FileWriter.__dict__["add_event"].__wrapped__, "__wrapped__")
    writer.add_scalar("loss", 2.0, 1)
    tracelet_otel.stop_logging()
    writer.close()

    def values(run):
        return [(step, value) for _, step, value, _ in mlflow_store.metric_points(run.backends["mlflow"].run_id)]

    assert first.backends["mlflow"].run_id != second.backends["mlflow"].run_id
    assert (values(first), values(second)) == ([(0, 1.0)], [(1, 2.0)])


def test_start_logging_while_active_stops_the_first_run(mlflow_store, caplog):
    first = tracelet_otel.start_logging("one")
    with caplog.at_level(logging.WARNING, logger="tracelet_otel"):
        second = tracelet_otel.start_logging("two")
    assert "stopping it first" in caplog.text
    assert mlflow_store.run(first.backends["mlflow"].run_id).info.status == "FINISHED"
    tracelet_otel.stop_logging()
    assert mlflow_store.run(second.backends["mlflow"].run_id).info.status == "FINISHED"


def test_stop_logging_without_a_run_does_nothing():
    assert tracelet_otel.stop_logging() is None
    assert tracelet_otel.stop_logging() is None


def test_the_run_handle_is_a_context_manager(mlflow_store, tmp_path):
    with tracelet_otel.start_logging("context") as run, SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_scalar("loss", 0.5, 3)
    assert run.delivery["mlflow"]["delivered"] == 1
    assert mlflow_store.run(run.backends["mlflow"].run_id).info.status == "FINISHED"


def test_debug_logging_shows_each_intercepted_operation(mlflow_store, tmp_path, caplog):
    tracelet_otel.start_logging("debug")
    with caplog.at_level(logging.DEBUG, logger="tracelet_otel"):
        with SummaryWriter(str(tmp_path / "runs")) as writer:
            writer.add_scalar("Loss/Train", 0.25, 7)
            writer.add_text("Notes", "hello", 7)
        tracelet_otel.stop_logging()
    assert "captured Loss/Train step=7" in caplog.text
    assert "captured Notes/text_summary step=7" in caplog.text


@pytest.mark.parametrize("backend", ["mlflow", ["mlflow"]])
def test_backend_is_a_name_or_a_list(mlflow_store, backend):
    run = tracelet_otel.start_logging("backends", backend=backend)
    assert list(run.backends) == ["mlflow"]
    assert run.backends["mlflow"].run_id


def test_an_unknown_backend_names_the_nearest_one():
    with pytest.raises(ValueError, match="did you mean 'mlflow'"):
        tracelet_otel.start_logging("typo", backend="mlfow")


def open_files() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


def test_start_and_stop_leave_no_open_file_no_process_and_no_resource_warning(mlflow_store, tmp_path):
    tracelet_otel.start_logging("warm-up")  # MLflow opens its store once per process
    tracelet_otel.stop_logging()
    gc.collect()
    before = open_files()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for attempt in range(2):
            tracelet_otel.start_logging(f"clean-{attempt}")
            with SummaryWriter(str(tmp_path / "runs")) as writer:
                writer.add_scalar("loss", 1.0, attempt)
            tracelet_otel.stop_logging()
        time.sleep(0.2)  # the reader threads close their pipes at the helpers' end of output
        gc.collect()
    assert [str(warning.message) for warning in caught if warning.category is ResourceWarning] == []
    assert helper_processes(os.getpid()) == []
    assert open_files() - before == set()
