"""Every code example of the seed and of the README runs, and what it logs is in MLflow."""

from __future__ import annotations

import os
import re
import runpy

import pytest

from tests.support import MlflowStore

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_EXAMPLES = os.path.join(REPOSITORY, "examples", "seed")

# example -> (MLflow experiment, run name, metric keys it must have)
EXPECTED = {
    "basic_usage": ("my_project", "tensorboard_experiment", {"Loss/Train", "Accuracy/Train"}),
    "multiple_writers": ("my_project", "multiple_writers", {"train/loss", "validation/loss"}),
    "hierarchical_metrics": ("my_project", "hierarchical", {
        "Loss/Train/CrossEntropy", "Loss/Train/Regularization", "Loss/Validation/Total", "Metrics/Accuracy/Train",
        "Metrics/Accuracy/Validation", "Metrics/F1/Macro"}),
    "custom_tags": ("my_project", "custom_tags", {"learning_rate", "batch_size"}),
    "configuration": ("Default", "custom_tensorboard", {"loss"}),
    "high_frequency": ("my_project", "high_frequency", {"Loss/Train"}),
    "memory_management": ("my_project", "memory_management", set()),
    "migration": ("Default", "my_experiment", {"loss"}),
    "debugging": ("Default", "debug_experiment", {"loss"}),
}


def test_every_seed_example_has_an_expectation():
    assert {name[:-3] for name in os.listdir(SEED_EXAMPLES) if name.endswith(".py")} == set(EXPECTED)


def only_run(store: MlflowStore, experiment: str):
    (run,) = store.client.search_runs([store.client.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_seed_example(example, mlflow_store):
    runpy.run_path(os.path.join(SEED_EXAMPLES, f"{example}.py"), run_name="__main__")
    experiment, run_name, keys = EXPECTED[example]
    run = only_run(mlflow_store, experiment)
    assert (run.info.run_name, run.info.status) == (run_name, "FINISHED")
    assert keys <= set(run.data.metrics)


@pytest.mark.parametrize(("example", "artifacts"), [
    ("custom_tags", {"text/Config/step_5.txt", "text/Notes/step_5.txt"}),
    ("memory_management", {"images/Prediction/step_0.png", "histograms/Weights/0.weight/step_500.json"}),
    ("configuration", {"images/kept/step_1.png"}),
])
def test_seed_payload_examples_store_their_artifacts(example, artifacts, mlflow_store):
    runpy.run_path(os.path.join(SEED_EXAMPLES, f"{example}.py"))
    experiment = EXPECTED[example][0]
    assert artifacts <= set(mlflow_store.artifacts(only_run(mlflow_store, experiment).info.run_id))


DOCUMENTS = ["README.md", "docs/distributed.md"]


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for document in DOCUMENTS:
        with open(os.path.join(REPOSITORY, document)) as file:
            found = re.findall(r"```python\n(.*?)```", file.read(), re.DOTALL)
        blocks.extend((f"{document} example {index + 1}", code) for index, code in enumerate(found))
    return blocks


@pytest.mark.parametrize(("name", "code"), python_blocks(), ids=[name for name, _ in python_blocks()])
def test_documented_example(name, code, mlflow_store):
    exec(compile(code, name, "exec"), {"__name__": "__main__"})
