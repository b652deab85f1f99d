"""``jaxir demo``: an offline tour that writes one self-contained HTML report.

It restores crops of two photographs that ship with scikit-image and that the ``photos64``
prior never saw (the ``photos`` test split: astronaut, coffee), for several tasks, with
training-free diffusion methods next to the degraded input ``A⁺y`` and the task's best
classical baseline (:data:`~jaxir.restore._methods.BEST_BASELINES`), and says for each method
whether it beats or loses to that baseline; shows the posterior mean and per-pixel standard
deviation of the averaged samples; then runs the exact-answer benchmarks (every sampler on a
4-D Gaussian; the MCGdiff Gaussian-mixture posterior at d = 8). Nothing is downloaded.

The default run is sized to finish in about 3 minutes on 2 CPU cores; ``full=True``
(``jaxir demo --full``) runs larger crops, more methods and the larger GMM setting.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from ..report import Report
from ._evaluate import image_metrics, method_label
from ._io import from_uint8
from ._methods import best_baseline
from ._restore import restore_images
from ._tasks import degrade_images, get_task

#: (photo, top, left) of the demo crops: the astronaut's face, the spoon by the coffee cup.
CROPS = (("astronaut", 70, 190), ("coffee", 200, 300))

#: task -> (diffusion runs with their step counts, baseline; None = the task's best classical
#: baseline). ``"ddrm*8"`` is the mean of 8 DDRM samples per patch
#: (``restore_images(..., samples=8)``), the Monte-Carlo posterior mean that PSNR / SSIM reward;
#: on 4× SR one DDRM sample only ties bicubic on the held-out evaluation and the mean of 8 beats
#: it (``experiments/evaluate/sr4``). Inpainting 70 % of the pixels runs DDRM with 100 steps:
#: with its official 20 the whole image is predicted in one jump from σ̄ = 0.18 (t = 0.051) to
#: 0.01, so even the observed pixels end up farther from the truth than y is
#: (``experiments/evaluate/inpaint``). ΠGDM back-propagates through the network at every step,
#: which XLA:CPU runs 10-14× slower than it should (``experiments/benchmarks/NOTES.md``), so it is
#: in the full run only. DDNM+ is left out: with noisy measurements and its official η = 0.85 its
#: per-singular-value update is DDRM's (η = 0.85, η_b = 1) in the VP parametrisation, so with the
#: same key it returns the same image (up to float rounding).
DEFAULT = {
    "denoise": ({"ddrm": 20}, None),
    "sr4": ({"ddrm": 20, "ddrm*8": 20}, None),
    "inpaint": ({"ddrm": 100}, None),
}
FULL = {
    "denoise": ({"ddrm": 20, "diffpir": 20, "pigdm": 10}, None),
    "sr4": ({"ddrm": 20, "ddrm*8": 20, "diffpir": 20, "pigdm": 10}, None),
    "inpaint": ({"ddrm": 100, "diffpir": 20}, None),
}
GMM_DEFAULT = dict(methods=("ddrm", "dps", "ddnm", "mcgdiff-32"), num_samples=300,
                   num_reference=1000, num_steps=50)
GMM_FULL = dict(methods=("ddrm", "dps", "pigdm", "ddnm", "mcgdiff-32"), num_samples=500,
                num_reference=2000, num_steps=100)
#: crop side: one 64-px window per crop by default, 2 × 2 overlapping windows in the full run
SIZE_DEFAULT, SIZE_FULL = 64, 96


def demo_images(size: int, crops=CROPS) -> np.ndarray:
    """The demo crops ``(len(crops), size, size, 3)`` in [-1, 1] (clamped inside the photo)."""
    import skimage.data

    out = []
    for name, top, left in crops:
        img = getattr(skimage.data, name)()
        top = min(top, img.shape[0] - size)
        left = min(left, img.shape[1] - size)
        out.append(img[top:top + size, left:left + size, :3])
    return from_uint8(np.stack(out))


def _parse_spec(spec: str) -> tuple[str, int]:
    """``"ddrm"`` → ``("ddrm", 1)``; ``"ddrm*8"`` → ``("ddrm", 8)`` (the mean of 8 samples)."""
    name, _, k = spec.partition("*")
    return name, int(k) if k else 1


def verdict(psnr: float, baseline_psnr: float, baseline: str) -> str:
    """``"beats bicubic (+0.89 dB)"`` / ``"loses to bicubic (−1.21 dB)"`` on mean PSNR."""
    d = psnr - baseline_psnr
    if d > 0:
        return f"beats {baseline} (+{d:.2f} dB)"
    if d < 0:
        return f"loses to {baseline} (−{-d:.2f} dB)"
    return f"ties {baseline}"


def _restoration_section(report: Report, prior, plan: dict, x: np.ndarray, seed: int,
                         progress: bool) -> tuple[list[dict], bool, list[str]]:
    from .. import plot

    rows_all, ok, summary = [], True, []
    for ti, (task_name, (methods, baseline)) in enumerate(plan.items()):
        task = get_task(task_name)
        baseline = baseline or best_baseline(task_name)
        y, mask = degrade_images(jax.random.key(seed + ti), task, x)
        y = np.asarray(y)
        mask = None if mask is None else np.asarray(mask)
        names = [("pinv", None)] + ([(baseline, None)] if baseline != "pinv" else []) + \
            list(methods.items())
        results, rows, spread = {}, [], None
        for name, steps in names:
            method, k = _parse_spec(name)
            if progress:
                print(f"  {task_name}: {method_label(method, k)}"
                      + (f" ({steps} steps)" if steps else ""), flush=True)
            t0 = time.perf_counter()
            out = restore_images(y, task, method, prior=prior, mask=mask, steps=steps,
                                 seed=seed, progress=progress, samples=k,
                                 return_samples=k > 1)
            secs = time.perf_counter() - t0
            if k > 1:
                out, samples = out
                if spread is None:
                    spread = (method_label(method, k), samples)
            vals = image_metrics(task, out, x, y, mask)
            results[name] = (out, vals)
            label = "input A⁺y" if name == "pinv" else method_label(method, k)
            rows.append({"task": task_name, "method": label,
                         "steps": steps if steps else "–",
                         "NFE": steps * k if steps else "–",
                         "PSNR (dB)": float(np.mean(vals["psnr"])),
                         "SSIM": float(np.mean(vals["ssim"])),
                         "LPIPS": float(np.mean(vals["lpips"])),
                         "consistency RMSE": float(np.mean(vals["consistency"])),
                         "seconds": secs})
        base_psnr = float(np.mean(results[baseline][1]["psnr"]))
        input_psnr = float(np.mean(results["pinv"][1]["psnr"]))
        for r, (name, _) in zip(rows, names):
            if name in methods:
                r["vs best baseline"] = verdict(r["PSNR (dB)"], base_psnr, baseline)
                summary.append(f"{task_name}: {r['method']} {r['vs best baseline']}")
                if task_name in ("denoise", "sr4") and r["PSNR (dB)"] <= input_psnr:
                    ok = False  # a sanity check: restoring must beat the degraded input there
            else:
                r["vs best baseline"] = "(baseline)" if name == baseline else ""
        report.heading(f"{task_name}: {task.description}", 3)
        report.table(rows, ["method", "steps", "NFE", "PSNR (dB)", "SSIM", "LPIPS",
                            "consistency RMSE", "seconds", "vs best baseline"])
        cols = {}  # A⁺y is the degraded input at full size (holes at 0, i.e. mid-grey)
        for name, _ in names:
            label = "A⁺y" if name == "pinv" else method_label(*_parse_spec(name))
            cols[label] = results[name][0]
        report.figure(plot.compare(cols, reference=x, reference_title="ground truth"),
                      "Each panel: PSNR (dB) / SSIM against the ground truth.")
        if spread is not None:
            label, samples = spread
            report.figure(plot.posterior_maps(samples[:, 0], reference=x[0], measurement=y[0]),
                          f"{label}, first crop: the posterior mean of the samples and their "
                          f"per-pixel standard deviation next to the error of the mean.")
        rows_all += rows
    return rows_all, ok, summary


def _gmm_plot(summary: list[dict], rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    methods = list(dict.fromkeys(s["method"] for s in summary))
    dys = sorted({s["dy"] for s in summary})
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        pos = np.arange(len(dys)) + k * width
        means = [next(s for s in summary if s["method"] == m and s["dy"] == d)["sw_mean"]
                 for d in dys]
        ax.bar(pos, means, width, label=m, alpha=0.8)
        for j, d in enumerate(dys):  # each problem as a dot
            vals = [r["sw"] for r in rows if r["method"] == m and r["dy"] == d]
            ax.scatter([pos[j]] * len(vals), vals, s=10, c="k", zorder=3)
    centre = np.arange(len(dys)) + 0.4 - width / 2
    floor = [next(s for s in summary if s["dy"] == d)["sw_exact_mean"] for d in dys]
    ax.scatter(centre, floor, marker="_", s=1500, c="r", zorder=4)
    ax.set_xticks(centre, [f"dy = {d}" for d in dys])
    ax.set_ylabel("max-sliced W2 to the exact posterior")
    ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()  # the bars; small proxies for the rest
    handles += [Line2D([], [], ls="", marker="o", ms=4, c="k"),
                Line2D([], [], ls="-", lw=2, c="r")]
    labels += ["one problem", "exact vs exact (noise floor)"]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=True)
    ax.set_title("25-component GMM posterior, d = 8 (lower is better)")
    fig.tight_layout()
    return fig


def _gmm_table(summary: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows ``method, dy = 1, dy = 2, …, seconds / run`` with ``mean ± sd`` cells."""
    dys = sorted({s["dy"] for s in summary})
    cell = {(s["method"], s["dy"]): s for s in summary}
    rows = []
    for m in dict.fromkeys(s["method"] for s in summary):
        r = {"method": m}
        for d in dys:
            s = cell.get((m, d))
            r[f"dy = {d}"] = "–" if s is None else (
                f"{s['sw_mean']:.4g}" + ("" if not np.isfinite(s["sw_sd"]) else
                                         f" ± {s['sw_sd']:.2g}"))
        r["seconds / run"] = float(np.mean([cell[(m, d)]["seconds_mean"] for d in dys
                                            if (m, d) in cell]))
        rows.append(r)
    floor = {"method": "exact vs exact (noise floor)",
             **{f"dy = {d}": f"{next(s for s in summary if s['dy'] == d)['sw_exact_mean']:.4g}"
                for d in dys}, "seconds / run": None}
    return rows + [floor], ["method", *(f"dy = {d}" for d in dys), "seconds / run"]


def run_demo(prior, out_dir, *, full: bool = False, seed: int = 0, size: int | None = None,
             gaussian_samples: int = 2000, gmm: dict | None = None, plan: dict | None = None,
             progress: bool = True) -> tuple[Path, bool]:
    """Run the demo; write ``out_dir/report.html``; return ``(path, ok)`` where ``ok`` says
    every check passed: each diffusion method beats the degraded input on PSNR for denoise and
    sr4, every Gaussian-check sampler is within its tolerance, and every GMM run is finite.
    (Whether a method beats the best classical baseline is reported, not checked: it loses on
    inpainting with this small prior, and the report says so.)

    ``size`` (crop side; default 64, 96 with ``full``), ``plan`` (task → (methods with steps,
    baseline or None for the task's best); a method ``"name*K"`` is the mean of K samples of
    ``name``) and ``gmm`` (keyword arguments of ``run_gmm_benchmark``, or ``{}`` to skip it;
    ``gaussian_samples=0`` skips the Gaussian check) shrink it for tests.
    """
    from ..bench.gaussian import run_gaussian_benchmark

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    size = size or (SIZE_FULL if full else SIZE_DEFAULT)
    plan = plan if plan is not None else (FULL if full else DEFAULT)
    gmm = gmm if gmm is not None else (GMM_FULL if full else GMM_DEFAULT)
    crops = CROPS
    x = demo_images(size, crops)
    report = Report("jaxir demo")
    report.text(f"Prior: {prior.config.name} ({prior.image_size}×{prior.image_size}, "
                f"{prior.prediction}-prediction, {type(prior.sde).__name__}); images: "
                f"{size}×{size} crops of {', '.join(c[0] for c in crops)} (the photos test split, "
                f"never seen in training), restored patch-wise with {prior.image_size}-px "
                f"windows blended by a raised-cosine weight. PSNR on [0, 255] (= [-1, 1] with "
                f"range 2); SSIM 11×11 Gaussian window σ = 1.5; consistency = RMS of "
                f"A(x̂) − y (≈ σ_y for a restoration that fits the data as well as the truth). "
                f"Each method is compared with the task's best classical baseline on the "
                f"held-out evaluation (experiments/evaluate/). "
                f"jax {jax.__version__} on {jax.devices()[0].platform}"
                f"{'' if full else '; jaxir demo --full runs more methods and larger crops'}.",
                muted=True)
    report.heading("Image restoration")
    if progress:
        print(f"jaxir demo: restoring {len(x)} photo crops ({size}x{size}) for "
              f"{', '.join(plan)}", flush=True)
    _, ok, verdicts = _restoration_section(report, prior, plan, x, seed, progress)
    if gaussian_samples:
        if progress:
            print("  exact check: every sampler on a 4-D Gaussian", flush=True)
        rows = run_gaussian_benchmark(dim=4, num_samples=gaussian_samples, seed=seed,
                                      progress=progress)
        report.heading("Exact check: every sampler on a 4-D Gaussian")
        report.text(f"{gaussian_samples} samples each; pass = mean and covariance within 5 "
                    f"standard errors of the exact ones.", muted=True)
        report.table([{k: r[k] for k in ("sampler", "sde", "target", "nfe", "mean_err",
                                          "cov_err", "w2", "pass")} for r in rows])
        ok = ok and all(r["pass"] for r in rows)
    if gmm:
        from ..bench.gmm import run_gmm_benchmark, summarize

        if progress:
            print("  exact posterior: the MCGdiff 25-component GMM at d = 8", flush=True)
        rows = run_gmm_benchmark(dim=8, num_problems=2, seed=seed, progress=progress, **gmm)
        summary = summarize(rows)
        report.heading("Exact posterior: the 25-component Gaussian mixture (MCGdiff), d = 8")
        report.text(f"2 random problems per dy; {gmm.get('num_samples')} method samples vs "
                    f"{gmm.get('num_reference')} exact posterior samples, max-sliced W2 with "
                    f"100 projections (mean ± sd over problems), DDIM {gmm.get('num_steps')} "
                    f"steps, η = 0.6 (DDRM keeps its own η = 0.85).", muted=True)
        report.figure(_gmm_plot(summary, rows))
        table, cols = _gmm_table(summary)
        report.table(table, cols)
        ok = ok and all(r["finite"] for r in rows)
    report.heading("Summary")
    if verdicts:
        report.text("Against the best classical baseline (mean PSNR over the crops): "
                    + "; ".join(verdicts) + ".")
    report.text(f"Total time {time.perf_counter() - t_start:.0f} s. All checks passed: "
                f"{'yes' if ok else 'no'}.")
    return report.write(out_dir / "report.html"), ok
