"""Many runs at once through the bridge into MLflow on PostgreSQL, beside MLflow's own ``log_batch`` ceiling
measured in the same run against the same server.

    .venv/bin/python benchmarks/bridge_load.py [--runs 10 100 500] [--scalars 1000] [--replicas 1 2]
                                               [--threads 8] [--mlflow-workers 4]

For each number of runs: first the ceiling, ``threads`` threads creating the runs, calling ``log_batch`` (1000
points a call) with the same points and ending them; then the bridge, one (its spools in sqlite, the default)
or several replicas sharing their spools in a PostgreSQL database (``--state``), fed by a load generator that
sends the runs as their jobs' ``otlp`` backends would (``tests.bridge_support.LoadGenerator``: the same spans,
``threads`` senders, every run in progress at once, each run kept on one replica). Time: from the first request
until every run is FINISHED in MLflow. Latency: from a request's acceptance until MLflow holds its last point
(each run's latest step is polled every 0.5 s, so figures under that are 0.5 s). Memory: the peak resident set
of the bridges and their delivery processes, and its growth over the idle bridges per run. "backed off": lines
in the bridges' logs that say the tracker was unavailable (a request that timed out says so). CPU: seconds used
by the load generator, by the bridges (receiving, and their delivery processes), and by MLflow's server and
PostgreSQL: everything shares the machine's cores, so where the server is CPU-bound the bridge's own CPU
lengthens the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import resident_mb

from tests.bridge_support import Bridge, LoadGenerator, wait_until
from tests.conftest import MlflowServer, PostgresServer
from tests.support import processes_below

POLL_S = 0.5


def ceiling(postgres: PostgresServer, server: MlflowServer, runs: int, scalars: int, threads: int, name: str) -> float:
    """Seconds for ``threads`` threads to create runs, log_batch the same points into them and end them."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    experiment = client.create_experiment(name)
    started = time.time()
    points = [Metric("loss", 1 / (step + 1), int((started + step / 1000) * 1000), step) for step in range(scalars)]

    def log(share: list[int]) -> None:
        for _ in share:
            run_id = client.create_run(experiment).info.run_id
            for start in range(0, scalars, 1000):
                client.log_batch(run_id, metrics=points[start:start + 1000])
            client.set_terminated(run_id)

    began, server_cpu = time.monotonic(), cpu_seconds([server.pid, postgres.pid])
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(log, list(range(runs))[index::threads]) for index in range(threads)]:
            done.result()
    used = cpu_seconds([server.pid, postgres.pid]) - server_cpu
    print(f"  (log_batch ceiling: MLflow and PostgreSQL used {used:.1f} CPU s)")
    return time.monotonic() - began


class Progress(threading.Thread):
    """Polls MLflow's tables: how many points each run holds, and the bridges' memory."""

    def __init__(self, database: str, project: str, pids: list[int]) -> None:
        super().__init__(daemon=True)
        import psycopg2

        self._connection = psycopg2.connect(database.replace("postgresql+psycopg2://", "postgresql://"))
        self._connection.autocommit = True
        self._project = project
        self._pids = pids
        self.reached: dict[str, list[tuple[float, int]]] = {}  # run id -> (time, points) when it grew
        self.finished = 0
        self.peak_mb = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        # MLflow's latest_metrics holds a row per run and key: cheap to read however many points are stored (a
        # count over the metrics table would load the database the bridge is measured against). The load's steps
        # follow its sequence numbers and a run is delivered in order, so its latest step says how far it is.
        while not self._done.wait(POLL_S):
            now = time.time()
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT t.value, l.step, r.status FROM runs r JOIN experiments e ON "
                               "e.experiment_id = r.experiment_id JOIN tags t ON t.run_uuid = r.run_uuid AND "
                               "t.key = 'tracelet.run_id' LEFT JOIN latest_metrics l ON l.run_uuid = r.run_uuid "
                               "AND l.key = 'loss' WHERE e.name = %s", (self._project,))
                rows = cursor.fetchall()
            self.finished = sum(1 for _, _, status in rows if status == "FINISHED")
            for run_id, step, _ in rows:
                points = 0 if step is None else step + 1
                history = self.reached.setdefault(run_id, [])
                if not history or history[-1][1] < points:
                    history.append((now, points))
            self.peak_mb = max(self.peak_mb, memory_mb(self._pids))

    def stop(self) -> None:
        self._done.set()
        self.join()
        self._connection.close()

    def latencies(self, accepted: list[tuple[str, int, float]]) -> list[float]:
        found = []
        for run_id, through, at in accepted:
            reached = next((when for when, points in self.reached.get(run_id, []) if points >= through), None)
            if reached is not None:
                found.append(max(POLL_S, reached - at))
        return found


def cpu_seconds(pids: list[int], below: bool = True) -> float:
    """CPU time the processes (and everything below them) used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        for process in [pid, *(processes_below(pid) if below else [])]:
            try:
                with open(f"/proc/{process}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
            except OSError:
                pass
    return total


def memory_mb(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        total += resident_mb(pid) + sum(resident_mb(child) for child in processes_below(pid))
    return total


def through_bridges(postgres: PostgresServer, server: MlflowServer, directory: str, runs: int, scalars: int,
                    replicas: int, threads: int, name: str) -> dict[str, float]:
    state = ("--state", postgres.database()) if replicas > 1 else ()
    bridges = []
    for number in range(replicas):
        folder = os.path.join(directory, f"{name}-bridge-{number}")
        os.makedirs(folder)
        bridges.append(Bridge(folder, server.uri, *state))
    try:
        for bridge in bridges:
            bridge.start()
        pids = [bridge.pid for bridge in bridges if bridge.pid]
        idle_mb = memory_mb(pids)
        load = LoadGenerator(runs, scalars, threads=threads, prefix=name)
        progress = Progress(server.database, name, pids)
        progress.start()
        began, generator_cpu = time.monotonic(), time.process_time()
        bridges_cpu, server_cpu = cpu_seconds(pids), cpu_seconds([server.pid, postgres.pid])
        receiving_cpu = cpu_seconds(pids, below=False)
        load.send(*(bridge.grpc for bridge in bridges))
        generator_cpu, sent = time.process_time() - generator_cpu, time.monotonic() - began
        wait_until(lambda: progress.finished == runs, 3600, "every run to be FINISHED")
        elapsed = time.monotonic() - began
        bridges_cpu, server_cpu = cpu_seconds(pids) - bridges_cpu, cpu_seconds([server.pid, postgres.pid]) - server_cpu
        receiving_cpu = cpu_seconds(pids, below=False) - receiving_cpu
        progress.stop()
        latencies = sorted(progress.latencies(load.accepted))
        backed_off = sum(bridge.read_log().count("unavailable") for bridge in bridges)
        return {"seconds": elapsed, "p50": statistics.median(latencies),
                "p99": latencies[int(0.99 * (len(latencies) - 1))], "peak_mb": progress.peak_mb,
                "per_run_mb": (progress.peak_mb - idle_mb) / runs, "backed_off": backed_off,
                "generator_cpu": generator_cpu, "sent": sent, "bridges_cpu": bridges_cpu,
                "receiving_cpu": receiving_cpu,
                "server_cpu": server_cpu}
    finally:
        for bridge in bridges:
            bridge.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--scalars", type=int, default=1000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--mlflow-workers", type=int, default=4)
    args = parser.parse_args()
    postgres = PostgresServer()
    postgres.start()
    directory = tempfile.mkdtemp(prefix="tracelet-bridge-load-")
    server = MlflowServer(directory, postgres.mlflow_database(), workers=args.mlflow_workers)
    try:
        server.start()
        print(f"{args.scalars} scalars a run, {args.threads} sending threads, mlflow server on PostgreSQL with "
              f"{args.mlflow_workers} workers; MLflow's own log_batch ceiling beside each")
        for runs in args.runs:
            records = runs * args.scalars
            raw = ceiling(postgres, server, runs, args.scalars, args.threads, f"raw-{runs}")
            print(f"\n{runs} runs, {records:,} records: log_batch ceiling {raw:.1f} s ({records / raw:,.0f} records/s)")
            for replicas in args.replicas:
                figures = through_bridges(postgres, server, directory, runs, args.scalars, replicas, args.threads,
                                          f"load-{runs}-{replicas}")
                label = "1 bridge (sqlite)" if replicas == 1 else f"{replicas} replicas (PostgreSQL state)"
                print(f"  {label:<28} {figures['seconds']:6.1f} s  {figures['seconds'] / raw:4.2f}x  (all sent after "
                      f"{figures['sent']:.1f} s)  "
                      f"{records / figures['seconds']:8,.0f} records/s  acceptance -> MLflow p50 "
                      f"{figures['p50']:.2f} s p99 {figures['p99']:.2f} s  memory peak {figures['peak_mb']:,.0f} MB "
                      f"(+{figures['per_run_mb']:.2f} MB a run)  backed off {figures['backed_off']:.0f}  CPU s: "
                      f"generator {figures['generator_cpu']:.1f}, bridges {figures['bridges_cpu']:.1f} (receiving "
                      f"{figures['receiving_cpu']:.1f}), MLflow and "
                      f"PostgreSQL {figures['server_cpu']:.1f}")
    finally:
        server.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
