"""``jaxir demo``: an offline tour that writes one self-contained HTML report.

It restores crops of two photographs that ship with scikit-image and that the ``photos64``
prior never saw (the ``photos`` test split: astronaut, coffee), for several tasks, with several
training-free diffusion methods, the degraded input ``A⁺y`` and a classical baseline; then
runs the exact-answer benchmarks (every sampler on a 4-D Gaussian; the MCGdiff Gaussian-mixture
posterior at d = 8). Nothing is downloaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from ..report import Report
from ._evaluate import image_metrics, method_label
from ._io import from_uint8, to_uint8
from ._restore import restore_images
from ._tasks import degrade_images, get_task

#: (photo, top, left) of the demo crops: the astronaut's face, the spoon by the coffee cup.
CROPS = (("astronaut", 70, 190), ("coffee", 200, 300))

#: task -> (diffusion methods with their step counts, classical baseline). ΠGDM back-propagates
#: through the network at every step (about 7× the cost of a DDRM step on a CPU), so it gets fewer
#: steps and only the two headline tasks. DDNM+ is left out: with noisy measurements and its
#: official η = 0.85 its per-singular-value update is DDRM's (η = 0.85, η_b = 1) written in the
#: VP parametrisation, so with the same key it returns the same image (up to float rounding).
#: ``"ddrm*8"`` is the mean of 8 DDRM samples per patch (``restore_images(..., samples=8)``), the
#: Monte-Carlo posterior mean that PSNR / SSIM reward (8× the network evaluations, about 80 s
#: here, so only for 4× SR, where one sample ties bicubic). Inpainting 70 % of the pixels needs
#: more than DDRM's official 20 steps with this prior: with 20 steps the whole image is predicted
#: in one jump from σ̄ = 0.18 (t = 0.051) to 0.01, so even the observed pixels end up farther from
#: the truth than y is (held-out crops, ``experiments/evaluate/inpaint``); with 100 steps the last
#: jump starts at σ̄ = 0.047 < σ_y and the observed pixels are denoised.
FULL = {
    "denoise": ({"ddrm": 20, "diffpir": 20, "pigdm": 10}, "gaussian"),
    "sr4": ({"ddrm": 20, "ddrm*8": 20, "diffpir": 20, "pigdm": 10}, "bicubic"),
    "inpaint": ({"ddrm": 100, "diffpir": 20}, "biharmonic"),
}
QUICK = {
    "denoise": ({"ddrm": 10, "diffpir": 10, "pigdm": 10}, "gaussian"),
    "sr4": ({"ddrm": 10, "ddrm*4": 10, "diffpir": 10, "pigdm": 10}, "bicubic"),
}
GMM_FULL = dict(methods=("ddrm", "dps", "pigdm", "ddnm", "mcgdiff-32"), num_samples=500,
                num_reference=2000, num_steps=100)
GMM_QUICK = dict(methods=("ddrm", "dps", "ddnm", "mcgdiff-32"), num_samples=300,
                 num_reference=1000, num_steps=50)


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


def _restoration_section(report: Report, prior, plan: dict, x: np.ndarray, seed: int,
                         progress: bool) -> tuple[list[dict], bool]:
    rows_all, ok = [], True
    for ti, (task_name, (methods, baseline)) in enumerate(plan.items()):
        task = get_task(task_name)
        y, mask = degrade_images(jax.random.key(seed + ti), task, x)
        y = np.asarray(y)
        mask = None if mask is None else np.asarray(mask)
        names = [("pinv", None), *([(baseline, None)] if baseline else []), *methods.items()]
        results, rows = {}, []
        for name, steps in names:
            method, k = _parse_spec(name)
            if progress:
                print(f"  {task_name}: {method_label(method, k)}"
                      + (f" ({steps} steps)" if steps else ""), flush=True)
            t0 = time.perf_counter()
            x_hat = restore_images(y, task, method, prior=prior, mask=mask, steps=steps,
                                   seed=seed, progress=progress, samples=k)
            secs = time.perf_counter() - t0
            vals = image_metrics(task, x_hat, x, y, mask)
            results[name] = (x_hat, vals)
            label = "input A⁺y" if name == "pinv" else method_label(method, k)
            rows.append({"task": task_name, "method": label,
                         "steps": steps if steps else "–",
                         "NFE": steps * k if steps else "–",
                         "PSNR (dB)": float(np.mean(vals["psnr"])),
                         "SSIM": float(np.mean(vals["ssim"])),
                         "consistency RMSE": float(np.mean(vals["consistency"])),
                         "seconds": secs})
        base_psnr = np.mean(results["pinv"][1]["psnr"])
        for r, (name, _) in zip(rows, names):
            if name in methods:
                r["beats input"] = "yes" if r["PSNR (dB)"] > base_psnr else "NO"
                if task_name in ("denoise", "sr4") and r["PSNR (dB)"] <= base_psnr:
                    ok = False
            else:
                r["beats input"] = ""
        report.heading(f"{task_name}: {task.description}", 3)
        report.table(rows, ["method", "steps", "NFE", "PSNR (dB)", "SSIM", "consistency RMSE",
                            "seconds", "beats input"])
        for i in range(len(x)):
            items = [("ground truth", to_uint8(x[i]))]
            for name, _ in names:
                x_hat, vals = results[name]
                label = "input A⁺y" if name == "pinv" else method_label(*_parse_spec(name))
                items.append((f"{label} {vals['psnr'][i]:.1f} dB", to_uint8(x_hat[i])))
            report.images(items, scale=2 if x.shape[1] <= 128 else 1)
        rows_all += rows
    return rows_all, ok


def _gmm_plot(summary: list[dict], rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(s["method"] for s in summary))
    dys = sorted({s["dy"] for s in summary})
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        pos = np.arange(len(dys)) + k * width
        means = [next(s for s in summary if s["method"] == m and s["dy"] == d)["sw_mean"]
                 for d in dys]
        bars = ax.bar(pos, means, width, label=m, alpha=0.8)
        for j, d in enumerate(dys):  # each problem as a dot
            vals = [r["sw"] for r in rows if r["method"] == m and r["dy"] == d]
            ax.scatter([pos[j]] * len(vals), vals, s=10, c="k", zorder=3)
        del bars
    centre = np.arange(len(dys)) + 0.4 - width / 2
    floor = [next(s for s in summary if s["dy"] == d)["sw_exact_mean"] for d in dys]
    ax.scatter(centre, floor, marker="_", s=1500, c="r", zorder=4,
               label="exact vs exact (noise floor)")
    ax.set_xticks(centre, [f"dy = {d}" for d in dys])
    ax.set_ylabel("max-sliced W2 to the exact posterior")
    ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("25-component GMM posterior, d = 8 (lower is better; dots = problems)")
    return fig


def run_demo(prior, out_dir, *, quick: bool = False, seed: int = 0, size: int | None = None,
             gaussian_samples: int = 2000, gmm: dict | None = None, plan: dict | None = None,
             progress: bool = True) -> tuple[Path, bool]:
    """Run the demo; write ``out_dir/report.html`` (and the crops as PNG); return
    ``(path, ok)`` where ``ok`` says every check passed: each diffusion method beats the
    degraded input on PSNR for denoise and sr4, every Gaussian-check sampler is within its
    tolerance, and every GMM run is finite.

    ``size`` (crop side; default 96, 64 with ``quick``), ``plan`` (task → (methods with
    steps, baseline); a method ``"name*K"`` is the mean of K samples of ``name``) and ``gmm`` (keyword arguments of ``run_gmm_benchmark``, or ``{}`` to
    skip it; ``gaussian_samples=0`` skips the Gaussian check) shrink it for tests.
    """
    from ..bench.gaussian import run_gaussian_benchmark

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = size or (64 if quick else 96)
    plan = plan if plan is not None else (QUICK if quick else FULL)
    gmm = gmm if gmm is not None else (GMM_QUICK if quick else GMM_FULL)
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
                f"jax {jax.__version__} on {jax.devices()[0].platform}.", muted=True)
    report.heading("Image restoration")
    if progress:
        print(f"jaxir demo: restoring {len(x)} photo crops ({size}x{size}) for "
              f"{', '.join(plan)}", flush=True)
    _, ok = _restoration_section(report, prior, plan, x, seed, progress)
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
        from ..bench.gmm import format_table, run_gmm_benchmark, summarize

        if progress:
            print("  exact posterior: the MCGdiff 25-component GMM at d = 8", flush=True)
        rows = run_gmm_benchmark(dim=8, num_problems=2, seed=seed, progress=progress, **gmm)
        summary = summarize(rows)
        report.heading("Exact posterior: the 25-component Gaussian mixture (MCGdiff), d = 8")
        report.text(f"2 random problems per dy; {gmm.get('num_samples')} method samples vs "
                    f"{gmm.get('num_reference')} exact posterior samples, max-sliced W2 with "
                    f"100 projections, DDIM {gmm.get('num_steps')} steps, η = 0.6 (DDRM keeps "
                    f"its own η = 0.85). Bars: mean over problems; dots: each problem.", muted=True)
        report.figure(_gmm_plot(summary, rows))
        report.pre(format_table(summary))
        ok = ok and all(r["finite"] for r in rows)
    report.text(f"Total time {time.perf_counter() - t_start:.0f} s. All checks passed: "
                f"{'yes' if ok else 'NO'}.")
    return report.write(out_dir / "report.html"), ok
