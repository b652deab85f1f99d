"""Figures restoration papers show, as matplotlib figures: side-by-side comparisons with PSNR /
SSIM captions, sample grids, and posterior mean / per-pixel standard-deviation maps.

Images are ``(H, W, C)`` or batches ``(N, H, W, C)`` (C = 1 or 3) in ``value_range`` (the
library's [-1, 1] by default; pass ``value_range=(0, 1)`` for [0, 1] data). PSNR and SSIM are
:func:`jaxir.metrics.psnr` / :func:`jaxir.metrics.ssim` with the data range of
``value_range`` (so the numbers equal those of the same images on [0, 255]).

    >>> fig = compare({"noisy": y, "DDRM": x_hat}, reference=x)        # doctest: +SKIP
    >>> fig = posterior_maps(samples, reference=x)                      # doctest: +SKIP

Every function returns the `matplotlib.figure.Figure` (not shown, not closed: display it in a
notebook, ``fig.savefig(...)``, or hand it to :meth:`jaxir.report.Report.figure`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["compare", "sample_grid", "posterior_maps", "to_display"]


def _batch(x) -> np.ndarray:
    a = np.asarray(x, np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"expected (H, W, C) or (N, H, W, C) images with C = 1 or 3, got shape "
                         f"{np.shape(x)}")
    return a


def to_display(x, value_range=(-1.0, 1.0)) -> np.ndarray:
    """``x`` mapped from ``value_range`` to [0, 1] and clipped (for ``imshow``)."""
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return np.clip((np.asarray(x, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _show(ax, img, value_range, title=None):
    d = to_display(img, value_range)
    if d.shape[-1] == 1:
        ax.imshow(d[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(d, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)


def _pairs(images) -> list[tuple[str, np.ndarray]]:
    if isinstance(images, Mapping):
        items = list(images.items())
    else:
        items = [(str(t), x) for t, x in images]
    if not items:
        raise ValueError("compare: no images given")
    return [(t, _batch(x)) for t, x in items]


def _metric_caption(x, ref, value_range) -> str:
    from . import metrics

    rng = float(value_range[1] - value_range[0])
    if x.shape != ref.shape:
        return ""
    p = float(metrics.psnr(x, ref, data_range=rng))
    if min(x.shape[:2]) < 11:  # SSIM's 11×11 window does not fit
        return f"{p:.2f} dB"
    s = float(metrics.ssim(x, ref, data_range=rng))
    return f"{p:.2f} dB / {s:.3f}"


def compare(images, reference=None, *, value_range=(-1.0, 1.0), reference_title="reference",
            size: float = 2.0, metrics: bool = True):
    """Side-by-side columns (e.g. degraded / restored / reference), one row per image.

    Args:
      images: ``{title: images}`` or ``[(title, images), ...]``; each ``(H, W, C)`` or
        ``(N, H, W, C)``, all with the same N (a measurement of another size, e.g. the 4× smaller
        LR image, is shown at its own size).
      reference: the ground truth, same shape as the restorations: shown as the last column;
        every column of its shape gets a ``PSNR dB / SSIM`` caption against it (PSNR only for
        images under 11 px a side, where SSIM's window does not fit).
      value_range: the images' value range. size: inches per panel.
      metrics: False leaves the captions out.
    """
    import matplotlib.pyplot as plt

    cols = _pairs(images)
    ref = None if reference is None else _batch(reference)
    if ref is not None:
        cols.append((reference_title, ref))
    n = cols[0][1].shape[0]
    if any(x.shape[0] != n for _, x in cols):
        raise ValueError(f"compare: every column needs the same number of images; got "
                         f"{[x.shape[0] for _, x in cols]}")
    fig, axes = plt.subplots(n, len(cols), figsize=(size * len(cols), size * n + 0.3),
                             squeeze=False)
    for j, (title, x) in enumerate(cols):
        for i in range(n):
            cap = ""
            if metrics and ref is not None and x is not ref:
                cap = _metric_caption(x[i], ref[i], value_range)
            head = title if i == 0 else ""
            _show(axes[i, j], x[i], value_range, "\n".join(s for s in (head, cap) if s))
    fig.tight_layout()
    return fig


def sample_grid(samples, *, ncol: int | None = None, value_range=(-1.0, 1.0),
                title: str | None = None, size: float = 1.2):
    """``(N, H, W, C)`` samples as a grid (``ncol`` columns, default ⌈√N⌉)."""
    import matplotlib.pyplot as plt

    x = _batch(samples)
    n = x.shape[0]
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(size * ncol, size * nrow + (0.3 if title else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k < n:
            _show(ax, x[k], value_range)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def posterior_maps(samples, reference=None, measurement=None, *, value_range=(-1.0, 1.0),
                   size: float = 2.2):
    """The posterior mean and the per-pixel standard deviation of ``K`` samples of one image.

    Args:
      samples: ``(K, H, W, C)`` posterior samples of one image (K ≥ 2).
      reference: optional ground truth ``(H, W, C)``: adds its panel and the absolute error of
        the mean (both maps share the std's colour scale, so "the error is where the posterior is
        unsure" can be read off), with the mean's PSNR / SSIM.
      measurement: optional ``(h, w, c)`` degraded input, shown first.

    The std map is the per-pixel standard deviation over the samples (ddof 1) averaged over
    channels, in the images' own units.
    """
    import matplotlib.pyplot as plt

    x = _batch(samples)
    if x.shape[0] < 2:
        raise ValueError(f"posterior_maps needs at least 2 samples, got {x.shape[0]}")
    mean = x.mean(0)
    std = x.std(0, ddof=1).mean(-1)
    panels = []
    if measurement is not None:
        panels.append(("measurement", _batch(measurement)[0], None))
    cap = ""
    if reference is not None:
        ref = _batch(reference)[0]
        cap = _metric_caption(mean, ref, value_range)
    panels.append((f"posterior mean (K={x.shape[0]})" + (f"\n{cap}" if cap else ""), mean, None))
    vmax = float(std.max()) if std.max() > 0 else 1.0
    if reference is not None:
        err = np.abs(mean - ref).mean(-1)
        vmax = max(vmax, float(np.quantile(err, 0.99)))
        panels.append(("per-pixel std", std, vmax))
        panels.append(("|mean − reference|", err, vmax))
        panels.append(("reference", ref, None))
    else:
        panels.append(("per-pixel std", std, vmax))
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size + 0.5),
                             squeeze=False)
    for ax, (title, img, vm) in zip(axes[0], panels):
        if vm is None:
            _show(ax, img, value_range, title)
        else:
            im = ax.imshow(img, cmap="magma", vmin=0.0, vmax=vm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
