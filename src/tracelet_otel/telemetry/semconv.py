"""Names of the OpenTelemetry data tracelet-otel produces; ``docs/semantic-conventions.md`` documents each."""

SPAN_NAME = "tensorboard.records"
EVENT_PREFIX = "tensorboard."  # + RecordKind value: tensorboard.scalar, tensorboard.image, ...

TAG = "tensorboard.tag"
ORIGINAL_TAG = "tensorboard.original_tag"
STEP = "tensorboard.step"
WALL_TIME = "tensorboard.wall_time"
WRITER = "tensorboard.writer"
VALUE = "tensorboard.value"
PARAMS = "tensorboard.hparams"
FILENAME = "tensorboard.filename"
BLOB_URI = "tracelet.blob.uri"
BLOB_SHA256 = "tracelet.blob.sha256"
BLOB_MEDIA_TYPE = "tracelet.blob.media_type"
BLOB_SIZE = "tracelet.blob.size"
RANK = "tracelet.rank"
TEXT = "tracelet.console.text"  # a console line (tensorboard.console events)

# Spans of the agent's own: how far the source of their records (the capture journal) has been read. Exporters keep
# it in the same transaction as the records; it never leaves the process (the otlp backend builds spans anew).
SOURCE = "tracelet.source"
SOURCE_OFFSET = "tracelet.source.offset"

# The otlp backend: each record's place in its run (the receiver stores a record once per run and sequence),
# and the run's end, an event on a span of its own.
RECORD_SEQ = "tracelet.record.seq"
RUN_SPAN_NAME = "tracelet.run"
RUN_END_EVENT = "tracelet.run.end"
RUN_STATUS = "tracelet.run.status"
RUN_RECORDS = "tracelet.run.records"

RESOURCE_PROJECT = "tracelet.project"
RESOURCE_EXPERIMENT = "tracelet.experiment"
RESOURCE_RUN_ID = "tracelet.run_id"

METRIC_SCALAR = "tensorboard.scalar"
METRIC_RECORDS = "tensorboard.records"
METRIC_DELIVERY = "tracelet.delivery.records"
METRIC_BRIDGE_RECORDS = "tracelet.bridge.records"
METRIC_BRIDGE_WAITING = "tracelet.bridge.waiting"
