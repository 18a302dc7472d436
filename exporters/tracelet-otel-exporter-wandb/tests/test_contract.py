"""W&B keeps the delivery contract every backend keeps (``tracelet_otel.testing``), read back from the
transaction logs of its offline runs."""

from __future__ import annotations

import os
from collections import Counter

from tracelet_otel.backends import BackendRunHandle
from tracelet_otel.testing import BackendContract, StoredRun
from tracelet_otel_wandb._run import EXIT_CODES
from tracelet_otel_wandb._translate import STEP_KEY
from tracelet_otel_wandb.testing import read_run, run_directories

_STATUSES = {code: status for status, code in EXIT_CODES.items()}


class TestWandbContract(BackendContract):
    backend = "wandb"

    def stored(self, run: BackendRunHandle) -> StoredRun:
        """Every directory of the run: a reopened offline run writes a directory of its own (``wandb sync``
        uploads them in order)."""
        directories = run_directories(os.path.join(run.reference["dir"], "wandb"), run.run_id)
        contents = [read_run(directory) for directory in directories]
        scalars: Counter[tuple[str, int, float]] = Counter()
        payloads: Counter[tuple[str, int]] = Counter()
        for row in (row for content in contents for row in content.history):
            for key, value in row.items():
                if key.startswith("_") or key == STEP_KEY:
                    continue
                if isinstance(value, dict) and value.get("_type") == "image-file":
                    payloads[key, row[STEP_KEY]] += 1
                elif isinstance(value, int | float):
                    scalars[key, row[STEP_KEY], float(value)] += 1
        exit_code = contents[-1].exit_code if contents else None
        return StoredRun(exists=bool(contents), scalars=scalars, payloads=payloads,
                         status=None if exit_code is None else _STATUSES.get(exit_code))
