"""MLflow's image view: how images logged with a key and a step are stored, and how MLflow reads them back.

``MlflowClient.log_image(run_id, image, key=, step=, timestamp=)`` stores
``images/<key, "/" as "~">+step+<step>+timestamp+<ms>+<uuid>.png`` and a thumbnail ``...+compressed.webp``, and
sets the run tag ``mlflow.loggedImages``. The run page's "Model metrics" tab lists ``images/`` and shows a chart
per key with a step slider. Older MLflow versions wrote ``%`` for ``+`` and ``#`` for ``~``; its UI reads both, and
so does :func:`logged_images`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["IMAGES_FOLDER", "LoggedImage", "image_file_stem", "logged_images"]

IMAGES_FOLDER = "images"
_THUMBNAIL = "compressed"  # the last field of a thumbnail's name
_SEPARATOR = re.compile(r"[+%]")


@dataclass(frozen=True)
class LoggedImage:
    """One image of a run's image view; paths are relative to the run's artifacts."""

    key: str
    step: int
    timestamp_ms: int
    path: str
    thumbnail_path: str | None


def image_file_stem(key: str, step: int, timestamp_ms: int, unique: str) -> str:
    """The file name, without extension, that ``log_image`` gives an image; ``unique`` takes the uuid's place."""
    return f"{key.replace('/', '~')}+step+{step}+timestamp+{timestamp_ms}+{unique}"


def logged_images(client: Any, run_id: str) -> list[LoggedImage]:
    """The images in a run's image view, read from their file names the way MLflow's UI reads them.

    Args:
        client: an ``mlflow.tracking.MlflowClient``.
        run_id: the MLflow run.

    Returns:
        One entry per image file (a thumbnail belongs to its image), sorted by key, step and timestamp.
    """
    images: dict[str, dict[str, Any]] = {}
    for item in client.list_artifacts(run_id, IMAGES_FOLDER):
        stem, _, extension = item.path.rsplit("/", 1)[-1].rpartition(".")
        fields = _SEPARATOR.split(stem)
        if item.is_dir or extension not in ("png", "webp") or fields[1:2] != ["step"] or fields[3:4] != ["timestamp"]:
            continue  # a sub-folder (the images/<tag>/step_<n>.png copies), or no image of the view
        if fields[-1] == _THUMBNAIL:
            images.setdefault(stem[: -len(_THUMBNAIL) - 1], {})["thumbnail_path"] = item.path
        else:
            images.setdefault(stem, {}).update(key=re.sub("[~#]", "/", fields[0]), step=int(fields[2]),
                                               timestamp_ms=int(fields[4]), path=item.path)
    found = [LoggedImage(entry["key"], entry["step"], entry["timestamp_ms"], entry["path"], entry.get("thumbnail_path"))
             for entry in images.values() if "path" in entry]  # a thumbnail without its image is not shown
    return sorted(found, key=lambda image: (image.key, image.step, image.timestamp_ms, image.path))
