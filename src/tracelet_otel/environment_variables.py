"""Environment variables read by tracelet-otel.

A ``config`` entry passed to ``start_logging`` beats the variable, and the variable beats the default.
Every option ``X`` of :mod:`tracelet_otel.config` is read from ``TRACELET_X`` (upper case); the ones below
choose the run itself, which matters for zero-code use with ``opentelemetry-instrument``.
"""

TRACELET_EXP_NAME = "TRACELET_EXP_NAME"
"""Run name in the backends (``exp_name``)."""

TRACELET_PROJECT = "TRACELET_PROJECT"
"""Project: the backend's grouping of runs (the MLflow experiment)."""

TRACELET_BACKEND = "TRACELET_BACKEND"
"""Comma-separated backend names, e.g. ``mlflow`` or ``mlflow,wandb``."""

OPTION_PREFIX = "TRACELET_"
