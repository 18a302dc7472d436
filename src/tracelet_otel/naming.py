"""How writers and tags become record names.

* The root is ``tensorboard_log_dir``, else the logdir of the first writer that writes. Its tags stay verbatim.
* Any other writer is namespaced by its logdir relative to the root, or, outside the root, relative to the
  directory both share: with root ``runs/train``, a writer in ``runs/validation`` writes ``validation/loss``.
* ``add_scalars("group", {"a": ...})`` writes ``group/a`` in the namespace of the writer it was called on
  (TensorBoard itself puts each entry in a writer of its own).
* ``add_hparams`` metrics keep their tags, in the namespace of the writer it was called on.

Event files read from disk (``tracelet-otel sync``) carry no call: :func:`call_of_event_file` tells the writers
``add_scalars`` and ``add_hparams`` made from where they are and what they hold, so that a logdir synced later
gets the names it got when it was logged live.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WriterName", "WriterNames", "call_of_event_file"]


@dataclass(frozen=True, slots=True)
class WriterName:
    writer: str  # the namespace, "" for the root
    scalars_tag: str | None = None  # set for add_scalars writers: "group/a"
    hparams_run: str | None = None  # set for add_hparams writers: the run name TensorBoard gave the call

    def tag(self, event_tag: str) -> str:
        tag = self.scalars_tag or event_tag
        return f"{self.writer}/{tag}" if self.writer else tag


class WriterNames:
    def __init__(self, root: str | None) -> None:
        self.root = os.path.abspath(root) if root else None

    def resolve(self, logdir: str, call: Sequence[Any] | None) -> WriterName:
        logdir = os.path.abspath(logdir)
        if call and call[0] == "scalars":
            parent, key = _scalars_parent(logdir, call[1], call[2])
            if parent is not None:
                return WriterName(self._namespace(parent), f"{call[1]}/{key}")
        if call and call[0] == "hparams":
            return WriterName(self._namespace(os.path.dirname(logdir)), hparams_run=os.path.basename(logdir))
        return WriterName(self._namespace(logdir))

    def _namespace(self, logdir: str) -> str:
        if self.root is None:
            self.root = logdir
        if logdir == self.root:
            return ""
        base = self.root if _is_within(logdir, self.root) else os.path.commonpath([self.root, logdir])
        return os.path.relpath(logdir, base).replace(os.sep, "/")


def _is_within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _scalars_parent(logdir: str, main_tag: str, keys: Sequence[str]) -> tuple[str | None, str | None]:
    """The writer add_scalars was called on, from the logdir of the writer it made for one key.

    torch names it ``<logdir>/<main_tag with / as _>_<key>``, tensorboardX ``<logdir>/<main_tag>/<key>``.
    """
    best: tuple[str | None, str | None] = (None, None)
    for key in keys:
        for suffix in ("/" + main_tag.replace("/", "_") + "_" + key, "/" + os.path.join(main_tag, key)):
            suffix = os.path.normpath(suffix) if "/" in key or "/" in main_tag else suffix
            if logdir.endswith(suffix) and (best[1] is None or len(key) > len(best[1])):
                best = (logdir[: -len(suffix)], key)
    return best


def call_of_event_file(writer_dir: str, first_tag: str | None, first_plugin: str | None) -> tuple[Any, ...] | None:
    """The ``SummaryWriter`` call that made an event file's writer, as the capture would have seen it.

    ``writer_dir`` is the file's directory relative to the root (``""`` for the root itself), ``first_tag`` and
    ``first_plugin`` those of its first summary value. ``add_hparams`` wrote a directory of its own that starts
    with the hparams plugin's data; ``add_scalars`` one per key, named ``<main tag, "/" as "_">_<key>`` (torch) or
    ``<main tag>/<key>`` (tensorboardX), whose values are tagged with the main tag.
    """
    if not writer_dir or first_tag is None:
        return None
    if first_plugin == "hparams":
        return ("hparams",)
    parent, _, last = writer_dir.rpartition("/")
    torch_prefix = first_tag.replace("/", "_") + "_"
    keys = []
    if last.startswith(torch_prefix) and last != torch_prefix:
        keys.append(last.removeprefix(torch_prefix))
    if parent == first_tag or parent.endswith("/" + first_tag):
        keys.append(last)
    return ("scalars", first_tag, keys) if keys else None
