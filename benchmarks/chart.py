"""A small line chart written with PIL (no plotting dependency): curves over x, plus
horizontal reference lines, in one or more side-by-side panels."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 460, 340
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 34, 46
LEGEND_LINE = 15


@dataclass
class Series:
    """A curve (``xs`` given) or a horizontal reference line (``xs`` empty, one ``ys``)."""

    label: str
    ys: list[float]
    colour: tuple[int, int, int]
    xs: list[float] = field(default_factory=list)


@dataclass
class Panel:
    """One chart: a title, axis labels and its series."""

    title: str
    x_label: str
    y_label: str
    series: list[Series]


def _range(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 1.0
    return low - pad, high + pad


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / count
    return [low + step * (k + 0.5) for k in range(count)]


def draw_panel(panel: Panel) -> Image.Image:
    """One panel as an RGB image of WIDTH × (HEIGHT + legend)."""
    font = ImageFont.load_default()
    legend = LEGEND_LINE * len(panel.series) + 8
    image = Image.new("RGB", (WIDTH, HEIGHT + legend), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    curves = [s for s in panel.series if s.xs]
    xs = [x for s in curves for x in s.xs]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = _range([y for s in panel.series for y in s.ys])
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        u = left + (x - x_low) / ((x_high - x_low) or 1.0) * (right - left)
        v = bottom - (y - y_low) / (y_high - y_low) * (bottom - top)
        return u, v

    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    for y in _ticks(y_low, y_high):
        _, v = at(x_low, y)
        draw.line([left - 4, v, left, v], fill=(0, 0, 0))
        draw.line([left + 1, v, right - 1, v], fill=(232, 232, 232))
        draw.text((4, v - 6), f"{y:.3g}", fill=(0, 0, 0), font=font)
    for x in sorted(set(xs)):
        u, _ = at(x, y_low)
        draw.line([u, bottom, u, bottom + 4], fill=(0, 0, 0))
        draw.text((u - 8, bottom + 6), f"{x:g}", fill=(0, 0, 0), font=font)
    draw.text((left, 10), panel.title, fill=(0, 0, 0), font=font)
    draw.text(((left + right) / 2 - 30, bottom + 24), panel.x_label, fill=(0, 0, 0), font=font)
    draw.text((4, top - 16), panel.y_label, fill=(0, 0, 0), font=font)
    for series in panel.series:
        if series.xs:
            points = [at(x, y) for x, y in zip(series.xs, series.ys, strict=True)]
            draw.line(points, fill=series.colour, width=2)
            for u, v in points:
                draw.ellipse([u - 3, v - 3, u + 3, v + 3], fill=series.colour)
        else:
            _, v = at(x_low, series.ys[0])
            for u in range(left + 1, right - 1, 8):  # dashed
                draw.line([u, v, min(u + 4, right - 1), v], fill=series.colour, width=1)
    for k, series in enumerate(panel.series):
        v = HEIGHT + 4 + k * LEGEND_LINE
        width = 2 if series.xs else 1
        draw.line([left, v + 6, left + 24, v + 6], fill=series.colour, width=width)
        draw.text((left + 30, v), series.label, fill=(0, 0, 0), font=font)
    return image


def draw_chart(panels: list[Panel]) -> Image.Image:
    """The panels side by side."""
    images = [draw_panel(p) for p in panels]
    canvas = Image.new(
        "RGB", (sum(i.width for i in images), max(i.height for i in images)), (255, 255, 255)
    )
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas
