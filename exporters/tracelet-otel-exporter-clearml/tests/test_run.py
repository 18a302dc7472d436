"""ClearmlRun against a real offline ClearML session, each in a process of its own as in the delivery worker
(ClearML's Task.init allows one task per process): what flush guarantees, and reopening the same task."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracelet_otel.errors import PayloadMissing
from tracelet_otel.payloads import ArtifactStore, read_blob
from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel_clearml import ClearmlRun
from tracelet_otel_clearml.testing import read_session

# Opens (or reopens) a ClearmlRun and runs the steps given on stdin against it. It prints JSON lines: the run
# opened, what the session folder holds right after each deliver and flush, and any error raised. "crash" ends
# the process without closing the task, as a killed worker would.
WORKER = textwrap.dedent("""
    import json, os, sys
    from tracelet_otel.backends import RunInfo
    from tracelet_otel.records import Blob, Record, RecordKind
    from tracelet_otel_clearml import ClearmlBackend
    from tracelet_otel_clearml.testing import read_session

    def record(fields):
        blob = fields.pop("blob", None)
        return Record(RecordKind(fields.pop("kind")), blob=Blob(*blob) if blob else None, **fields)

    resume = json.loads(sys.argv[1])
    run = ClearmlBackend().open_run(RunInfo("ours", "contract", "tracelet-tests", source={"pid": os.getpid()}),
                                    {"clearml_resource_monitoring": False}, resume=resume)
    print(json.dumps({"reference": run.reference, "stored_through": run.stored_through()}), flush=True)
    for step in json.loads(sys.stdin.read()):
        action = step["do"]
        try:
            if action == "deliver":
                run.deliver([record(r) for r in step["records"]], step["through_seq"])
                run.flush()
                session = read_session(run._task.get_offline_mode_folder())  # before any close: what flush wrote
                samples = [[s.title, s.series, s.iteration, s.path.suffix] for s in session.samples]
                plots = [[title, series, iteration] for title, series, iteration, _ in session.plots]
                print(json.dumps({"scalars": len(session.scalars), "console": session.console, "samples": samples,
                                  "plots": plots, "artifacts": sorted(session.artifacts)}), flush=True)
            elif action == "break_the_session_file":
                metrics = run._task.get_offline_mode_folder() / "metrics.jsonl"
                metrics.unlink()
                metrics.mkdir()  # ClearML's next write into it fails
            elif action == "finish":
                run.finish(step["status"])
            elif action == "discard":
                run.discard()
            elif action == "crash":
                os._exit(0)
        except Exception as error:
            print(json.dumps({"raised": f"{type(error).__name__}: {error}"}), flush=True)
""")


def run_worker(tmp_path: Path, resume: dict | None, steps: list[dict]) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = subprocess.run([sys.executable, str(script), json.dumps(resume)], input=json.dumps(steps),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def payload(store: ArtifactStore, data: bytes, media_type: str) -> list:
    return list(store.put(data, media_type))


def test_flush_writes_everything_and_a_reopened_task_continues_after_what_was_stored(clearml_cache, tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    first_image, second_image = (payload(store, b"\x89PNG\r\n\x1a\n" + bytes([n]) * 16, "image/png") for n in (1, 2))
    text = payload(store, b"hello", "text/plain")
    batch = [{"kind": "scalar", "tag": "loss", "step": step, "wall_time": 1.0, "value": step / 10} for step in range(3)]
    batch += [{"kind": "text", "tag": "Notes", "step": 0, "wall_time": 1.0, "blob": text},
              {"kind": "image", "tag": "Predictions", "step": 0, "wall_time": 1.0, "blob": first_image}]

    opened, written = run_worker(tmp_path, None, [{"do": "deliver", "records": batch, "through_seq": 5},
                                                   {"do": "crash"}])
    assert written["scalars"] == 3 and len(written["samples"]) == 1 and "Notes (step 0): hello" in written["console"]

    later = [{"kind": "image", "tag": "Predictions", "step": 1, "wall_time": 2.0, "blob": second_image}]
    reopened, _ = run_worker(tmp_path, opened["reference"], [{"do": "deliver", "records": later, "through_seq": 6},
                                                             {"do": "finish", "status": "KILLED"}])
    assert reopened["reference"] == opened["reference"] and reopened["stored_through"] == 5

    session = read_session(Path(opened["reference"]["offline_folder"]))
    assert sorted(session.scalars) == [("loss", "loss", step, step / 10) for step in range(3)]
    samples = sorted((sample.iteration, sample.path.read_bytes()) for sample in session.samples)
    # the second session's sample got a file of its own instead of overwriting the first one's
    assert samples == [(0, read_blob(Blob(*first_image))), (1, read_blob(Blob(*second_image)))]
    assert (session.bookkeeping["tracelet_sessions"], session.bookkeeping["tracelet_status"]) == ("2", "KILLED")
    assert session.console_lines_starting("tracelet-otel: the run ended KILLED")  # what an imported session shows


def test_every_other_kind_reaches_clearml_as_its_nearest_type(clearml_cache, tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    curve = json.dumps({"precision": [1.0, 0.5], "recall": [0.0, 1.0], "true_positives": [1, 1]}).encode()
    kinds = [("audio", "sound", b"RIFF....WAVE", "audio/wav", None), ("video", "rollout", b"GIF89a", "image/gif", None),
             ("pr_curve", "pr", curve, "application/json", None),
             ("graph", "model", b"node {}", "text/x-protobuf", None),
             ("embedding", "words", b"a\nb\n", "text/tab-separated-values", "metadata.tsv"),
             ("custom_scalars", "layout", b"{}", "application/json", None)]
    records = [{"kind": kind, "tag": tag, "step": 3, "wall_time": 1.0, "blob": payload(store, data, media_type),
                "filename": filename} for kind, tag, data, media_type, filename in kinds]

    _, written = run_worker(tmp_path, None, [{"do": "deliver", "records": records, "through_seq": 6},
                                            {"do": "finish", "status": "FINISHED"}])
    assert written["samples"] == [["sound", "sound", 3, ".wav"], ["rollout", "rollout", 3, ".gif"]]
    assert written["plots"] == [["pr", "pr", 3]]
    assert written["artifacts"] == ["custom_scalars/layout/step_3.json", "embeddings/words/step_3/metadata.tsv",
                                    "graphs/model/step_3.pbtxt"]


def test_a_discarded_run_leaves_no_offline_session(clearml_cache, tmp_path):
    (opened,) = run_worker(tmp_path, None, [{"do": "discard"}])
    assert Path(opened["reference"]["offline_folder"]).parent == clearml_cache / "offline"
    assert list((clearml_cache / "offline").iterdir()) == []


def test_flush_raises_when_clearml_could_not_write_instead_of_losing_the_batch(clearml_cache, tmp_path):
    scalar = {"kind": "scalar", "tag": "loss", "step": 0, "wall_time": 1.0, "value": 0.5}
    _, first, second = run_worker(tmp_path, None, [
        {"do": "deliver", "records": [scalar], "through_seq": 1},
        {"do": "break_the_session_file"},
        {"do": "deliver", "records": [scalar], "through_seq": 2},
        {"do": "crash"}])
    assert first["scalars"] == 1
    assert second["raised"].startswith("RuntimeError: ClearML's reporting thread has stopped")


class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append(name)


class FakeTask:
    def __init__(self) -> None:
        self.logger = RecordingLogger()

    def get_logger(self) -> RecordingLogger:
        return self.logger


def test_a_missing_payload_is_permanent_and_nothing_of_its_batch_reaches_clearml(tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    image = store.put(b"\x89PNG", "image/png")
    Path(image.uri.removeprefix("file://")).unlink()
    task = FakeTask()
    run = ClearmlRun(task, stored_through=0, first_file_number=0)
    records = [Record(RecordKind.SCALAR, "loss", 0, 1.0, value=0.5),
               Record(RecordKind.IMAGE, "img", 0, 1.0, blob=image)]

    with pytest.raises(PayloadMissing):  # the sender drops the record under the reason every backend shares
        run.deliver(records, 2)
    assert task.logger.calls == []
    run.deliver(records[:1], 1)  # the sender's record-by-record retry
    assert task.logger.calls == ["report_scalar"]
