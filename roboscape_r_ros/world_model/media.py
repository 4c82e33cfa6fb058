"""Pictures for runs and reports, drawn with Pillow only: labelled side-by-side GIFs and line plots.

grid = labelled_grid([[real, dream], ...], ["real", "dreamed"])   # uint8 [T,H',W',3]
write_gif(path, grid, fps=8)
line_plot(path, {"model": (xs, ys), "copy-last": (xs, ys2)}, "PSNR vs horizon", "steps", "dB")
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from roboscape_r_ros.files import write_atomic

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def hold_last(clip: np.ndarray, length: int) -> np.ndarray:
    """uint8 [T,H,W,3] padded to `length` frames by repeating its last frame (for display only)."""
    if len(clip) >= length:
        return clip[:length]
    return np.concatenate([clip, np.repeat(clip[-1:], length - len(clip), 0)])


def labelled_grid(
    rows: Sequence[Sequence[np.ndarray]] | np.ndarray,  # or one array [rows, columns, T, H, W, 3]
    labels: Sequence[str],
    scale: int = 2,
    gap: int = 2,
    row_labels: Sequence[str] = (),
) -> np.ndarray:
    """Clips uint8 [T_i,H,W,3] in rows x columns -> one clip [T,H',W',3] with the column labels on top
    and the `row_labels` (if any) left of their rows.

    Shorter clips hold their last frame. Frames are upscaled `scale` times (nearest) for viewing.
    """
    length = max(len(clip) for row in rows for clip in row)
    h, w = rows[0][0].shape[1:3]
    ch, cw = h * scale, w * scale
    header, font = 14, _font()
    margin = max((math.ceil(font.getlength(label)) + 6 for label in row_labels), default=0)
    height = header + len(rows) * (ch + gap)
    width = margin + len(labels) * (cw + gap) - gap
    labelled = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(labelled)
    for j, label in enumerate(labels):
        draw.text((margin + j * (cw + gap) + 2, 1), label, fill=(0, 0, 0), font=font)
    for i, label in enumerate(row_labels):
        draw.text((2, header + i * (ch + gap) + ch // 2 - 6), label, fill=(0, 0, 0), font=font)
    canvas = np.repeat(np.asarray(labelled)[None], length, 0)
    for i, row in enumerate(rows):
        for j, clip in enumerate(row):
            clip = hold_last(np.asarray(clip), length).repeat(scale, 1).repeat(scale, 2)
            top, left = header + i * (ch + gap), margin + j * (cw + gap)
            canvas[:, top : top + ch, left : left + cw] = clip
    return canvas


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """uint8 [T,H,W,3] -> an endlessly looping GIF, written atomically."""
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return write_atomic(path, buffer.getvalue())


def write_png(path: str | Path, image: np.ndarray | Image.Image) -> Path:
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return write_atomic(path, buffer.getvalue())


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = max(high - low, 1e-9)
    step = 10 ** math.floor(math.log10(span / count))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= count:
            step *= mult
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def line_plot(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (560, 360),
    diagonal: bool = False,
    errors: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    categories: Sequence[str] | None = None,
) -> Path:
    """Lines with markers and a legend as a PNG (no matplotlib). NaN points are skipped.

    ``errors``: per series, (low, high) of a vertical interval at each point. ``categories``: the x
    axis is categorical, x = 0..len-1 labelled with these names, and points are not joined (offset
    each series' x a little to keep intervals apart).
    """
    width, height = size
    left, right, top, bottom = 56, 16, 40, 44
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if np.isfinite(y) and np.isfinite(x)]
    points += [(0.0, y) for lows, highs in (errors or {}).values() for y in (*lows, *highs) if np.isfinite(y)]
    if not points:
        points = [(0.0, 0.0), (1.0, 1.0)]
    xs_all, ys_all = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = (-0.5, len(categories) - 0.5) if categories else (min(xs_all), max(xs_all))
    y0, y1 = min(ys_all), max(ys_all)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = 0.08 * max(y1 - y0, 1e-6)
    y0, y1 = y0 - pad, y1 + pad
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font()

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x0) / (x1 - x0) * (width - left - right),
            height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom),
        )

    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    for t in _ticks(y0, y1):
        _, y = px(x0, t)
        draw.line([left, y, width - right, y], fill=(230, 230, 230))
        draw.text((4, y - 6), f"{t:g}", fill=(0, 0, 0), font=font)
    ticks = list(enumerate(categories)) if categories else [(t, f"{t:g}") for t in _ticks(x0, x1)]
    for t, label in ticks:
        x, _ = px(t, y0)
        draw.line([x, height - bottom, x, height - bottom + 4], fill=(0, 0, 0))
        draw.text((x - 3 * len(label), height - bottom + 6), label, fill=(0, 0, 0), font=font)
    if diagonal:
        draw.line([px(max(x0, y0), max(x0, y0)), px(min(x1, y1), min(x1, y1))], fill=(180, 180, 180))
    draw.text((left, 4), title, fill=(0, 0, 0), font=font)
    draw.text(((left + width - right) / 2 - 3 * len(xlabel), height - 18), xlabel, fill=(0, 0, 0), font=font)
    draw.text((4, top - 18), ylabel, fill=(0, 0, 0), font=font)
    for k, (name, (xs, ys)) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = [px(x, y) for x, y in zip(xs, ys) if np.isfinite(y) and np.isfinite(x)]
        if len(pts) > 1 and not categories:
            draw.line(pts, fill=colour, width=2)
        for x, low, high in zip(xs, *(errors or {}).get(name, ((), ()))):
            if np.isfinite(low) and np.isfinite(high):
                (bx, by0), (_, by1) = px(x, low), px(x, high)
                draw.line([bx, by0, bx, by1], fill=colour, width=1)
                draw.line([bx - 3, by0, bx + 3, by0], fill=colour)
                draw.line([bx - 3, by1, bx + 3, by1], fill=colour)
        if len(pts) <= 40:
            for x, y in pts:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        ly = top + 6 + 14 * k
        draw.rectangle([width - right - 150, ly + 3, width - right - 138, ly + 9], fill=colour)
        draw.text((width - right - 134, ly), name, fill=(0, 0, 0), font=font)
    return write_png(path, image)
