"""What the bridge lets through: payloads only from the artifact stores it was told to trust, and names that
cannot climb out of a folder.

A payload reference must be exactly where a tracelet-otel job's content-addressed store puts it
(``tracelet_otel.payloads.blob_path``), in one of the trusted stores; anything else (``file:///etc/passwd``,
a ``../`` path, another bucket) is refused before anything is fetched. For a store on this machine the file must
also resolve, links followed, inside the store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec

from tracelet_otel.payloads import blob_path
from tracelet_otel.records import Record
from tracelet_otel.reports import DropReason

__all__ = ["TrustedStores"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class _Store:
    url: str  # as the job's ArtifactStore writes references: fsspec's unstripped form of the store's root
    local_root: str | None  # the resolved directory, for a store on this machine


class TrustedStores:
    def __init__(self, urls: Sequence[str]) -> None:
        self._stores = [self._store(url) for url in urls]

    @staticmethod
    def _store(url: str) -> _Store:
        fs, path = fsspec.core.url_to_fs(url)
        root = path.rstrip("/")
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        return _Store(fs.unstrip_protocol(root), os.path.realpath(root) if "file" in protocols else None)

    @property
    def urls(self) -> list[str]:
        return [store.url for store in self._stores]

    def refusal(self, record: Record) -> tuple[str, str] | None:
        """Why the record must not be delivered, as (kind of refusal, detail), or None."""
        if record.filename is not None and not _plain_file_name(record.filename):
            return DropReason.UNSAFE_FILE_NAME, f"file name {record.filename[:200]!r} is not a plain file name"
        if any(segment in ("..", ".") for segment in record.writer.split("/")) or record.writer.startswith("/"):
            return DropReason.UNSAFE_WRITER, f"writer {record.writer[:200]!r} is not a relative path"
        blob = record.blob
        if blob is None:
            return None
        if not _SHA256.match(blob.sha256):
            return DropReason.UNTRUSTED_PAYLOAD, f"payload sha256 {blob.sha256[:80]!r} is not a sha256"
        relative = blob_path(blob.sha256, blob.media_type)
        for store in self._stores:
            if blob.uri == f"{store.url}/{relative}":
                if store.local_root is None or _inside(os.path.join(store.local_root, relative), store.local_root):
                    return None
                return DropReason.UNTRUSTED_PAYLOAD, f"payload {blob.uri[:200]} leads out of its store"
        return DropReason.UNTRUSTED_PAYLOAD, f"payload {blob.uri[:200]} is not in a trusted artifact store"


def _plain_file_name(name: str) -> bool:
    return name not in ("", ".", "..") and not any(character in name for character in "/\\\0") and len(name) <= 255


def _inside(path: str, root: str) -> bool:
    return os.path.realpath(path).startswith(root.rstrip("/") + "/")
