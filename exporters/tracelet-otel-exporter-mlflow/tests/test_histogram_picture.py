"""The picture of a histogram: TensorBoard's buckets over equal bars, every count kept."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard.summary import histogram
from torch.utils.tensorboard.writer import SummaryWriter

from tracelet_otel_mlflow._histogram_picture import (
    BARS,
    HEIGHT,
    THUMBNAIL_WIDTH,
    WIDTH,
    bar_counts,
    histogram_pictures,
)


@pytest.fixture(scope="module")
def default_bins(tmp_path_factory) -> list[float]:
    """``add_histogram``'s default buckets: exponential, +-1e-12 * 1.1**k."""
    with SummaryWriter(str(tmp_path_factory.mktemp("runs"))) as writer:
        return list(writer.default_bins)


@pytest.fixture
def tensorboard_histogram(default_bins):
    """What tracelet-otel stores for ``add_histogram(values)``: TensorBoard's buckets as JSON."""
    def build(values: np.ndarray) -> dict:
        histo = histogram("h", values, bins=default_bins).value[0].histo
        return {"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum,
                "sum_squares": histo.sum_squares, "bucket_limit": list(histo.bucket_limit),
                "bucket": list(histo.bucket)}
    return build


def test_the_bars_span_min_to_max_and_keep_every_count(tensorboard_histogram):
    values = np.random.default_rng(0).normal(3.0, 2.0, size=5000)
    edges, counts = bar_counts(tensorboard_histogram(values))
    assert (len(counts), edges[0], edges[-1]) == (BARS, values.min(), values.max())
    assert counts.sum() == pytest.approx(5000)


def test_exponential_buckets_are_drawn_as_the_datas_shape_not_the_buckets_widths(tensorboard_histogram):
    """Uniform data has flat bars, although TensorBoard's buckets near zero are thousands of times narrower."""
    values = np.random.default_rng(1).uniform(-1.0, 1.0, size=200_000)
    _, counts = bar_counts(tensorboard_histogram(values))
    assert counts == pytest.approx(np.full(BARS, 200_000 / BARS), rel=0.1)


def test_a_histogram_of_one_value_is_one_bar_in_the_middle(tensorboard_histogram):
    edges, counts = bar_counts(tensorboard_histogram(np.zeros(100)))
    assert counts[BARS // 2] == 100 and counts.sum() == 100
    assert edges[BARS // 2] < 0 < edges[BARS // 2 + 1]


@pytest.mark.parametrize("values", [np.random.default_rng(2).normal(size=1000), np.zeros(10), np.array([7.0])])
def test_the_picture_and_its_thumbnail_have_the_documented_sizes(values, tensorboard_histogram):
    picture, thumbnail = (Image.open(io.BytesIO(data)) for data in histogram_pictures(tensorboard_histogram(values)))
    assert (picture.format, picture.size) == ("PNG", (WIDTH, HEIGHT))
    assert (thumbnail.format, thumbnail.width) == ("WEBP", THUMBNAIL_WIDTH)
