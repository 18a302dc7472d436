"""TensorBoard histograms, read the way TensorBoard reads and draws them, once for every backend.

A histogram record's payload is TensorBoard's own data, kept losslessly: the JSON
``{min, max, num, sum, sum_squares, bucket_limit, bucket}`` of the event's ``HistogramProto``, where
``bucket_limit[i]`` is the right edge of bucket ``i`` (torch and tensorboardX start with an empty bucket whose
limit is the data's left edge, and their outermost limits are +/-DBL_MAX); or, from TensorFlow 2
(``tf.summary.histogram``, Keras), its tensor as ``{"buckets": [[left, right, count], ...]}``.

**Buckets** (:meth:`Histogram.buckets`): TensorBoard's reading of that data (``tensorboard.data_compat``). The
empty buckets at either end are dropped; the first remaining bucket starts at ``min``, the last ends at ``max``,
and the edges between are the limits. A ``min`` or ``max`` that is not finite (values of +/-inf) is replaced by
the nearest finite edge, where TensorBoard would draw nothing. TensorFlow 2's buckets are taken as they are.

**Bars** (:meth:`Histogram.bars`): what TensorBoard's histogram view draws from those buckets
(``webapp/widgets/histogram/histogram_util.ts``): ``BARS`` (30) bars of equal width from the first bucket's left
edge to the last bucket's right edge; each bucket's count is spread over the bars it overlaps in proportion to
the overlap, and a bucket of zero width counts in the bar that holds it (in the right one, on a boundary). A
histogram of one value has no range; it is drawn over ``[x / 1.1 - 1, x * 1.1 + 1]``.

Every tracker draws these same bars: MLflow's picture, W&B's ``wandb.Histogram`` (which takes at most 512
bins), ClearML's bar plot. TensorBoard's view spans one range over all the steps of a tag; a tracker gets one
histogram at a time, so each step's bars span that histogram's own range.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["BARS", "Bars", "Bucket", "Histogram"]

BARS = 30  # TensorBoard's histogram view (DEFAULT_BIN_COUNT)


class Bucket(NamedTuple):
    left: float
    right: float
    values: float  # how many values fell into [left, right]


class Bars(NamedTuple):
    """``len(counts)`` bars of equal width; ``edges`` has one more entry than ``counts``. Both empty for a
    histogram without values."""

    edges: list[float]
    counts: list[float]

    @property
    def centres(self) -> list[float]:
        return [(left + right) / 2 for left, right in itertools.pairwise(self.edges)]

    @property
    def width(self) -> float:
        return self.edges[1] - self.edges[0] if len(self.edges) > 1 else 0.0


@dataclass(frozen=True)
class Histogram:
    """One histogram as its payload JSON holds it: a ``HistogramProto`` (torch, tensorboardX, TensorFlow 1), or
    TensorFlow 2's ``{"buckets": [[left, right, count], ...]}``, which has no sum of its own."""

    min: float
    max: float
    num: float
    sum: float | None
    sum_squares: float | None
    tensorboard_buckets: tuple[Bucket, ...]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Histogram:
        """Raises:
        ValueError: ``body`` is not a histogram payload (a field is missing, a count without a limit).
        """
        try:
            if "buckets" in body:
                return cls._from_buckets([Bucket(*map(float, bucket)) for bucket in body["buckets"]])
            limits = [float(limit) for limit in body["bucket_limit"]]
            counts = [float(count) for count in body["bucket"]]
            low, high = float(body["min"]), float(body["max"])
            histogram = cls(min=low, max=high, num=float(body["num"]), sum=float(body["sum"]),
                            sum_squares=float(body["sum_squares"]),
                            tensorboard_buckets=tuple(_buckets(limits, counts, low, high)))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a TensorBoard histogram: {error!r}") from None
        if len(counts) != len(limits):
            raise ValueError(f"not a TensorBoard histogram: {len(counts)} buckets and {len(limits)} limits")
        return histogram

    @classmethod
    def _from_buckets(cls, buckets: Sequence[Bucket]) -> Histogram:
        """TensorFlow 2's buckets are what TensorBoard draws from, as they are."""
        low, high = (buckets[0].left, buckets[-1].right) if buckets else (0.0, 0.0)
        num = sum(bucket.values for bucket in buckets)
        return cls(min=low, max=high, num=num, sum=None, sum_squares=None,
                   tensorboard_buckets=tuple(buckets) if num else ())

    def buckets(self) -> list[Bucket]:
        """TensorBoard's buckets: ``(left, right, count)``."""
        return list(self.tensorboard_buckets)

    def bars(self, count: int = BARS) -> Bars:
        """The bars TensorBoard's histogram view draws (the module docstring has the rule)."""
        buckets = self.buckets()
        if not buckets:
            return Bars([], [])
        left, right = buckets[0].left, buckets[-1].right
        if left == right:
            left, right = left / 1.1 - 1, right * 1.1 + 1
        width = (right - left) / count
        counts: list[float] = []
        index, carried = 0, 0.0
        for bar in range(count):
            bar_left = left + bar * width
            bar_right = bar_left + width
            last_bar = bar == count - 1
            total, carried = carried, 0.0
            while index < len(buckets):
                bucket = buckets[index]
                here, later = _contribution(bucket, bar_left, bar_right, has_right_neighbour=not last_bar)
                total += here
                carried += later
                if bucket.right > bar_right:
                    break  # it reaches into the next bar too
                index += 1
            counts.append(total)
        return Bars([left + bar * width for bar in range(count + 1)], counts)


def _buckets(limits: Sequence[float], counts: Sequence[float], low: float, high: float) -> list[Bucket]:
    """A ``HistogramProto``'s buckets as TensorBoard reads them, without the empty ones at either end."""
    filled = [index for index, count in enumerate(counts) if count > 0]
    if not filled:
        return []
    start, end = filled[0], filled[-1]
    inner = list(limits[start:end])
    outer = [limits[start - 1]] if start > 0 else []  # the data's left edge in torch's layout
    low = _finite_or_nearest(low, [*outer, *inner, limits[end]])
    high = _finite_or_nearest(high, [limits[end], *reversed(inner), *outer])
    lefts, rights = [low, *inner], [*inner, high]
    return [Bucket(left, right, counts[start + index])
            for index, (left, right) in enumerate(zip(lefts, rights, strict=True))]


def _contribution(bucket: Bucket, left: float, right: float, has_right_neighbour: bool) -> tuple[float, float]:
    """How much of ``bucket``'s count falls in the bar ``[left, right)`` (the last bar is closed), and how much
    a zero-width bucket on its right boundary leaves for the next bar."""
    if bucket.left > right or bucket.right < left:
        return 0.0, 0.0
    if bucket.right == bucket.left:
        if has_right_neighbour and bucket.right >= right:
            return 0.0, bucket.values
        return bucket.values, 0.0
    overlap = min(bucket.right, right) - max(bucket.left, left)
    return bucket.values * overlap / (bucket.right - bucket.left), 0.0


def _finite_or_nearest(value: float, fallbacks: Sequence[float]) -> float:
    if math.isfinite(value):
        return value
    return next((edge for edge in fallbacks if math.isfinite(edge)), 0.0)
