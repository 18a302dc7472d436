"""A picture of a TensorBoard histogram, for MLflow's image view: drawn with Pillow in the delivery worker.

MLflow has no histogram type; the JSON artifact keeps TensorBoard's buckets for programs, and this picture is for
people. It is a bar chart over the histogram's range, titled with min, max and mean. TensorBoard's buckets are
exponential (tiny near zero, wide far from it), so bars of bucket counts would draw the bucket widths rather than
the data; like TensorBoard's own chart, the counts are spread over equal-width bars, each bucket's count
uniformly over its width.

Speed matters, since a run may log a histogram per layer at every step: Pillow instead of matplotlib, and the
thumbnail MLflow's charts show is drawn at its own size rather than decoded and scaled down from the picture
(which also keeps its text sharp). ``benchmarks/histogram_pictures.py`` measures it.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["BARS", "HEIGHT", "THUMBNAIL_WIDTH", "WIDTH", "bar_counts", "histogram_pictures"]

BARS = 49  # odd: a histogram of one value has its bar in the middle, over the middle label
WIDTH, HEIGHT = 480, 300
THUMBNAIL_WIDTH = 256  # what MLflow's log_image makes its thumbnails fit
_FONT_SIZE = 22  # at WIDTH; the thumbnail's is scaled down with it
_BAR_COLOUR = (242, 112, 53)  # TensorBoard's histogram orange
_AXIS_COLOUR = (120, 120, 120)
_TEXT_COLOUR = (33, 33, 33)


def bar_counts(histogram: Mapping[str, Any], bars: int = BARS) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, counts)``: the histogram's values over ``bars`` equal bars from its min to its max.

    TensorBoard keeps right edges only (``bucket_limit``). torch and tensorboardX put an empty bucket first whose
    right edge is the left edge of the data; otherwise the first bucket starts at the minimum. The counts still
    add up to ``num``.
    """
    limits = np.asarray(histogram["bucket_limit"], dtype=np.float64)
    counts = np.asarray(histogram["bucket"], dtype=np.float64)
    if len(counts) > 1 and counts[0] == 0:
        edges, counts = limits, counts[1:]
    else:
        edges = np.concatenate(([min(float(histogram["min"]), limits[0])], limits))
    low, high = float(histogram["min"]), float(histogram["max"])
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = edges[np.isfinite(edges)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if high <= low:  # one value: one bar in the middle, with room around it
        room = abs(low) * 0.5 or 0.5
        single = np.zeros(bars)
        single[bars // 2] = counts.sum()
        return np.linspace(low - room, high + room, bars + 1), single
    bar_edges = np.linspace(low, high, bars + 1)
    # The cumulative count is linear inside each bucket, between its edges cut to the data's min and max (the end
    # buckets reach past them): read it at the bars' edges.
    cumulative = np.interp(bar_edges, np.clip(edges, low, high), np.concatenate(([0.0], np.cumsum(counts))))
    cumulative[0], cumulative[-1] = 0.0, counts.sum()
    return bar_edges, np.diff(cumulative)


def histogram_pictures(histogram: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The picture (PNG, ``WIDTH`` x ``HEIGHT``) and its thumbnail (WebP, ``THUMBNAIL_WIDTH`` wide)."""
    bars = bar_counts(histogram) if float(histogram["num"]) > 0 else None
    picture = io.BytesIO()
    _draw(histogram, bars, WIDTH).save(picture, format="PNG", compress_level=1)  # flat colours: fast level will do
    thumbnail = io.BytesIO()
    _draw(histogram, bars, THUMBNAIL_WIDTH).save(thumbnail, format="WEBP", lossless=True, method=0)  # ditto
    return picture.getvalue(), thumbnail.getvalue()


def _draw(histogram: Mapping[str, Any], bars: tuple[np.ndarray, np.ndarray] | None, width: int) -> Any:
    from PIL import Image, ImageDraw

    scale = width / WIDTH
    height = round(HEIGHT * scale)
    left, right, top, bottom = 16 * scale, width - 16 * scale, 48 * scale, height - 36 * scale
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = _font(round(_FONT_SIZE * scale))
    if bars is None:
        draw.text((width / 2, 10 * scale), "empty histogram", font=font, fill=_TEXT_COLOUR, anchor="ma")
        return image
    mean = float(histogram["sum"]) / float(histogram["num"])
    title = f"min {_number(histogram['min'])}  max {_number(histogram['max'])}  mean {_number(mean)}"
    draw.text((width / 2, 10 * scale), title, font=font, fill=_TEXT_COLOUR, anchor="ma")

    edges, counts = bars
    tallest = counts.max() or 1.0
    bar_width = (right - left) / len(counts)
    for index, count in enumerate(counts):
        if count > 0:
            bar_left = left + index * bar_width
            bar_top = bottom - (bottom - top) * count / tallest
            draw.rectangle((round(bar_left), round(bar_top), round(bar_left + bar_width) - 1, round(bottom)),
                           fill=_BAR_COLOUR)
    draw.line((left, bottom, right, bottom), fill=_AXIS_COLOUR)
    for value, x, anchor in ((edges[0], left, "la"), ((edges[0] + edges[-1]) / 2, (left + right) / 2, "ma"),
                             (edges[-1], right, "ra")):
        draw.line((x, bottom, x, bottom + 4 * scale), fill=_AXIS_COLOUR)
        draw.text((x, bottom + 6 * scale), _number(value), font=font, fill=_TEXT_COLOUR, anchor=anchor)
    return image


def _number(value: Any) -> str:
    return f"{float(value):.4g}"


@functools.cache
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)
