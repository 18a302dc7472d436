"""Fixtures: every test runs in its own directory, against an offline ClearML session of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Iterator[Path]:
    """A fresh working directory; no tracelet or ClearML settings leak in from the machine."""
    for name in list(os.environ):
        if name.startswith(("TRACELET_", "CLEARML_", "TRAINS_", "OTEL_", "MLFLOW_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import tracelet_otel

    tracelet_otel.stop_logging()


@pytest.fixture
def clearml_cache(tmp_path, monkeypatch) -> Path:
    """ClearML offline mode, its cache (and so its sessions) under tmp_path, and an empty configuration file
    in place of the machine's ~/clearml.conf."""
    cache = tmp_path / "clearml-cache"
    configuration = tmp_path / "clearml.conf"
    configuration.write_text("")
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(cache))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(configuration))
    return cache
