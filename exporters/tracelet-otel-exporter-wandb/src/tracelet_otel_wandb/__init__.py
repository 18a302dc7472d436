"""Weights & Biases backend for tracelet-otel.

:class:`WandbBackend` is what ``start_logging(backend="wandb")`` uses (entry point ``wandb`` in the
``tracelet_otel_backends`` group); it runs in the delivery worker process, never in the training process.

How records map to W&B (details in ``_translate``):

* Scalars -> history rows without ``step=``: each row carries ``global_step`` = the TensorBoard step, the step
  metric of every key (``define_metric``), so repeated and backward steps are all kept and charts use the
  TensorBoard step as x-axis. Records of one step share a row where their tags differ. A row's ``_timestamp``
  is the TensorBoard wall time of its latest record. Keys are the tags, ``/`` hierarchy kept.
* Images -> ``wandb.Image``, videos -> ``wandb.Video`` (GIF), audio -> ``wandb.Audio`` (WAV), histograms ->
  ``wandb.Histogram`` of the bars TensorBoard's own view draws, text -> ``wandb.Html``, PR curves ->
  ``wandb.Table``, each in the row of its step.
* the captured writers' event files -> files of the run, saved when it ends (``wandb_event_files``).
* hparams -> the run config (their metrics are scalars); each call's values also as
  ``hparams/<writer>/<run>.json``. Graphs, embeddings, meshes, custom scalar layouts and tensors -> files
  under ``graphs/``, ``embeddings/``, ``meshes/``, ``custom_scalars/``, ``tensors/`` in the run.
* The summary value ``_tracelet_delivered_seq`` records what was delivered, so a reopened run is never sent a
  batch twice (see :class:`WandbRun` for what that cannot guarantee, and ``WandbRun.flush`` for durability).

:mod:`tracelet_otel_wandb.testing` reads an offline run back for tests: history rows, config, summary, files.
"""

from tracelet_otel_wandb._run import DELIVERED_SEQ_KEY, WandbBackend, WandbRun
from tracelet_otel_wandb._translate import translate, wandb_key
from tracelet_otel_wandb.version import __version__

__all__ = ["DELIVERED_SEQ_KEY", "WandbBackend", "WandbRun", "__version__", "translate", "wandb_key"]
