"""For tests: what W&B stored, read back from an offline run's transaction log (``run-<id>.wandb``)."""

from tracelet_otel_wandb._transaction_log import RunContents, read_run, run_directories

__all__ = ["RunContents", "read_run", "run_directories"]
