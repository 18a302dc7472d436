"""One histogram model for every tracker: TensorBoard's own buckets, and the bars TensorBoard's own view draws."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from tensorboard import data_compat
from tensorboard.util import tensor_util
from torch.utils.tensorboard.summary import histogram, histogram_raw
from torch.utils.tensorboard.writer import SummaryWriter

from tracelet_otel.payloads import BARS, Histogram

DBL_MAX = sys.float_info.max


@pytest.fixture(scope="module")
def default_bins(tmp_path_factory) -> list[float]:
    """``add_histogram``'s default buckets: exponential, +-1e-12 * 1.1**k, with +-DBL_MAX outermost."""
    with SummaryWriter(str(tmp_path_factory.mktemp("runs"))) as writer:
        return list(writer.default_bins)


def payload(value) -> dict:
    """What tracelet-otel stores for a histogram summary value: TensorBoard's buckets as JSON."""
    histo = value.histo
    return {"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum, "sum_squares": histo.sum_squares,
            "bucket_limit": list(histo.bucket_limit), "bucket": list(histo.bucket)}


def tensorboards_buckets(value) -> np.ndarray:
    """How TensorBoard itself reads a torch histogram (``tensorboard.data_compat``): (left, right, count) rows."""
    return tensor_util.make_ndarray(data_compat.migrate_value(value).tensor)


@pytest.mark.parametrize("values", [np.random.default_rng(0).normal(3.0, 2.0, size=5000), np.zeros(100),
                                    np.array([-7.5]), np.random.default_rng(1).uniform(-1e-9, 1e-9, size=50)])
def test_buckets_are_the_ones_tensorboard_reads(values, default_bins):
    value = histogram("h", values, bins=default_bins).value[0]
    assert np.array(Histogram.from_json(payload(value)).buckets()) == pytest.approx(
        tensorboards_buckets(value), rel=1e-6)


def test_explicit_limits_start_at_the_minimum_and_end_at_the_maximum():
    value = histogram_raw("h", min=0.5, max=2.5, num=4, sum=5.0, sum_squares=8.0, bucket_limits=[1.0, 2.0, 3.0],
                          bucket_counts=[1, 2, 1]).value[0]
    buckets = Histogram.from_json(payload(value)).buckets()
    assert buckets == [(0.5, 1.0, 1), (1.0, 2.0, 2), (2.0, 2.5, 1)]
    assert np.array(buckets) == pytest.approx(tensorboards_buckets(value))


def test_the_bars_are_tensorboards_thirty_equal_bars_from_min_to_max_keeping_every_count(default_bins):
    values = np.random.default_rng(0).normal(3.0, 2.0, size=5000)
    edges, counts = Histogram.from_json(payload(histogram("h", values, bins=default_bins).value[0])).bars()
    assert (len(counts), len(edges), BARS) == (30, 31, 30)
    assert (edges[0], edges[-1]) == pytest.approx((values.min(), values.max()))
    assert np.diff(edges) == pytest.approx(np.full(30, (values.max() - values.min()) / 30))
    assert sum(counts) == pytest.approx(5000)


def test_a_bucket_is_spread_over_the_bars_it_overlaps_in_proportion():
    # Buckets [0, 1]: 5 and (1, 3]: 10 over 2 bars: the first gets 5 and a quarter of 10, the second the rest.
    histogram_json = {"min": 0.0, "max": 3.0, "num": 15, "sum": 0.0, "sum_squares": 0.0,
                      "bucket_limit": [1.0, 3.0], "bucket": [5, 10]}
    assert Histogram.from_json(histogram_json).bars(2) == ([0.0, 1.5, 3.0], [7.5, 7.5])


def test_exponential_buckets_are_drawn_as_the_datas_shape_not_the_buckets_widths(default_bins):
    """Uniform data has flat bars, although TensorBoard's buckets near zero are thousands of times narrower."""
    values = np.random.default_rng(1).uniform(-1.0, 1.0, size=200_000)
    _, counts = Histogram.from_json(payload(histogram("h", values, bins=default_bins).value[0])).bars()
    assert counts == pytest.approx(np.full(30, 200_000 / 30), rel=0.1)


def test_a_histogram_of_one_value_is_drawn_around_it_as_tensorboard_does(default_bins):
    edges, counts = Histogram.from_json(payload(histogram("h", np.full(100, 2.0), bins=default_bins).value[0])).bars()
    assert (edges[0], edges[-1]) == pytest.approx((2.0 / 1.1 - 1, 2.0 * 1.1 + 1))
    (bar,) = [index for index, count in enumerate(counts) if count]
    assert counts[bar] == 100 and edges[bar] <= 2.0 < edges[bar + 1]


def test_outermost_limits_at_dbl_max_and_infinite_ends_stay_on_the_data():
    histogram_json = {"min": -0.5, "max": float("inf"), "num": 7, "sum": 0.0, "sum_squares": 0.0,
                      "bucket_limit": [-DBL_MAX, 0.0, 1.0, DBL_MAX], "bucket": [0, 3, 4, 0]}
    assert Histogram.from_json(histogram_json).buckets() == [(-0.5, 0.0, 3), (0.0, 1.0, 4)]


def test_a_histogram_without_values_has_no_bars():
    empty = {"min": 0.0, "max": 0.0, "num": 0, "sum": 0.0, "sum_squares": 0.0, "bucket_limit": [DBL_MAX],
             "bucket": [0]}
    assert Histogram.from_json(empty).bars() == ([], [])


@pytest.mark.parametrize("broken", [{}, {"min": 0, "max": 1, "num": 1, "sum": 0, "sum_squares": 0, "bucket": [1],
                                         "bucket_limit": [1, 2]}, {"min": "x"}])
def test_a_payload_that_is_no_histogram_is_refused(broken):
    with pytest.raises(ValueError, match="not a TensorBoard histogram"):
        Histogram.from_json(broken)
