"""The example backend's own tests: its pure translation, and the contract suite every backend runs."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from jsonl_backend import translate

from tracelet_otel.backends import BackendRunHandle, Record, RecordKind
from tracelet_otel.testing import BackendContract, StoredRun


def test_the_translation_is_pure():
    record = Record(RecordKind.SCALAR, "loss", 3, 1.5, value=0.25)
    assert translate([record]) == [{"kind": "scalar", "tag": "loss", "step": 3, "wall_time": 1.5, "value": 0.25,
                                    "payload": None, "params": None}]


class TestJsonLinesContract(BackendContract):
    backend = "jsonl"
    reads_payloads = False  # it writes each payload's URI, not its bytes

    @pytest.fixture
    def options(self, tmp_path) -> dict:
        return {"jsonl_directory": str(tmp_path)}

    def stored(self, run: BackendRunHandle) -> StoredRun:
        try:
            with open(run.reference["path"]) as file:
                lines = [json.loads(line) for line in file]
        except FileNotFoundError:
            return StoredRun(exists=False)
        records = [line for line in lines if "kind" in line]
        return StoredRun(exists=True,
                         scalars=Counter((line["tag"], line["step"], line["value"]) for line in records
                                         if line["kind"] == "scalar"),
                         payloads=Counter((line["tag"], line["step"]) for line in records if line["kind"] == "image"),
                         status=next((line["status"] for line in reversed(lines) if "status" in line), None))
