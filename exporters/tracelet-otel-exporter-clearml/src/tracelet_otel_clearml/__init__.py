"""ClearML backend for tracelet-otel: ``start_logging(backend="clearml")`` (entry point ``clearml`` in the
``tracelet_otel_backends`` group).

The run is a ClearML task: project = ``project``, task name = ``exp_name``, opened by the delivery worker with
ClearML's own configuration (``clearml.conf``, ``CLEARML_*`` variables; ``CLEARML_OFFLINE_MODE=1`` writes an
offline session to ``$CLEARML_CACHE_DIR/offline/offline-<id>/``, which ``clearml-task --import-offline-session``
or ``Task.import_offline_session`` uploads later).

How records map to ClearML (see ``_translate``):

* title / series: a tag is split at its last ``/`` (``Loss/Train/CrossEntropy`` -> title ``Loss/Train``,
  series ``CrossEntropy``), like ClearML's TensorBoard binding; a tag without ``/`` is both title and series.
* iteration = TensorBoard's step (every step is kept, also repeated and decreasing ones; a ClearML *server*
  keeps one value per title, series and iteration: the last one sent).
* scalars -> ``report_scalar``. NaN and +/-inf cannot be stored by ClearML (its SDK would send 0.0): such a
  value is not plotted but written to the console log as ``tracelet-otel: scalar 'tag' is nan at step 7``.
* images and figures -> debug samples (``report_image``, the PNG as TensorBoard encoded it); audio (WAV) and
  video (GIF) -> debug samples (``report_media``); every sample is kept (no history limit).
* histograms -> a bar plot per step (``report_histogram``): the bars TensorBoard's own view draws.
* text -> the console log (``report_text``), as ``<tag> (step <step>): <text>``.
* hparams -> hyperparameter section ``TB_hparams`` (``task.connect``, as ClearML's binding names it; a later
  value replaces an earlier one); their metrics are scalars like any other; each ``add_hparams`` call's values
  -> artifact ``hparams/<writer>/<run>.json``.
* PR curves -> a precision/recall line plot (``report_scatter2d``); graphs, embeddings, meshes, custom scalar
  layouts and other tensors -> artifacts ``<graphs|embeddings|meshes|custom_scalars|tensors>/<tag>/step_<n>...``.
* the training process, not the delivery worker, is what the task records as its script (repository, branch,
  commit, working directory, entry point) and, as user properties, ``training_command``, ``training_user``,
  ``training_host``, ``training_pid``, ``training_cwd`` (and ``training_rank``).
* every scalar, plot and debug sample carries TensorBoard's wall time as its timestamp.
* our bookkeeping (run id, sessions, what was stored, the end status) is out of the user's sight: online the
  task's runtime properties, offline ``tracelet.json`` in the session folder.

:mod:`tracelet_otel_clearml.testing` reads an offline session back for tests.
"""

from tracelet_otel_clearml._run import ClearmlBackend, ClearmlRun
from tracelet_otel_clearml._translate import title_series, translate
from tracelet_otel_clearml.version import __version__

__all__ = ["ClearmlBackend", "ClearmlRun", "__version__", "title_series", "translate"]
