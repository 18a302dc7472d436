"""Pictures of histograms for MLflow's image view: how many per second the delivery worker draws and delivers,
beside MLflow's own log_batch rate for scalars, in the same run.

    .venv/bin/python benchmarks/histogram_pictures.py [--histograms 300] [--values 10000] [--rounds 3]

Each histogram is ``add_histogram`` of ``--values`` normal values with TensorBoard's default buckets, stored as
tracelet-otel stores it (JSON). "drawn" is the picture and its thumbnail, encoded (and, for comparison, the chart
alone with matplotlib); "delivered" is ``MlflowRun.deliver`` into a sqlite store, with the pictures on and off
(``mlflow_histogram_images``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

from tracelet_otel.backends import Record, RecordKind, RunInfo, read_histogram
from tracelet_otel.payloads import ArtifactStore

BATCH = 50


def histogram_records(store: ArtifactStore, count: int, values: int, logdir: str) -> list[Record]:
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import histogram

    with SummaryWriter(logdir) as writer:
        bins = writer.default_bins
    records = []
    for step in range(count):
        histo = histogram("w", np.random.default_rng(step).normal(size=values), bins=bins).value[0].histo
        body = {"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum,
                "sum_squares": histo.sum_squares, "bucket_limit": list(histo.bucket_limit),
                "bucket": list(histo.bucket)}
        blob = store.put(json.dumps(body).encode(), "application/json")
        records.append(Record(RecordKind.HISTOGRAM, "Weights/Layer1", step, 1.7e9 + step, blob=blob))
    return records


def drawn_per_second(records: list[Record]) -> float:
    from tracelet_otel_mlflow._histogram_picture import histogram_pictures

    start = time.perf_counter()
    for record in records:
        assert record.blob is not None
        histogram_pictures(read_histogram(record.blob))
    return len(records) / (time.perf_counter() - start)


def matplotlib_per_second(records: list[Record]) -> float:
    """The same bar chart drawn with matplotlib, the usual tool, for comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    start = time.perf_counter()
    for record in records:
        assert record.blob is not None
        histogram = read_histogram(record.blob)
        bars = histogram.bars()
        figure, axes = plt.subplots(figsize=(4.8, 3.0), dpi=100)
        axes.bar(bars.edges[:-1], bars.counts, width=bars.width, align="edge", color="#f27035")
        axes.set_title(f"min {histogram.min:.4g}  max {histogram.max:.4g}")
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
    return len(records) / (time.perf_counter() - start)


def delivered_per_second(records: list[Record], tracking_uri: str, pictures: bool) -> float:
    from tracelet_otel_mlflow import MlflowBackend

    run = MlflowBackend().open_run(RunInfo("bench", f"pictures-{pictures}", "histogram-pictures"),
                                   {"mlflow_tracking_uri": tracking_uri, "mlflow_histogram_images": pictures})
    run.deliver(records[:BATCH], BATCH)  # untimed: the first call imports what MLflow loads lazily
    start = time.perf_counter()
    for first in range(BATCH, len(records), BATCH):
        run.deliver(records[first : first + BATCH], first + BATCH)
    return (len(records) - BATCH) / (time.perf_counter() - start)


def log_batch_per_second(tracking_uri: str, count: int = 20_000) -> float:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.get_experiment_by_name("histogram-pictures").experiment_id).info.run_id
    start = time.perf_counter()
    for first in range(0, count, 1000):
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step)
                                          for step in range(first, first + 1000)])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histograms", type=int, default=300)
    parser.add_argument("--values", type=int, default=10_000, help="values per add_histogram call")
    parser.add_argument("--rounds", type=int, default=3, help="each measure this many times, interleaved")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"drawn": [], "matplotlib": [], "off": [], "on": [], "log_batch": []}
    with temporary_workdir() as directory:
        tracking_uri = f"sqlite:///{directory}/mlflow.db"
        records = histogram_records(ArtifactStore(os.path.join(directory, "payloads")), args.histograms, args.values,
                                    os.path.join(directory, "runs"))
        for _ in range(args.rounds):
            rates["drawn"].append(drawn_per_second(records))
            rates["matplotlib"].append(matplotlib_per_second(records[:50]))
            rates["off"].append(delivered_per_second(records, tracking_uri, pictures=False))
            rates["on"].append(delivered_per_second(records, tracking_uri, pictures=True))
            rates["log_batch"].append(log_batch_per_second(tracking_uri))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, label in (("drawn", "histogram pictures drawn"), ("matplotlib", "the same chart with matplotlib"),
                        ("off", "histograms delivered, pictures off"),
                        ("on", "histograms delivered, pictures on"), ("log_batch", "MLflow log_batch, scalars")):
        low, high = min(rates[name]), max(rates[name])
        print(f"{label:36s} {median[name]:8,.0f} /s   (median of {args.rounds}: {low:,.0f} - {high:,.0f})")
    print(f"a picture adds {1000 / median['on'] - 1000 / median['off']:.1f} ms to a histogram's delivery")


if __name__ == "__main__":
    main()
