"""``evaluate``: PSNR / SSIM / LPIPS / consistency of methods on a data source, mean ± 95% CI."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import jax
import numpy as np

from .. import metrics
from ._io import atomic_write_text, from_uint8
from ._methods import get_method
from ._restore import restore_images
from ._tasks import degrade_images, get_task

COLUMNS = ("psnr", "ssim", "lpips", "consistency")
#: columns a table written before they existed may lack (read as None, shown as "–")
OPTIONAL_COLUMNS = ("lpips",)
#: LPIPS-AlexNet needs images of at least this height and width (``jaxir.metrics.lpips``)
LPIPS_MIN_SIZE = 31


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
    """Per-image PSNR, SSIM and LPIPS against ``x`` and the consistency
    ``‖A(x̂) − y‖ / √dim(y)`` (RMSE of the residual, comparable with ``task.sigma_y``), all on
    [-1, 1] images (PSNR data_range 2 = PSNR of the same images on [0, 255]). LPIPS is
    LPIPS-AlexNet v0.1 with the weights that ship with jaxir (:func:`jaxir.metrics.lpips`);
    NaN for images smaller than 31 × 31 pixels, where AlexNet has no features."""
    task = get_task(task) if isinstance(task, str) else task
    x_hat = np.asarray(x_hat, np.float32)
    x = np.asarray(x, np.float32)
    psnr = np.asarray(metrics.psnr(x_hat, x))
    ssim = np.asarray(metrics.ssim(x_hat, x))
    if min(x.shape[1:3]) >= LPIPS_MIN_SIZE:
        lp = np.concatenate([np.asarray(metrics.lpips(x_hat[i:i + 16], x[i:i + 16]))
                             for i in range(0, len(x), 16)])
    else:
        lp = np.full(len(x), np.nan, np.float32)
    cons = []
    for i in range(len(x_hat)):
        m = None if mask is None else mask[i]
        cons.append(float(metrics.consistency_rmse(lambda z, m=m: task.forward(z, m), x_hat[i],
                                                   y[i])))
    return {"psnr": psnr, "ssim": ssim, "lpips": lp, "consistency": np.asarray(cons)}


def summarize(rows: list[dict]) -> list[dict]:
    """Per method: n and mean ± 95% CI (Student t, :func:`jaxir.metrics.mean_ci`) of each metric
    (None where a row has no value: an LPIPS column a table written before it lacks)."""
    out = []
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == name]
        s = {"method": name, "n": len(rs)}
        for c in COLUMNS:
            if any(r.get(c) is None for r in rs):
                s[c], s[c + "_ci"] = None, math.nan
                continue
            v = np.array([r[c] for r in rs], np.float64)
            if len(v) >= 2 and np.all(np.isfinite(v)):
                m, h = metrics.mean_ci(v)
                s[c], s[c + "_ci"] = float(m), float(h)
            else:
                s[c], s[c + "_ci"] = float(np.mean(v)), math.nan
        s["seconds"] = float(sum(float(r["seconds"]) for r in rs))
        s["seconds_per_image"] = s["seconds"] / len(rs)
        nfe = [r.get("nfe") for r in rs]
        s["nfe"] = (float(np.mean([float(v) for v in nfe]))
                    if all(v not in (None, "") for v in nfe) else None)
        out.append(s)
    return out


def method_label(name: str, samples: int = 1, steps: int | None = None) -> str:
    """The row label of ``name`` restored with ``samples`` averaged posterior samples and
    ``steps`` sampling steps (None: the method's default, not shown):
    ``"ddrm"``, ``"ddrm (mean of 8)"``, ``"ddrm (100 steps, mean of 4)"``."""
    parts = ([f"{steps} steps"] if steps is not None else []) + (
        [f"mean of {samples}"] if samples != 1 else [])
    return name + (f" ({', '.join(parts)})" if parts else "")


def markdown_table(summary: list[dict]) -> str:
    """The summary as a markdown table: ``mean ± CI`` per metric, network evaluations and
    wall-clock seconds per image (rows without NFE, from older CSVs, show ``–``)."""
    lines = ["| method | n | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ | consistency RMSE | NFE / image "
             "| s / image |", "|---|---|---|---|---|---|---|---|"]

    def pm(s, c, digits):
        if s.get(c) is None or math.isnan(s[c]):
            return "–"
        ci = s[c + "_ci"]
        return f"{s[c]:.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")

    for s in summary:
        nfe = s.get("nfe")
        nfe = "–" if nfe is None or (isinstance(nfe, float) and math.isnan(nfe)) else f"{nfe:g}"
        lines.append(f"| {s['method']} | {s['n']} | {pm(s, 'psnr', 2)} | {pm(s, 'ssim', 3)} | "
                     f"{pm(s, 'lpips', 3)} | {pm(s, 'consistency', 3)} | {nfe} | "
                     f"{s['seconds_per_image']:.2f} |")
    return "\n".join(lines)


def evaluate(methods, task, *, prior=None, data: str = "photos:test", n: int = 8,
             steps: int | None = None, seed: int = 0, images=None, progress: bool = False,
             batch_size: int = 16, samples: int | None = None,
             reference: bool = True) -> list[dict]:
    """Degrade ``n`` images with ``task`` (key ``seed``), restore with each method, score.

    The first rows are the degraded input itself (``pinv``: ``A⁺y``) for reference (unless
    ``reference=False``). ``steps`` / ``samples`` None run each method with the task's default
    settings (:func:`~jaxir.restore.default_settings`); labels name every setting that differs
    from the method's official one. ``samples = K > 1`` averages K posterior samples per image
    for the diffusion methods (their rows are labelled ``"<name> (mean of K)"``; a ``steps`` other than
    the method's default is named too: ``"<name> (S steps, mean of K)"``). Returns one row per
    (method, image): ``method, image, psnr, ssim, lpips, consistency, nfe, seconds`` (``nfe``: network
    evaluations per image, all samples included; ``seconds``: wall time per image, compilation
    included).
    """
    task = get_task(task) if isinstance(task, str) else task
    x = load_eval_images(data, n) if images is None else np.asarray(images, np.float32)
    y, mask = degrade_images(jax.random.key(seed), task, x)
    y = np.asarray(y)
    mask = None if mask is None else np.asarray(mask)
    rows = []
    names = (["pinv"] if reference else []) + [m for m in methods if m != "pinv"]
    for name in names:
        t0 = time.perf_counter()
        info: dict = {}
        x_hat = restore_images(y, task, name, prior=prior, mask=mask, steps=steps, seed=seed,
                               progress=progress, batch_size=batch_size, samples=samples,
                               info=info)
        secs = (time.perf_counter() - t0) / len(x)
        vals = image_metrics(task, x_hat, x, y, mask)
        k = info.get("samples", 1)
        nfe = (None if info.get("nfe") is None else
               info["nfe"] * k * info.get("windows", len(x)) / len(x))
        m = get_method(name) if isinstance(name, str) else name
        used = info.get("steps")
        label = method_label(m.name, k, used if used != m.default_steps else None)
        for i in range(len(x)):
            rows.append({"method": label, "image": i,
                         **{c: float(vals[c][i]) for c in COLUMNS}, "nfe": nfe,
                         "seconds": secs})
    return rows


def read_results(csv_path) -> list[dict]:
    """The rows of a CSV written by :func:`write_results` (numbers as floats; a missing ``nfe``
    or ``lpips`` column, from older files, reads as None)."""
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        d = {"method": r["method"], "image": int(r["image"])}
        for c in (*COLUMNS, "seconds"):
            if c in OPTIONAL_COLUMNS and r.get(c) in (None, ""):
                d[c] = None
            else:
                d[c] = float(r[c])
        d["nfe"] = float(r["nfe"]) if r.get("nfe") not in (None, "") else None
        out.append(d)
    return out


def merge_results(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` rows of methods not in ``new``, in their order, then ``new`` (a method that is
    in both is replaced in place). Raises ``ValueError`` if the two do not score the same
    images (a different ``n``)."""
    if old and new:
        imgs_old = {r["image"] for r in old}
        imgs_new = {r["image"] for r in new}
        if imgs_old != imgs_new:
            raise ValueError(f"cannot merge: the existing results score {len(imgs_old)} images, "
                             f"the new ones {len(imgs_new)}")
    new_names = list(dict.fromkeys(r["method"] for r in new))
    out, done = [], set()
    for name in dict.fromkeys(r["method"] for r in old):
        if name in new_names:
            out += [r for r in new if r["method"] == name]
            done.add(name)
        else:
            out += [r for r in old if r["method"] == name]
    out += [r for r in new if r["method"] not in done]
    return out


def write_results(rows: list[dict], out_dir, stem: str) -> tuple[Path, Path]:
    """``<stem>.csv`` (every row) and ``<stem>.md`` (the summary table) in ``out_dir``, each
    written atomically (an existing table is replaced whole or not at all)."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    fh = io.StringIO(newline="")
    fields = list(dict.fromkeys(["method", "image", *COLUMNS, "nfe", "seconds",
                                 *(k for r in rows for k in r)]))
    wr = csv.DictWriter(fh, fieldnames=fields)
    wr.writeheader()
    wr.writerows([{k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in rows])
    md = markdown_table(summarize(rows)) + "\n"  # computed before anything is written
    atomic_write_text(csv_path, fh.getvalue())
    atomic_write_text(md_path, md)
    return csv_path, md_path
