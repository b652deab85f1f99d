"""``jaxir restore``: parser, checks, entry point; the checks and options it shares with
``jaxir evaluate`` and ``jaxir demo`` (`jaxir.cli._evaluate`).

Every user mistake (a missing, unreadable or oversized file, a folder where a file is expected,
an output that exists or cannot be written, a size the task cannot take, an unknown method or
task, an option that does not apply) is a `UsageError`, raised before any computing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import (
    UsageError,
    check_input_file,
    check_output_file,
    nonnegative_int,
    note,
    positive_int,
)

MIN_SIZE, MAX_SIZE = 16, 4096


def _task_and_method(task: str, method: str):
    from ..restore._methods import get_method
    from ..restore._tasks import get_task

    try:
        return get_task(task), get_method(method, task)
    except ValueError as e:
        raise UsageError(str(e)) from None


def load_prior_or_fail(spec: str):
    """:func:`jaxir.priors.load_prior` with its errors as one-line `UsageError`s."""
    import zipfile

    from ..priors import SHIPPED, prior_path

    if str(spec) not in SHIPPED:
        p = Path(spec)
        if p.is_dir():
            raise UsageError(f"--prior {spec!r} is a folder; give a prior .npz file or one of "
                             f"the shipped names {', '.join(SHIPPED)}")
        if not p.exists():
            raise UsageError(f"--prior {spec!r} does not exist; give a prior .npz file or one "
                             f"of the shipped names {', '.join(SHIPPED)}")
        if not zipfile.is_zipfile(p):
            raise UsageError(f"--prior {spec!r} is not a .npz prior file (write one with "
                             f"jaxir.priors.export_prior)")
    from ..priors import load_prior

    try:
        return load_prior(spec)
    except FileNotFoundError as e:
        if str(spec) in SHIPPED:
            raise UsageError(f"the shipped prior {spec!r} is not installed "
                             f"({str(prior_path(spec))!r} is missing); pass --prior PATH to a "
                             f"prior .npz file") from None
        raise UsageError(str(e)) from None
    except (ValueError, KeyError, OSError) as e:
        raise UsageError(str(e).splitlines()[0]) from None


def _check_size(h: int, w: int, what: str):
    if min(h, w) < MIN_SIZE or max(h, w) > MAX_SIZE:
        raise UsageError(f"{what} is {h}x{w}; restore takes {MIN_SIZE} to {MAX_SIZE} pixels a "
                         f"side")


def _check_samples(samples, methods):
    if samples is not None and samples > 1 and not any(m.kind == "diffusion" for m in methods):
        raise UsageError(f"--samples {samples} averages diffusion posterior samples; "
                         f"{', '.join(m.name for m in methods)} is deterministic "
                         f"(use --samples 1)")


def _check_steps(steps, methods):
    if steps is not None and not any(m.kind == "diffusion" for m in methods):
        raise UsageError(f"--steps applies to diffusion methods; "
                         f"{', '.join(m.name for m in methods)} has no steps")


def _read(path, what: str, channels=None):
    from ..restore._io import read_image

    try:
        return read_image(path, channels, max_side=MAX_SIZE)
    except (FileNotFoundError, IsADirectoryError, ValueError) as e:
        raise UsageError(f"{what}: {e}" if what != "input" else str(e)) from None


def add_sampling_options(p, *, steps: str, seed: str, samples: str) -> None:
    """--prior, --steps, --seed, --samples and --batch-size (restore and evaluate); the help of
    --steps and --seed as given, ``samples`` ends the help of --samples."""
    p.add_argument("--prior", default="photos64", help="shipped prior name or .npz path "
                   "(default photos64)")
    p.add_argument("--steps", type=positive_int, default=None, help=steps)
    p.add_argument("--seed", type=nonnegative_int, default=0, help=seed)
    p.add_argument("--samples", type=positive_int, default=None, metavar="K",
                   help="average K posterior samples per patch (a Monte-Carlo posterior mean: "
                   "higher PSNR/SSIM, smoother, K times the time; diffusion methods only); "
                   + samples)
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="sampler draws per call (patches x samples; default 16)")


def _settings() -> str:
    """The per-task default settings (``TASK_SETTINGS``) for the help text."""
    from ..restore._methods import TASK_SETTINGS

    return "; ".join(f"{m} on {t}: {st} steps" + (f", mean of {k}" if k > 1 else "")
                     for (t, m), (st, k) in TASK_SETTINGS.items())


def _masked_tasks() -> list[str]:
    from ..restore._tasks import TASKS

    return [t.name for t in TASKS.values() if t.make_mask is not None]


# ---- jaxir restore ----

def _cmd_restore(args) -> int:
    task, method = _task_and_method(args.task, args.method)
    _check_samples(args.samples, [method])
    _check_steps(args.steps, [method])
    check_input_file(args.input)
    if args.mask is not None:
        if task.make_mask is None:
            raise UsageError(f"--mask applies to the tasks {', '.join(_masked_tasks())}, not "
                             f"to {task.name!r}")
        check_input_file(args.mask, "--mask")
    inputs = (args.input, args.mask)
    from ..restore._io import compare_path

    out = check_output_file(args.output, overwrite=args.overwrite, inputs=inputs)
    cmp_out = check_output_file(compare_path(out), overwrite=args.overwrite, inputs=inputs,
                                what="the comparison image")
    prior = load_prior_or_fail(args.prior) if method.kind == "diffusion" else None
    colorize = task.y_channels == 1

    img, info = _read(args.input, "input")
    gray = bool(info["gray"])
    h, w = img.shape[:2]
    if info["alpha"]:
        note(f"{args.input}: the alpha channel is ignored (the stored colours are restored)")
    mask = None
    if args.mask is not None:
        m, _ = _read(args.mask, "--mask", channels=1)
        mask = (m > 0).astype("float32")
        if mask.shape[:2] != (h, w):  # the inpainting tasks keep the size (factor 1)
            raise UsageError(f"--mask is {mask.shape[0]}x{mask.shape[1]}, the input is {h}x{w}")
    if args.degrade:
        _check_size(h, w, f"input {args.input!r}")
        if h % task.factor or w % task.factor:
            raise UsageError(f"task {task.name!r} with --degrade needs a height and width "
                             f"divisible by {task.factor}; {args.input!r} is {h}x{w}")
        if colorize and gray:
            raise UsageError(f"colorize with --degrade needs a colour image; {args.input!r} is "
                             f"grayscale")
    else:
        _check_size(h * task.factor, w * task.factor,
                    f"the restored image of {args.input!r} ({h}x{w} in)")
        if task.make_mask is not None and mask is None:
            raise UsageError(f"task {task.name!r} on a real image needs --mask MASK.png (white = "
                             f"observed), or --degrade to mask a clean image")
        if colorize and not gray:
            img, _ = _read(args.input, "input", channels=1)
            note(f"{args.input} is a colour image: colorize restores colour from its grey "
                 f"(luma) version")
    return _run_restore(args, task, method, prior, img, gray and not colorize, mask, out,
                        cmp_out)


def _run_restore(args, task, method, prior, img, gray, mask, out, cmp_out) -> int:
    import jax
    import numpy as np

    from .. import metrics
    from ..restore._evaluate import method_label
    from ..restore._io import comparison_image, save_image
    from ..restore._methods import best_baseline, default_settings
    from ..restore._restore import restore_image
    from ..restore._tasks import degrade_images

    def rgb(a):  # grayscale files are restored as RGB with equal channels, written back as grey
        return np.repeat(a, 3, -1) if a.shape[-1] == 1 and task.y_channels != 1 else a

    def back(a):
        return a.mean(-1, keepdims=True) if gray else a

    x = None
    if args.degrade:
        x = img
        y, m = degrade_images(jax.random.key(args.seed), task, x[None],
                              mask=None if mask is None else mask[None])
        y = np.asarray(y[0])
        mask = None if m is None else np.asarray(m[0])
    else:
        y = img
    steps, samples = default_settings(task.name, method.name)
    steps = steps if args.steps is None else args.steps
    samples = samples if args.samples is None else args.samples
    t0 = time.perf_counter()
    x_hat = back(restore_image(rgb(y), task, method, prior=prior, mask=mask, steps=steps,
                               seed=args.seed, progress=True, batch_size=args.batch_size,
                               samples=samples))
    secs = time.perf_counter() - t0
    save_image(out, x_hat)
    label = method.name if method.kind == "classical" else method_label(
        method.name, samples, steps if steps != method.default_steps else None)
    # the task's best classical baseline (held-out evaluation) next to the result, unless the
    # method is that baseline or the task has none besides A⁺y
    base_name = best_baseline(task.name)
    baseline = None
    if base_name not in (method.name, "pinv"):
        baseline = back(restore_image(rgb(y), task, base_name, mask=mask))
    panels = [("input", y if task.make_mask is None else y * mask)]  # holes as mid-grey
    if baseline is not None:
        panels.append((base_name, baseline))
    panels.append((label, x_hat))
    if x is not None:
        panels.append(("ground truth", x))
    save_image(cmp_out, comparison_image(panels).astype(np.float32) / 127.5 - 1.0)
    print(f"restored {args.input} ({task.name}, {label}) in {secs:.1f} s -> {out} "
          f"and {cmp_out}")
    if x is None:
        if baseline is not None:
            print(f"  the best classical baseline for {task.name}, {base_name}, is in "
                  f"{cmp_out} for comparison")
        return 0
    rows = [("degraded input (A+y)", back(restore_image(rgb(y), task, "pinv", mask=mask)))]
    if baseline is not None:
        rows.append((f"best baseline {base_name}", baseline))
    rows.append((label, x_hat))
    scores = {}
    for name, z in rows:
        scores[name] = p, s = float(metrics.psnr(z, x)), float(metrics.ssim(z, x))
        print(f"  {name:>22}: PSNR {p:6.2f} dB   SSIM {s:.4f}")
    if baseline is not None:
        from ..restore._demo import verdict

        print(f"  {label} {verdict(scores[label][0], scores[rows[1][0]][0], base_name)}")
    return 0


def add_restore_parser(sub) -> argparse.ArgumentParser:
    from ..restore._methods import METHODS
    from ..restore._tasks import TASKS

    p = sub.add_parser("restore", help="restore one image with a diffusion prior or a baseline",
                       description="Restore INPUT (a degraded image, or with --degrade a clean "
                       "image that is degraded first so PSNR/SSIM can be reported). Images of any "
                       "size are restored patch-wise with the 64x64 prior. Grayscale files are "
                       "restored as grayscale. Writes OUTPUT and OUTPUT_compare.png (input | "
                       "restored | ground truth); never overwrites a file without --overwrite.")
    p.add_argument("input", metavar="INPUT", help="image file (PNG of any bit depth, JPEG, ...)")
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--task", required=True,
                   help="; ".join(f"{t.name}: {t.description}" for t in TASKS.values())
                   .replace("%", "%%"))  # argparse formats help with %
    p.add_argument("--output", "-o", required=True, help="restored PNG; OUTPUT_compare.png too")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--degrade", action="store_true",
                   help="INPUT is clean: degrade it (seeded), restore, print PSNR/SSIM")
    p.add_argument("--mask", help="inpainting tasks only: mask PNG, white = observed (with "
                   "--degrade: the mask to degrade with instead of a drawn one)")
    add_sampling_options(
        p, steps="sampling steps (default: the method's official number, or the task's setting "
        f"where the held-out evaluation showed another better: {_settings()})",
        seed="random seed (degradation and sampler; default 0)",
        samples="default 1, or the task's setting (see --steps)")
    p.set_defaults(func=_cmd_restore)
    return p
