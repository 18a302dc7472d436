"""Every test runs in its own directory, W&B offline with its data and settings in that directory, and no
TRACELET_*, WANDB_* or OTEL_* setting of the machine leaks in. No test reaches the network."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.support import isolated_directory


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Iterator[str]:
    with isolated_directory(tmp_path, monkeypatch):
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-root"))
        monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
        os.makedirs(tmp_path / "wandb-root")
        yield str(tmp_path)
    if "wandb" in sys.modules:  # W&B reads WANDB_* once per process; the next test has its own
        sys.modules["wandb"].teardown()


@pytest.fixture
def wandb_dir(tmp_path) -> str:
    """The ``wandb`` directory W&B writes its runs into."""
    return str(tmp_path / "wandb-root" / "wandb")
