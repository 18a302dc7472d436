"""The picture of a histogram for MLflow's image view (its bars are ``Histogram.bars``: tests/test_histograms.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard.summary import histogram
from torch.utils.tensorboard.writer import SummaryWriter

from tracelet_otel.payloads import Histogram
from tracelet_otel_mlflow._histogram_picture import HEIGHT, THUMBNAIL_WIDTH, WIDTH, histogram_pictures


@pytest.fixture(scope="module")
def default_bins(tmp_path_factory) -> list[float]:
    """``add_histogram``'s default buckets: exponential, +-1e-12 * 1.1**k."""
    with SummaryWriter(str(tmp_path_factory.mktemp("runs"))) as writer:
        return list(writer.default_bins)


@pytest.fixture
def tensorboard_histogram(default_bins):
    """What tracelet-otel stores for ``add_histogram(values)``: TensorBoard's buckets as JSON."""
    def build(values: np.ndarray) -> Histogram:
        histo = histogram("h", values, bins=default_bins).value[0].histo
        return Histogram.from_json({"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum,
                                    "sum_squares": histo.sum_squares, "bucket_limit": list(histo.bucket_limit),
                                    "bucket": list(histo.bucket)})
    return build


@pytest.mark.parametrize("values", [np.random.default_rng(2).normal(size=1000), np.zeros(10), np.array([7.0])])
def test_the_picture_and_its_thumbnail_have_the_documented_sizes(values, tensorboard_histogram):
    picture, thumbnail = (Image.open(io.BytesIO(data)) for data in histogram_pictures(tensorboard_histogram(values)))
    assert (picture.format, picture.size) == ("PNG", (WIDTH, HEIGHT))
    assert (thumbnail.format, thumbnail.width) == ("WEBP", THUMBNAIL_WIDTH)
