"""``opentelemetry-instrument python train.py`` with TRACELET_* variables: no change to the training code.

Every script runs in a process group of its own that the test kills when it ends, pass or fail, and the
helper processes below it are counted while it runs: one agent and one delivery worker per backend, never more.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from tests.support import ProcessGroup, event_files, scalars_in

TRAIN = textwrap.dedent("""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter("runs/zero-code") as writer:
        for step in range(50):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
""")

SCRIPT_THAT_STARTS_ITS_OWN_RUN = textwrap.dedent("""
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    tracelet_otel.start_logging("explicit", project="no-code-change")
    with SummaryWriter("runs/explicit") as writer:
        for step in range(50):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
    run = tracelet_otel.stop_logging()
    assert run.delivery["mlflow"]["undelivered"] == 0, run.delivery
""")

TRACELET_ENVIRONMENT = {"TRACELET_EXP_NAME": "zero-code", "TRACELET_PROJECT": "no-code-change",
                        "TRACELET_BACKEND": "mlflow", "OTEL_TRACES_EXPORTER": "none",
                        "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


def auto_instrumentation_directory() -> str:
    import opentelemetry.instrumentation.auto_instrumentation as auto_instrumentation

    return os.path.dirname(auto_instrumentation.__file__)


def run_instrumented(directory, script: str, *, venv: str | None = None, **environment: str) -> tuple[str, list[str]]:
    """Run ``script`` under opentelemetry-instrument; returns its output and the most helpers seen at once."""
    (directory / "train.py").write_text(script)
    bin_directory = os.path.join(venv, "bin") if venv else os.path.dirname(sys.executable)
    command = [os.path.join(bin_directory, "opentelemetry-instrument"), os.path.join(bin_directory, "python"),
               "train.py"]
    with ProcessGroup(command, cwd=directory, env={**os.environ, **TRACELET_ENVIRONMENT, **environment}) as job:
        status, output = job.wait(timeout=180)
    assert status == 0, output
    return output, job.most_helpers


def only_run(mlflow_store):
    experiment = mlflow_store.client.get_experiment_by_name("no-code-change")
    runs = mlflow_store.client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_name for run in runs]
    return runs[0]


def test_opentelemetry_instrument_captures_tensorboard_from_the_environment(mlflow_store, tmp_path):
    _, helpers = run_instrumented(tmp_path, TRAIN)

    run = only_run(mlflow_store)
    assert (run.info.run_name, run.info.status) == ("zero-code", "FINISHED")
    assert [m.step for m in mlflow_store.client.get_metric_history(run.info.run_id, "loss")] == list(range(50))
    assert len(helpers) == 2, helpers  # the agent and one delivery worker
    # The run names the training script, as mlflow.start_run in it would have.
    assert run.data.tags["mlflow.source.name"] == str(tmp_path / "train.py")
    assert run.data.tags["mlflow.user"]


@pytest.mark.parametrize("route", ["linked virtualenv", "PYTHONPATH names the auto-instrumentation directory"])
def test_helpers_never_start_runs_of_their_own(mlflow_store, tmp_path, route):
    """Through a linked venv, opentelemetry-instrument leaves its sitecustomize on every child's path: each helper
    would start a run, whose agent would start another, without end."""
    environment: dict[str, str] = {}
    venv = None
    if route == "linked virtualenv":
        venv = str(tmp_path / "linked-venv")
        os.symlink(os.path.realpath(sys.prefix), venv)
    else:
        environment["PYTHONPATH"] = auto_instrumentation_directory()
    _, helpers = run_instrumented(tmp_path, TRAIN, venv=venv, **environment)

    run = only_run(mlflow_store)
    assert len(mlflow_store.client.get_metric_history(run.info.run_id, "loss")) == 50
    assert len(helpers) <= 2, helpers


def test_a_script_that_starts_its_own_run_gets_exactly_that_run(mlflow_store, tmp_path):
    output, helpers = run_instrumented(tmp_path, SCRIPT_THAT_STARTS_ITS_OWN_RUN,
                                       PYTHONPATH=auto_instrumentation_directory())

    run = only_run(mlflow_store)
    assert run.info.run_name == "explicit"
    assert len(mlflow_store.client.get_metric_history(run.info.run_id, "loss")) == 50
    assert "not delivered" not in output
    assert len(helpers) <= 2, helpers


def test_a_run_that_cannot_start_is_one_warning_and_training_goes_on(mlflow_store, tmp_path):
    output, helpers = run_instrumented(tmp_path, TRAIN, TRACELET_BACKEND="no-such-tracker")

    assert output.count("could not start a run from the TRACELET_* environment") == 1, output
    assert "Traceback" not in output
    (path,) = event_files(str(tmp_path / "runs"))
    assert len(list(scalars_in(path))) == 50  # TensorBoard wrote everything
    assert helpers == []


def test_a_helper_process_starts_no_run_whatever_its_environment_says(mlflow_store, tmp_path):
    """The mark the parent sets wins over TRACELET_* variables and the auto-instrumentation directory."""
    (tmp_path / "train.py").write_text(TRAIN)
    environment = {**os.environ, **TRACELET_ENVIRONMENT, "PYTHONPATH": auto_instrumentation_directory(),
                   "TRACELET_OTEL_HELPER": "1"}
    with ProcessGroup([sys.executable, "train.py"], cwd=tmp_path, env=environment) as job:
        status, output = job.wait(timeout=120)
    assert status == 0, output
    assert job.most_helpers == []
    assert mlflow_store.client.get_experiment_by_name("no-code-change") is None
    assert not (tmp_path / ".tracelet").exists()


def test_helpers_start_without_the_auto_instrumentation_directory():
    from tracelet_otel._child import python_path_without_auto_instrumentation

    directory = auto_instrumentation_directory()
    linked = os.path.join(os.path.dirname(directory), ".", os.path.basename(directory))
    path = os.pathsep.join(["/opt/mine", directory, linked, "/opt/other"])
    assert python_path_without_auto_instrumentation(path) == os.pathsep.join(["/opt/mine", "/opt/other"])


def test_every_rank_of_torchrun_is_captured(mlflow_store, tmp_path):
    """The zero-code route with several processes (docs/distributed.md): each rank its own run."""
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import os
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(f"runs/rank{os.environ['RANK']}") as writer:
            for step in range(20):
                writer.add_scalar("loss", 1.0 / (step + 1), step)
    """))
    bin_directory = os.path.dirname(sys.executable)
    command = [os.path.join(bin_directory, "torchrun"), "--nproc-per-node", "2", "--no-python",
               os.path.join(bin_directory, "opentelemetry-instrument"), sys.executable, "train.py"]
    with ProcessGroup(command, cwd=tmp_path, env={**os.environ, **TRACELET_ENVIRONMENT}) as job:
        status, output = job.wait(timeout=240)
    assert status == 0, output
    assert len(job.most_helpers) <= 4, job.most_helpers  # per rank: the agent and one worker

    experiment = mlflow_store.client.get_experiment_by_name("no-code-change")
    runs = mlflow_store.client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["tracelet.rank"] for run in runs) == ["0", "1"]
    for run in runs:
        assert len(mlflow_store.client.get_metric_history(run.info.run_id, "loss")) == 20
        assert run.info.status == "FINISHED"
