"""A long run at a steady rate: the run directory's peak disk use against what waited for delivery.

    .venv/bin/python benchmarks/long_run.py [--scalars 5000000] [--images 2000] [--rate 5000] [--max-spool-size 64MB]

A training loop logs ``--scalars`` scalars at ``--rate`` per second, and ``--images`` 64x64 images spread over
them, through a capture into a fresh local MLflow store, with ``max_spool_size`` small. A thread samples every
0.1 s the disk the run's directory takes (allocated blocks, every file in it), the capture journal's allocated and
logical size, and what waits: records in the spool, and the bytes of the spool's data pages and of the payloads.

What it shows: the directory is bounded by what waits (plus sqlite's write-ahead log, reused at ~4 MB), never by
how long the run is (the journal's logical size, everything it ever held), and ``max_spool_size`` drops nothing
while delivery keeps up with the rate. MLflow's ``log_batch`` into sqlite takes ~10,000 points/s here: the default
rate leaves it room.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

import tracelet_otel
from tracelet_otel.delivery.spool import Spool

SAMPLE_EVERY_S = 0.1


def allocated(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


class DiskSampler(threading.Thread):
    def __init__(self, run_dir: str) -> None:
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.peak_dir = self.peak_journal = self.logical_journal = 0
        self.peak_waiting_records = self.peak_waiting_bytes = 0
        self.peak_files: dict[str, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_EVERY_S):
            total = 0
            for directory, _, names in os.walk(self.run_dir):
                for name in names:
                    size = allocated(os.path.join(directory, name))
                    total += size
                    kind = "payloads" if directory != self.run_dir else name
                    self.peak_files[kind] = max(self.peak_files.get(kind, 0), size)
            self.peak_dir = max(self.peak_dir, total)
            journal = os.path.join(self.run_dir, "capture.journal")
            self.peak_journal = max(self.peak_journal, allocated(journal))
            if os.path.exists(journal):
                self.logical_journal = os.path.getsize(journal)
            records, pages = self.waiting(os.path.join(self.run_dir, "mlflow.spool.sqlite"))
            payloads = sum(allocated(os.path.join(d, n)) for d, _, names in
                           os.walk(os.path.join(self.run_dir, "payloads")) for n in names)
            self.peak_waiting_records = max(self.peak_waiting_records, records)
            self.peak_waiting_bytes = max(self.peak_waiting_bytes, pages + payloads)

    @staticmethod
    def waiting(path: str) -> tuple[int, int]:
        if not os.path.exists(path):
            return 0, 0
        try:
            spool = Spool(path)
            try:
                return spool.count(), spool.waiting_bytes()
            finally:
                spool.close()
        except sqlite3.Error:  # the run's directory went away at the end
            return 0, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scalars", type=int, default=5_000_000)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=5000.0, help="scalars per second")
    parser.add_argument("--max-spool-size", default="64MB")
    args = parser.parse_args()

    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    with temporary_workdir() as workdir:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"
        run = tracelet_otel.start_logging("long-run", config={"max_spool_size": args.max_spool_size})
        sampler = DiskSampler(run.directory)
        sampler.start()
        writer = SummaryWriter(os.path.join(workdir, "runs"))
        image = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
        image_every = max(1, args.scalars // args.images) if args.images else 0
        started = time.monotonic()
        for step in range(args.scalars):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            if image_every and step % image_every == 0:
                image[0, 0, 0] = step % 256  # every image a payload of its own
                writer.add_image("sample", image, step)
            if step % 500 == 0:
                ahead = started + step / args.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        writer.close()
        logged = time.monotonic() - started
        stopped = tracelet_otel.stop_logging()
        total = time.monotonic() - started
        sampler.stopping.set()
        sampler.join()
        assert stopped is not None
        report = stopped.delivery["mlflow"]
        mb = 1e6
        print(f"{args.scalars} scalars and {args.images} images at {args.rate:.0f}/s, max_spool_size "
              f"{args.max_spool_size}: logged in {logged:.0f} s, all delivered {total - logged:.1f} s later")
        print(f"delivered {report.delivered}, dropped {dict(report.dropped) or 0} (delivery), "
              f"{dict(stopped.capture.dropped) or 0} (capture)")
        print(f"everything the journal ever held: {sampler.logical_journal / mb:.1f} MB")
        print(f"run directory, peak:              {sampler.peak_dir / mb:.1f} MB "
              f"(journal {sampler.peak_journal / mb:.1f} MB at most)")
        print(f"waiting for delivery, peak:       {sampler.peak_waiting_records} records, "
              f"{sampler.peak_waiting_bytes / mb:.1f} MB of spool pages and payloads")
        print("peak per file: " + ", ".join(f"{name} {size / mb:.1f} MB" for name, size in
                                           sorted(sampler.peak_files.items()) if size > 0.1 * mb))


if __name__ == "__main__":
    main()
