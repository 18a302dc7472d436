"""Threads, forked DataLoader workers, forked multiprocessing workers and distributed ranks while capture is on."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from typing import Any

import tensorboardX
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import MlflowStore, ProcessGroup, event_files, scalars_in
from tracelet_otel.reports import DropReason

# Writers forked workers reach through the module, as GlobalSummaryWriter's own documentation shows.
_global_writer: Any = None
_torch_writer: Any = None


def test_eight_threads_through_shared_and_separate_writers_deliver_everything_in_its_own_series(
        mlflow_store, tmp_path):
    root = tmp_path / "runs"
    run = tracelet_otel.start_logging("eight-threads", config={"tensorboard_log_dir": str(root)})
    shared = SummaryWriter(str(root))
    shared_tbx = tensorboardX.SummaryWriter(str(root / "shared_tbx"))
    start = threading.Barrier(8)

    def log(worker: int) -> None:
        own = (SummaryWriter if worker % 2 else tensorboardX.SummaryWriter)(str(root / f"worker{worker}"))
        start.wait()
        for step in range(250):
            own.add_scalar("loss", worker + step / 1000, step)
            shared.add_scalar(f"worker{worker}/shared", worker + step / 1000, step)
            shared_tbx.add_scalars("pair", {f"w{worker}": float(worker), f"s{worker}": float(step)}, step)
        own.close()

    threads = [threading.Thread(target=log, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    shared_tbx.close()
    tracelet_otel.stop_logging()

    points = mlflow_store.metric_points(run.backends["mlflow"].run_id)
    by_key: dict[str, list[tuple[int, object]]] = {}
    for key, step, value, _ in points:
        by_key.setdefault(key, []).append((step, value))
    for worker in range(8):
        expected = [(step, worker + step / 1000) for step in range(250)]
        assert sorted(by_key[f"worker{worker}/loss"]) == [(s, float(torch.tensor(v))) for s, v in expected]
        assert sorted(by_key[f"worker{worker}/shared"]) == [(s, float(torch.tensor(v))) for s, v in expected]
        assert sorted(by_key[f"shared_tbx/pair/w{worker}"]) == [(step, float(worker)) for step in range(250)]
        assert sorted(by_key[f"shared_tbx/pair/s{worker}"]) == [(step, float(step)) for step in range(250)]
    assert sum(points.values()) == 8 * 250 * 4


class ThreadNames(Dataset):
    """Each item: the names of the threads alive in the worker process that loaded it."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"pid": os.getpid(), "threads": ",".join(thread.name for thread in threading.enumerate())}


def test_dataloader_workers_forked_during_capture_start_no_threads_and_parent_values_arrive(mlflow_store, tmp_path):
    run = tracelet_otel.start_logging("dataloader")
    writer = SummaryWriter(str(tmp_path / "runs"))
    loader = DataLoader(ThreadNames(), batch_size=8, num_workers=2, multiprocessing_context="fork",
                        collate_fn=lambda batch: batch)
    seen = []
    for epoch in range(2):
        for step, batch in enumerate(loader):
            writer.add_scalar("loss", step / 10, epoch * 8 + step)
            seen.extend(batch)
    writer.close()
    tracelet_otel.stop_logging()

    assert {item["pid"] for item in seen} - {os.getpid()}  # really other processes
    assert not any("tracelet-otel" in item["threads"] for item in seen)
    steps = [m.step for m in mlflow_store.client.get_metric_history(run.backends["mlflow"].run_id, "loss")]
    assert sorted(steps) == list(range(16))


def test_every_record_of_a_rank_carries_it(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    run = tracelet_otel.start_logging("rank-3", project="distributed")
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_scalar("loss", 0.5, 1)
    tracelet_otel.stop_logging()

    mlflow_run = mlflow_store.run(run.backends["mlflow"].run_id)
    assert mlflow_run.data.tags["tracelet.rank"] == "3"
    assert mlflow_run.data.metrics == {"loss": 0.5}


def log_from_forked_worker(worker: int) -> int:
    for value in range(50):
        _global_writer.add_scalar("workers", worker * 1000 + value)
    return worker


def test_values_forked_workers_log_through_a_global_summary_writer_arrive_once(mlflow_store, tmp_path):
    """tensorboardX's GlobalSummaryWriter: forked workers' events travel to the parent's writer thread, which
    writes them without passing add_event in the parent. The event file is the truth."""
    global _global_writer
    run = tracelet_otel.start_logging("global-writer")
    _global_writer = tensorboardX.GlobalSummaryWriter(str(tmp_path / "runs"))
    for value in range(50):
        _global_writer.add_scalar("parent", value)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert sorted(pool.map(log_from_forked_worker, range(4))) == [0, 1, 2, 3]
    _global_writer.close()
    stopped = tracelet_otel.stop_logging()

    in_event_files = Counter((tag, step, value) for path in event_files(str(tmp_path / "runs"))
                             for tag, step, value, _ in scalars_in(path))
    assert sum(in_event_files.values()) == 250
    delivered = Counter((key, step, value) for (key, step, value, _), count
                        in mlflow_store.metric_points(run.backends["mlflow"].run_id).items() for _ in range(count))
    assert delivered == in_event_files
    assert stopped.capture["dropped"] == {}


def log_through_the_parents_torch_writer(step: int) -> None:
    _torch_writer.add_scalar("lost", 1.0, step)


def test_what_a_forked_child_logs_through_a_torch_writer_of_the_parent_is_counted(mlflow_store, tmp_path):
    """torch's writer thread stays in the parent: TensorBoard loses these values, and so do we, counting them."""
    global _torch_writer
    tracelet_otel.start_logging("torch-in-child")
    _torch_writer = SummaryWriter(str(tmp_path / "runs"))
    _torch_writer.add_scalar("kept", 1.0, 0)
    child = multiprocessing.get_context("fork").Process(target=log_through_the_parents_torch_writer, args=(1,))
    child.start()
    child.join(30)
    _torch_writer.close()
    run = tracelet_otel.stop_logging()

    (path,) = event_files(str(tmp_path / "runs"))
    assert [tag for tag, *_ in scalars_in(path)] == ["kept"]
    assert set(mlflow_store.run(run.backends["mlflow"].run_id).data.metrics) == {"kept"}
    assert run.capture["dropped"] == {DropReason.LOST_IN_FORKED_CHILD: 1}


RANK = textwrap.dedent("""
    import os, sys
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    sys.stdin.readline()  # every rank starts at the same moment
    tracelet_otel.start_logging("ranks", "tracelet-tests")
    with SummaryWriter(f"runs/rank{os.environ['RANK']}") as writer:
        writer.add_scalar("loss", float(os.environ["RANK"]), 0)
    tracelet_otel.stop_logging()
""")


def test_four_ranks_starting_together_on_a_store_that_does_not_exist_yet_all_start_their_runs(tmp_path):
    """As every rank of `torchrun --nproc-per-node 4` does on a first run, against MLflow's default store."""
    (tmp_path / "rank.py").write_text(RANK)
    ranks = [ProcessGroup([sys.executable, "rank.py"], cwd=tmp_path, stdin=subprocess.PIPE,
                          env={**os.environ, "RANK": str(rank)}) for rank in range(4)]
    try:
        for rank in ranks:
            rank.process.stdin.write("\n")
        for rank in ranks:
            rank.process.stdin.flush()
        results = [rank.wait(180) for rank in ranks]
    finally:
        for rank in ranks:
            rank.__exit__(None, None, None)
    assert [status for status, _ in results] == [0, 0, 0, 0], [output for _, output in results]
    store = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = store.client.search_runs([store.client.get_experiment_by_name("tracelet-tests").experiment_id])
    assert sorted(run.data.metrics["loss"] for run in runs) == [0.0, 1.0, 2.0, 3.0]
