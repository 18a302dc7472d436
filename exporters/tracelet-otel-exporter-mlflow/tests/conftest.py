"""Fixtures: every test runs in its own directory, with an MLflow sqlite store of its own."""

from tests.support import isolated, mlflow_template

__all__ = ["isolated", "mlflow_template"]
