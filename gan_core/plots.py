"""PNG figures for the UI and the report (matplotlib's Agg backend, bytes in, bytes out)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _figure_png(fig: object) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return buffer.getvalue()


def image_grid(images: np.ndarray, columns: int = 10) -> np.ndarray:
    """Tile N x C x H x W images in [0, 1] into one H' x W' x C array with 1-pixel white gaps
    (torchvision.utils.make_grid; identical pixels to the hand-written tiling it replaced for full rows)."""
    import torch
    from torchvision.utils import make_grid

    tensor = torch.as_tensor(np.asarray(images, np.float32))
    grid = make_grid(tensor, nrow=columns, padding=1, pad_value=1.0).numpy().transpose(1, 2, 0)
    return grid[..., : tensor.shape[1]]  # make_grid repeats a single channel three times


def grid_png(images: np.ndarray, columns: int = 10, min_cell: int = 32) -> bytes:
    """A PNG of an image grid, each image enlarged (nearest neighbour) to at least `min_cell` pixels."""
    from PIL import Image

    grid = np.clip(image_grid(images, columns), 0, 1)
    scale = max(1, math.ceil(min_cell / images.shape[2]))
    pixels = (grid * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def line_png(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    title: str = "",
) -> bytes:
    """A PNG line plot of one or more named series against `x`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in series.items():
        ax.plot(list(x), list(values), marker="." if len(x) < 50 else None, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return _figure_png(fig)


def png_markdown(png: bytes, alt: str = "figure") -> str:
    """Markdown that shows a PNG inline (Dagster has no image metadata type)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def sigma_search_png(searches: Sequence[dict[str, Any]]) -> bytes:
    """The Parzen bandwidth search of each seed (stored `parzen_bandwidth` records): mean validation log-likelihood
    against sigma, log scale, one line per seed."""
    grid = [s for s, _ in searches[0]["valid_mean_by_sigma"]]
    return line_png(
        grid,
        {f"seed {e['seed']}": [v for _, v in e["valid_mean_by_sigma"]] for e in searches},
        "sigma",
        "mean validation log-likelihood (nats)",
        logx=True,
    )


def sweep_png(
    points: Sequence[dict[str, Any]], setting: str, metrics: dict[str, str], group_by: str | None = None
) -> bytes:
    """A sweep's metrics against one swept `setting`: one panel per metric ({column: label}), the mean over seeds
    with its standard deviation as error bars, one line per value of the other swept setting (`group_by`).
    `points` items: {setting: value, group_by: value, column: mean, column + "_std": std}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    groups = sorted({point.get(group_by) for point in points}, key=str) if group_by else [None]
    numeric = all(isinstance(point[setting], int | float) and not isinstance(point[setting], bool) for point in points)
    ticks = sorted({point[setting] for point in points}, key=lambda v: (str(type(v)), v))
    for ax, (column, label) in zip(axes[0], metrics.items(), strict=True):
        for group in groups:
            chosen = sorted(
                (p for p in points if group_by is None or p.get(group_by) == group),
                key=lambda p: ticks.index(p[setting]),
            )
            x = [p[setting] if numeric else ticks.index(p[setting]) for p in chosen]
            y = [np.nan if p.get(column) is None else float(p[column]) for p in chosen]
            error = [0.0 if p.get(column + "_std") is None else float(p[column + "_std"]) for p in chosen]
            error = [0.0 if math.isnan(e) else e for e in error]
            name = f"{group_by}={group}" if group_by else None
            ax.errorbar(x, y, yerr=error, marker="o", capsize=3, label=name)
        if not numeric:
            ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
        elif len(ticks) > 2 and min(ticks) > 0 and max(ticks) / min(ticks) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(setting)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    if group_by and len(groups) > 1:
        axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)
