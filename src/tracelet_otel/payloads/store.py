"""Content-addressed storage for payloads (images, audio, histograms, graphs, ...).

Records carry a :class:`~tracelet_otel.records.Blob` (URI, sha256, media type, size) instead of the bytes, so span
events stay small. A payload is stored at ``<store>/<sha256[:2]>/<sha256><extension>`` (:func:`blob_path`); the
bridge refuses a reference anywhere else. A store the user names (``artifact_store``: a directory, or any fsspec
URL such as ``s3://bucket/tb``, so that a process on another machine can read the payloads a training job
stored) is theirs: nothing in it is ever removed. By default each run has a :class:`RunPayloadStore` in its own
directory, which holds a payload only until every backend of the run has it (``docs/durability.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable

import fsspec

from tracelet_otel.errors import PayloadStoreFull
from tracelet_otel.records import Blob

__all__ = ["EXTENSIONS", "ArtifactStore", "RunPayloadStore", "blob_path", "extension"]

EXTENSIONS = {
    "image/png": ".png",
    "image/gif": ".gif",
    "image/jpeg": ".jpg",
    "audio/wav": ".wav",
    "text/plain": ".txt",
    "text/tab-separated-values": ".tsv",
    "application/json": ".json",
    "application/x-npy": ".npy",
    "text/x-protobuf": ".pbtxt",
}
_PARTIAL = ".partial"


def extension(media_type: str) -> str:
    """The file extension of a payload of ``media_type`` (``.bin`` for one without its own)."""
    return EXTENSIONS.get(media_type, ".bin")


def blob_path(sha256: str, media_type: str) -> str:
    """Where a payload lies in its store, relative to the store's root."""
    return f"{sha256[:2]}/{sha256}{extension(media_type)}"


class ArtifactStore:
    def __init__(self, root: str) -> None:
        self._fs, path = fsspec.core.url_to_fs(root)
        self._root = path.rstrip("/")

    def put(self, data: bytes, media_type: str) -> Blob:
        """Store ``data`` once (same content, same place) and return its reference."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest, media_type)
        if not self._fs.exists(path):
            self._write(path, data)
        return self._blob(path, digest, media_type, len(data))

    def _path(self, digest: str, media_type: str) -> str:
        return f"{self._root}/{blob_path(digest, media_type)}"

    def _write(self, path: str, data: bytes) -> None:
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{path}.{uuid.uuid4().hex}{_PARTIAL}"  # readers never see half a file
        with self._fs.open(partial, "wb") as file:
            file.write(data)
        self._fs.mv(partial, path)

    def _blob(self, path: str, digest: str, media_type: str, size: int) -> Blob:
        return Blob(uri=self._fs.unstrip_protocol(path), sha256=digest, media_type=media_type, size=size)


class RunPayloadStore(ArtifactStore):
    """The default store: a local directory inside one run's directory, written and cleaned by that run's agent.

    One store per run, so no other run ever shares a file (two runs logging the same image each have a copy
    for as long as they need it), and removing the run's directory removes whatever is left. The agent removes
    a payload as soon as no backend's spool waits for it (:meth:`remove_unless`); it puts and removes on one
    thread, so a payload put for a record that is not spooled yet is never removed under it. The payloads held
    take at most ``max_bytes``; past it :meth:`put` raises :class:`~tracelet_otel.errors.PayloadStoreFull`.
    """

    def __init__(self, root: str, max_bytes: int | None) -> None:
        super().__init__(root)
        self._max_bytes = max_bytes
        self._held: dict[str, tuple[str, int]] = {}  # path -> (sha256, size)
        self.held_bytes = 0
        self._find_held()

    def _find_held(self) -> None:
        """What an earlier agent of the run left (it was restarted, or this is a replay)."""
        for directory, _, names in os.walk(self._root):
            for name in names:
                path = os.path.join(directory, name)
                if name.endswith(_PARTIAL):  # a write a crash interrupted: no record references it
                    os.remove(path)
                else:
                    self._hold(path, name.split(".", 1)[0], os.path.getsize(path))

    def _hold(self, path: str, digest: str, size: int) -> None:
        self._held[path] = (digest, size)
        self.held_bytes += size

    def put(self, data: bytes, media_type: str) -> Blob:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest, media_type)
        if path not in self._held:
            if self._max_bytes is not None and self.held_bytes + len(data) > self._max_bytes:
                raise PayloadStoreFull(f"payloads waiting for delivery take {self.held_bytes} bytes")
            self._write(path, data)
            self._hold(path, digest, len(data))
        return self._blob(path, digest, media_type, len(data))

    def remove_unless(self, waited_for: Callable[[str], bool]) -> None:
        """Remove every payload whose hash ``waited_for`` says no record waits for any more."""
        for path, (digest, size) in list(self._held.items()):
            if not waited_for(digest):
                with contextlib.suppress(FileNotFoundError):  # removed by hand meanwhile
                    os.remove(path)
                del self._held[path]
                self.held_bytes -= size
