"""The PNGs a run writes: image grids (samples) and the loss curve."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data import images_to_uint8

__all__ = ["plot_metrics", "save_image_grid"]


def save_image_grid(images, path, ncol: int | None = None, min_tile: int = 32,
                    pad: int = 1) -> Path:
    """Write (N, H, W, C) images in [-1, 1] as one PNG grid (Pillow). Tiles smaller than
    ``min_tile`` pixels are enlarged by an integer factor (nearest)."""
    from PIL import Image

    x = images_to_uint8(np.asarray(images))
    n, h, w, c = x.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    f = max(1, int(math.ceil(min_tile / max(h, w))))
    if f > 1:
        x = x.repeat(f, axis=1).repeat(f, axis=2)
        h, w = h * f, w * f
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h,
             pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    path = Path(path)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
    return path


def plot_metrics(metrics_path, out_path, key: str = "loss") -> Path | None:
    """Plot ``key`` against ``step`` from a metrics.jsonl file into a PNG (matplotlib Agg,
    without touching the global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    rows = [r for r in rows if key in r]
    if not rows:
        return None
    fig = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([r["step"] for r in rows], [r[key] for r in rows], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    if all(r[key] > 0 for r in rows):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    return Path(out_path)
