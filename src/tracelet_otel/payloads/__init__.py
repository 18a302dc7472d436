"""Payloads, in one place: where they are stored (:mod:`.store`), how a backend reads them and files them
(:mod:`.files`), and the one histogram model every tracker draws from (:mod:`.histograms`)."""

from tracelet_otel.payloads.files import (
    PAYLOAD_FOLDERS,
    PayloadPath,
    local_file,
    payload_path,
    read_blob,
    read_histogram,
    read_json,
    save_blob,
)
from tracelet_otel.payloads.histograms import BARS, Bars, Bucket, Histogram
from tracelet_otel.payloads.store import EXTENSIONS, ArtifactStore, RunPayloadStore, blob_path, extension

__all__ = ["BARS", "EXTENSIONS", "PAYLOAD_FOLDERS", "ArtifactStore", "Bars", "Bucket", "Histogram", "PayloadPath",
           "RunPayloadStore", "blob_path", "extension", "local_file", "payload_path", "read_blob", "read_histogram",
           "read_json", "save_blob"]
