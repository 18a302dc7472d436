"""A picture of a TensorBoard histogram, for MLflow's image view: drawn with Pillow in the delivery worker.

MLflow has no histogram type; the JSON artifact keeps TensorBoard's buckets for programs, and this picture is for
people: the bars TensorBoard's own histogram view draws (``Histogram.bars``, the same bars W&B and ClearML get),
titled with min, max and mean.

Speed matters, since a run may log a histogram per layer at every step: Pillow instead of matplotlib, and the
thumbnail MLflow's charts show is drawn at its own size rather than decoded and scaled down from the picture
(which also keeps its text sharp). ``benchmarks/histogram_pictures.py`` measures it.
"""

from __future__ import annotations

import functools
import io
from typing import Any

from tracelet_otel.backends import Bars, Histogram

__all__ = ["HEIGHT", "THUMBNAIL_WIDTH", "WIDTH", "histogram_pictures"]

WIDTH, HEIGHT = 480, 300
THUMBNAIL_WIDTH = 256  # what MLflow's log_image makes its thumbnails fit
_FONT_SIZE = 22  # at WIDTH; the thumbnail's is scaled down with it
_BAR_COLOUR = (242, 112, 53)  # TensorBoard's histogram orange
_AXIS_COLOUR = (120, 120, 120)
_TEXT_COLOUR = (33, 33, 33)


def histogram_pictures(histogram: Histogram) -> tuple[bytes, bytes]:
    """The picture (PNG, ``WIDTH`` x ``HEIGHT``) and its thumbnail (WebP, ``THUMBNAIL_WIDTH`` wide)."""
    bars = histogram.bars()
    picture = io.BytesIO()
    _draw(histogram, bars, WIDTH).save(picture, format="PNG", compress_level=1)  # flat colours: fast level will do
    thumbnail = io.BytesIO()
    _draw(histogram, bars, THUMBNAIL_WIDTH).save(thumbnail, format="WEBP", lossless=True, method=0)  # ditto
    return picture.getvalue(), thumbnail.getvalue()


def _draw(histogram: Histogram, bars: Bars, width: int) -> Any:
    from PIL import Image, ImageDraw

    scale = width / WIDTH
    height = round(HEIGHT * scale)
    left, right, top, bottom = 16 * scale, width - 16 * scale, 48 * scale, height - 36 * scale
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = _font(round(_FONT_SIZE * scale))
    if not bars.counts:
        draw.text((width / 2, 10 * scale), "empty histogram", font=font, fill=_TEXT_COLOUR, anchor="ma")
        return image
    title = f"min {_number(histogram.min)}  max {_number(histogram.max)}"
    if histogram.sum is not None:  # TensorFlow 2 keeps no sum
        title += f"  mean {_number(histogram.sum / histogram.num)}"
    draw.text((width / 2, 10 * scale), title, font=font, fill=_TEXT_COLOUR, anchor="ma")

    edges, counts = bars
    tallest = max(counts) or 1.0
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
