"""Fixtures: every test runs in its own directory, with an MLflow sqlite store of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import isolated_directory, migrated_mlflow_database


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Iterator[str]:
    with isolated_directory(tmp_path, monkeypatch):
        yield str(tmp_path)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> str:
    return migrated_mlflow_database(str(tmp_path_factory.mktemp("mlflow-template")))
