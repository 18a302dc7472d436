"""``tracelet-otel``: the command line.

``tracelet-otel serve --backend mlflow [--backend wandb ...]`` receives OTLP from a collector and delivers the
records of every training job that sends with ``backend="otlp"`` (:mod:`tracelet_otel.bridge`).

``tracelet-otel sync LOGDIR --backend NAME`` imports existing TensorBoard event files into the backends, exactly
once however often it runs; ``--follow`` keeps reading them as a job writes (:mod:`tracelet_otel.sync`).

``tracelet-otel replay [SPOOL_DIR]`` delivers what earlier runs left behind (default ``./.tracelet``): records
journaled but never converted because the agent died, and records spooled but not delivered because the
backend was down past ``stop_timeout``. Each run is delivered into the very backend run it started, exactly
once, with a progress bar, and ended ``FINISHED`` if training had called ``stop_logging``, else ``KILLED``.
Runs another process is still delivering are left alone.

``tracelet-otel status [SPOOL_DIR]`` shows the runs there, in progress and left over: captured, spooled,
delivered, waiting and dropped per backend, the delivery lag, the last error, and what ``replay`` would send
(:mod:`tracelet_otel.status`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from tracelet_otel.config import parse_size
from tracelet_otel.delivery.processes import RUN_PROCESSES
from tracelet_otel.errors import RunBusy
from tracelet_otel.layout import leftover_runs
from tracelet_otel.reports import DeliveryReport

__all__ = ["main", "parser"]

_BAR_WIDTH = 30
TOKEN_VARIABLE = "TRACELET_OTEL_BRIDGE_TOKEN"  # the bridge's bearer token, when no --token-file names one


class _ProgressBar:
    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._total: dict[str, int] = {}

    def __call__(self, undelivered: dict[str, int]) -> None:
        for name, count in undelivered.items():
            self._total[name] = max(self._total.get(name, 0), count)
        parts = []
        for name, count in undelivered.items():
            total = self._total[name] or 1
            done = total - count
            filled = _BAR_WIDTH * done // total
            parts.append(f"{name} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{self._total[name]}")
        print(f"\r{self._run_id[:12]} " + "  ".join(parts), end="", file=sys.stderr, flush=True)


def replay(spool_dir: str, timeout: float) -> int:
    """Deliver every leftover run; the exit status is 0 when everything was delivered."""
    # Here, not at the top: `tracelet-otel serve` never needs the agent's stack (TensorBoard's protos among it).
    from tracelet_otel.agent import Agent

    failures = 0
    runs = leftover_runs(spool_dir)
    if not runs:
        print(f"tracelet-otel: nothing to replay in {spool_dir}", file=sys.stderr)
    for run in runs:
        run_id = run.run_id
        try:
            agent = Agent(run.path)
        except RunBusy as busy:  # started between the listing and now
            print(f"tracelet-otel: {busy}; skipped", file=sys.stderr)
            continue
        except Exception as error:  # the backend is unreachable: try again later
            print(f"tracelet-otel: run {run_id}: {error}", file=sys.stderr)
            failures += 1
            continue
        agent.follow(until_end=False)
        summary = agent.finish(timeout, _ProgressBar(run_id))
        print(file=sys.stderr)
        for name, body in summary["backends"].items():
            report = DeliveryReport.from_json(body)
            state = "delivered" if report.undelivered == 0 else f"{report.undelivered} still undelivered"
            print(f"tracelet-otel: run {run_id} -> {name} {report.run}: {state}, "
                  f"ended {report.finished or 'not yet'}", file=sys.stderr)
            failures += report.undelivered > 0
    return 1 if failures else 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracelet-otel", description="tracelet-otel command line")
    commands = parser.add_subparsers(dest="command", required=True)
    replay_parser = commands.add_parser("replay", help="deliver what earlier runs left in a spool directory")
    replay_parser.add_argument("spool_dir", nargs="?", default=".tracelet", help="default: ./.tracelet")
    replay_parser.add_argument("--timeout", type=float, default=3600.0,
                               help="seconds to keep trying per run (default: 3600)")
    status_parser = commands.add_parser("status", help="show the runs in a spool directory, in progress and left "
                                        "over, and what replay would send")
    status_parser.add_argument("spool_dir", nargs="?", default=".tracelet", help="default: ./.tracelet")
    _add_serve(commands)
    _add_sync(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "sync":
        return _sync(args)
    if args.command == "status":
        from tracelet_otel.status import format_states, run_states

        for line in format_states(args.spool_dir, run_states(args.spool_dir)):
            print(line)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return replay(args.spool_dir, args.timeout)


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="receive OTLP from a collector and deliver to the trackers",
                                description="Receive tracelet-otel records over OTLP (from a collector) and "
                                "deliver them to the backends. See docs/collector.md.")
    serve.add_argument("--backend", action="append", required=True,
                       help="a backend to deliver to (repeat for several); its options come from TRACELET_<OPTION> "
                       "or its own variables, such as MLFLOW_TRACKING_URI")
    serve.add_argument("--grpc-endpoint", default="127.0.0.1:4317", help="HOST:PORT (default 127.0.0.1:4317)")
    serve.add_argument("--http-endpoint", default="127.0.0.1:4318", help="HOST:PORT (default 127.0.0.1:4318)")
    serve.add_argument("--spool-dir", default=".tracelet-bridge",
                       help="spools and the runs' state, kept across restarts (default ./.tracelet-bridge)")
    serve.add_argument("--artifact-store", action="append", default=[],
                       help="a store the jobs' payloads may be read from, e.g. s3://bucket/prefix (repeatable); "
                       "payloads anywhere else are refused")
    serve.add_argument("--token-file", help=f"require 'authorization: Bearer <token>' with the token in this file "
                       f"(or in ${TOKEN_VARIABLE})")
    serve.add_argument("--tls-cert", help="serve both endpoints over TLS with this certificate (PEM)")
    serve.add_argument("--tls-key", help="the certificate's private key (PEM)")
    serve.add_argument("--max-request-size", default="16MiB", help="larger requests are refused (default 16MiB)")
    serve.add_argument("--silence-timeout", type=float, default=3600.0,
                       help="end a run KILLED when its job sent nothing for this many seconds (default 3600)")
    serve.add_argument("--state", metavar="postgresql://HOST:PORT/DATABASE",
                       help="keep the spools and the runs' state in this PostgreSQL database, shared by every "
                       "replica behind one collector (password from PGPASSWORD or ~/.pgpass); default: files in "
                       "--spool-dir")
    serve.add_argument("--delivery-processes", type=int, default=RUN_PROCESSES, metavar="N",
                       help="for a tracker whose SDK holds one run per process (ClearML): deliver up to N runs at "
                       f"once, from N processes that take turns when more runs wait (default {RUN_PROCESSES})")


def _serve(args: argparse.Namespace) -> int:
    from tracelet_otel.bridge import BridgeConfig, parse_endpoint, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token = os.environ.get(TOKEN_VARIABLE)
    if args.token_file:
        with open(args.token_file) as file:
            token = file.read().strip()
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("tracelet-otel serve: --tls-cert and --tls-key go together")
    size = parse_size(args.max_request_size)
    assert size is not None
    return serve(BridgeConfig(
        backends=tuple(dict.fromkeys(args.backend)), grpc_endpoint=parse_endpoint(args.grpc_endpoint),
        http_endpoint=parse_endpoint(args.http_endpoint), spool_dir=args.spool_dir,
        artifact_stores=tuple(args.artifact_store), token=token or None, tls_cert=args.tls_cert,
        tls_key=args.tls_key, max_request_bytes=size, silence_s=args.silence_timeout, state=args.state,
        delivery_processes=args.delivery_processes))



def _add_sync(commands: Any) -> None:
    sync = commands.add_parser("sync", help="import TensorBoard event files into the backends, exactly once",
                               description="Read every TensorBoard event file under LOGDIR (a directory or an "
                               "fsspec URL) and deliver it; a second sync delivers only what is new. See "
                               "docs/sync.md.")
    sync.add_argument("logdir", help="a directory or fsspec URL (s3://bucket/runs)")
    sync.add_argument("--backend", action="append", required=True,
                      help="a backend to deliver to (repeat for several); its options come from TRACELET_<OPTION> "
                      "or its own variables, such as MLFLOW_TRACKING_URI")
    sync.add_argument("--project", help="the backends' project (MLflow's experiment); default: each backend's own")
    sync.add_argument("--run-depth", type=int, default=1,
                      help="runs are the directories this many levels below LOGDIR (default 1)")
    sync.add_argument("--follow", action="store_true",
                      help="keep reading new runs, files and events until SIGINT or SIGTERM")
    sync.add_argument("--spool-dir", default=".tracelet-sync",
                      help="what was read and what waits, kept across syncs (default ./.tracelet-sync)")
    sync.add_argument("--artifact-store", help="where payloads are stored (default: each run's folder in the "
                      "spool dir); with --backend otlp, a store the bridge can read, such as s3://bucket/prefix")
    sync.add_argument("--timeout", type=float, default=3600.0,
                      help="seconds to wait for delivery at the end (default 3600); what is left waits for the "
                      "next sync")


def _sync(args: argparse.Namespace) -> int:
    from tracelet_otel._backend import load_backend
    from tracelet_otel.config import Options
    from tracelet_otel.sync import Sync, SyncSettings

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    backends = tuple(dict.fromkeys(args.backend))
    types = {name: kind for backend in backends for name, kind in load_backend(backend).options.items()}
    config = {"artifact_store": args.artifact_store} if args.artifact_store else None
    options = Options.resolve(config, types)
    settings = SyncSettings(logdir=args.logdir, backends=backends, project=args.project, spool_dir=args.spool_dir,
                            run_depth=args.run_depth, options=options)
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    sync = Sync(settings, dict(options.backend_options or {}))
    if args.follow:
        sync.follow(stop)
    else:
        sync.read(complete=True)
    summaries = sync.finish(args.timeout)
    if not summaries:
        print(f"tracelet-otel sync: no event files under {args.logdir}", file=sys.stderr)
    waiting = 0
    for summary in summaries:
        delivered = ", ".join(f"{name} {count} delivered" + (f", {summary.waiting[name]} waiting"
                                                                if summary.waiting[name] else "")
                              for name, count in summary.delivered.items())
        print(f"tracelet-otel sync: run {summary.name}: {summary.events} events read, {summary.records} records; "
              f"{delivered}", file=sys.stderr)
        for reason, count in sorted({**summary.skipped, **{f"dropped by {name}: {reason}": count
                                                            for name, dropped in summary.dropped.items()
                                                            for reason, count in dropped.items()}}.items()):
            print(f"  skipped {count}: {reason}", file=sys.stderr)
        for damage in summary.damage:
            print(f"  damaged: {damage}", file=sys.stderr)
        waiting += sum(summary.waiting.values())
    if waiting:
        print(f"tracelet-otel sync: {waiting} records are still waiting; the next sync delivers them first",
              file=sys.stderr)
    return 1 if waiting else 0


if __name__ == "__main__":
    sys.exit(main())
