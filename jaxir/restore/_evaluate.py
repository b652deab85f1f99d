"""``evaluate``: PSNR / SSIM / consistency of methods on a data source, mean ± 95% CI."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import jax
import numpy as np

from .. import metrics
from ._io import from_uint8
from ._restore import restore_images
from ._tasks import degrade_images, get_task

COLUMNS = ("psnr", "ssim", "consistency")


def load_eval_images(data: str = "photos:test", n: int = 8, size: int = 64) -> np.ndarray:
    """``n`` images ``(n, size, size, 3)`` in [-1, 1] from a :func:`jaxir.data.get_source` spec.

    Sources that take a ``size`` (photos crops, digits, faces, folders) are asked for
    ``size``-square images; others must already have that size. Grayscale is repeated to RGB.
    The ``n`` items are spread evenly over the source (so ``photos:test`` mixes both photos).
    """
    from ..data import get_source

    try:
        src = get_source(data, size=size)
    except TypeError:  # a source without a size option
        src = get_source(data)
    if n > len(src):
        raise ValueError(f"data source {data!r} has {len(src)} items, fewer than n = {n}")
    idx = np.linspace(0, len(src) - 1, n).round().astype(int)
    imgs = [np.asarray(src[int(i)]["image"]) for i in idx]
    if any(im.shape[:2] != (size, size) for im in imgs):
        raise ValueError(f"data source {data!r} gives images of shape {imgs[0].shape}; "
                         f"evaluate needs {size}x{size}")
    imgs = [np.repeat(im, 3, -1) if im.shape[-1] == 1 else im for im in imgs]
    return from_uint8(np.stack(imgs))


def image_metrics(task, x_hat, x, y, mask=None) -> dict[str, np.ndarray]:
    """Per-image PSNR and SSIM against ``x`` and the consistency ``‖A(x̂) − y‖ / √dim(y)`` (RMSE
    of the residual, comparable with ``task.sigma_y``), all on [-1, 1] images (PSNR
    data_range 2 = PSNR of the same images on [0, 255])."""
    task = get_task(task) if isinstance(task, str) else task
    x_hat = np.asarray(x_hat, np.float32)
    psnr = np.asarray(metrics.psnr(x_hat, x))
    ssim = np.asarray(metrics.ssim(x_hat, x))
    cons = []
    for i in range(len(x_hat)):
        m = None if mask is None else mask[i]
        cons.append(float(metrics.consistency_rmse(lambda z, m=m: task.forward(z, m), x_hat[i],
                                                   y[i])))
    return {"psnr": psnr, "ssim": ssim, "consistency": np.asarray(cons)}


def summarize(rows: list[dict]) -> list[dict]:
    """Per method: n and mean ± 95% CI (Student t, :func:`jaxir.metrics.mean_ci`) of each metric."""
    out = []
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == name]
        s = {"method": name, "n": len(rs)}
        for c in COLUMNS:
            v = np.array([r[c] for r in rs], np.float64)
            if len(v) >= 2 and np.all(np.isfinite(v)):
                m, h = metrics.mean_ci(v)
                s[c], s[c + "_ci"] = float(m), float(h)
            else:
                s[c], s[c + "_ci"] = float(np.mean(v)), math.nan
        s["seconds"] = float(sum(r["seconds"] for r in rs))
        out.append(s)
    return out


def markdown_table(summary: list[dict]) -> str:
    """The summary as a markdown table: ``mean ± CI`` per metric."""
    lines = ["| method | n | PSNR (dB) ↑ | SSIM ↑ | consistency RMSE | seconds |",
             "|---|---|---|---|---|---|"]

    def pm(s, c, digits):
        ci = s[c + "_ci"]
        return f"{s[c]:.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")

    for s in summary:
        lines.append(f"| {s['method']} | {s['n']} | {pm(s, 'psnr', 2)} | {pm(s, 'ssim', 3)} | "
                     f"{pm(s, 'consistency', 3)} | {s['seconds']:.1f} |")
    return "\n".join(lines)


def evaluate(methods, task, *, prior=None, data: str = "photos:test", n: int = 8,
             steps: int | None = None, seed: int = 0, images=None, progress: bool = False,
             batch_size: int = 16) -> list[dict]:
    """Degrade ``n`` images with ``task`` (key ``seed``), restore with each method, score.

    The first rows are the degraded input itself (``pinv``: ``A⁺y``) for reference. Returns
    one row per (method, image): ``method, image, psnr, ssim, consistency, seconds``.
    """
    task = get_task(task) if isinstance(task, str) else task
    x = load_eval_images(data, n) if images is None else np.asarray(images, np.float32)
    y, mask = degrade_images(jax.random.key(seed), task, x)
    y = np.asarray(y)
    mask = None if mask is None else np.asarray(mask)
    rows = []
    names = ["pinv"] + [m for m in methods if m != "pinv"]
    for name in names:
        t0 = time.perf_counter()
        x_hat = restore_images(y, task, name, prior=prior, mask=mask, steps=steps, seed=seed,
                               progress=progress, batch_size=batch_size)
        secs = (time.perf_counter() - t0) / len(x)
        vals = image_metrics(task, x_hat, x, y, mask)
        for i in range(len(x)):
            rows.append({"method": name, "image": i, **{c: float(vals[c][i]) for c in COLUMNS},
                         "seconds": secs})
    return rows


def write_results(rows: list[dict], out_dir, stem: str) -> tuple[Path, Path]:
    """``<stem>.csv`` (every row) and ``<stem>.md`` (the summary table) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with open(csv_path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    md_path.write_text(markdown_table(summarize(rows)) + "\n")
    return csv_path, md_path
