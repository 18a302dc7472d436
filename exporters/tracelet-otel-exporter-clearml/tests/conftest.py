"""Fixtures: every test runs in its own directory, against an offline ClearML session of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import isolated_directory


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Iterator[Path]:
    """A fresh working directory; no tracelet or ClearML settings leak in from the machine."""
    with isolated_directory(tmp_path, monkeypatch):
        yield tmp_path


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
