"""Content-addressed storage for payloads (images, audio, histograms, graphs, ...).

Records carry a :class:`~tracelet_otel.records.Blob` (URI, sha256, media type, size) instead of the bytes, so span
events stay small. The store is a local directory by default; any fsspec URL works too (``s3://bucket/tb``),
so that a process on another machine (an OTLP receiver behind a collector) can read the payloads a training
job stored.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import fsspec

from tracelet_otel.records import Blob

__all__ = ["EXTENSIONS", "ArtifactStore", "read_blob"]

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


class ArtifactStore:
    def __init__(self, root: str) -> None:
        self._fs, path = fsspec.core.url_to_fs(root)
        self._root = path.rstrip("/")

    def put(self, data: bytes, media_type: str) -> Blob:
        """Store ``data`` once (same content, same place) and return its reference."""
        digest = hashlib.sha256(data).hexdigest()
        path = f"{self._root}/{digest[:2]}/{digest}{EXTENSIONS.get(media_type, '.bin')}"
        if not self._fs.exists(path):
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            partial = f"{path}.{uuid.uuid4().hex}.partial"  # readers never see half a file
            with self._fs.open(partial, "wb") as file:
                file.write(data)
            self._fs.mv(partial, path)
        return Blob(uri=self._fs.unstrip_protocol(path), sha256=digest, media_type=media_type, size=len(data))


def read_blob(blob: Blob) -> bytes:
    with fsspec.open(blob.uri, "rb") as file:
        return file.read()


def local_path(blob: Blob) -> str | None:
    """The blob's file on this machine, when it is local."""
    fs, path = fsspec.core.url_to_fs(blob.uri)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return path if "file" in protocols and os.path.exists(path) else None
