"""Shared by the benchmarks: a throw-away working directory, so MLflow's default store lands there."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def temporary_workdir() -> Iterator[str]:
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tracelet-bench-") as directory:
        os.chdir(directory)
        try:
            yield directory
        finally:
            os.chdir(previous)
