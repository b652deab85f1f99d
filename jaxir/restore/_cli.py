"""``jaxir restore``, ``jaxir evaluate`` and ``jaxir demo``: argument parsing and user errors.

Every user mistake (a missing or unreadable file, a size the task cannot take, an unknown
method or task, a method that does not support the task, missing prior weights) is raised as
``jaxir.cli.UsageError``, which ``jaxir.cli.main`` prints as one ``jaxir: error: ...`` line
with exit code 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..cli import positive_int as _positive_int

MIN_SIZE, MAX_SIZE = 16, 4096


def _usage(msg: str):
    from ..cli import UsageError

    return UsageError(msg)


def _task_and_method(task: str, method: str):
    from ._methods import get_method
    from ._tasks import get_task

    try:
        return get_task(task), get_method(method, task)
    except ValueError as e:
        raise _usage(str(e)) from None


def load_prior_or_fail(spec: str):
    """:func:`jaxir.priors.load_prior` with its errors as one-line `UsageError`s."""
    from ..priors import SHIPPED, load_prior, prior_path

    try:
        return load_prior(spec)
    except FileNotFoundError as e:
        if str(spec) in SHIPPED:
            raise _usage(f"the shipped prior {spec!r} is not installed ({str(prior_path(spec))!r} "
                         f"is missing); pass --prior PATH to a prior .npz file") from None
        raise _usage(str(e)) from None
    except ValueError as e:
        raise _usage(str(e)) from None


def _check_size(h: int, w: int, what: str):
    if min(h, w) < MIN_SIZE or max(h, w) > MAX_SIZE:
        raise _usage(f"{what} is {h}x{w}; restore takes {MIN_SIZE} to {MAX_SIZE} pixels a side")


def _check_samples(samples: int, methods):
    if samples > 1 and not any(m.kind == "diffusion" for m in methods):
        raise _usage(f"--samples {samples} averages diffusion posterior samples; "
                     f"{', '.join(m.name for m in methods)} is deterministic (use --samples 1)")


_SAMPLES_HELP = ("average K posterior samples per patch (a Monte-Carlo posterior mean: "
                 "higher PSNR/SSIM, smoother, K times the time; diffusion methods only)")


# ---- jaxir restore ----

def _cmd_restore(args) -> int:
    import jax
    import numpy as np

    from .. import metrics
    from ._evaluate import method_label
    from ._io import compare_path, comparison_image, load_image, load_mask, save_image
    from ._restore import restore_image
    from ._tasks import degrade_images

    task, method = _task_and_method(args.task, args.method)
    _check_samples(args.samples, [method])
    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise _usage(f"--output must be a .png file, got {str(out)!r}")
    prior = load_prior_or_fail(args.prior) if method.kind == "diffusion" else None
    gray_input = task.y_channels == 1 and not args.degrade
    try:
        img = load_image(args.input, channels=1 if gray_input else 3)
    except (FileNotFoundError, ValueError) as e:
        raise _usage(str(e)) from None
    h, w = img.shape[:2]
    x = mask = None
    if args.degrade:
        _check_size(h, w, f"input {args.input!r}")
        if h % task.factor or w % task.factor:
            raise _usage(f"task {task.name!r} with --degrade needs a height and width divisible "
                         f"by {task.factor}; {args.input!r} is {h}x{w}")
        x = img
        y, m = degrade_images(jax.random.key(args.seed), task, x[None])
        y = np.asarray(y[0])
        mask = None if m is None else np.asarray(m[0])
    else:
        y = img
        _check_size(h * task.factor, w * task.factor,
                    f"the restored image of {args.input!r} ({h}x{w} in)")
        if task.make_mask is not None:
            if args.mask is None:
                raise _usage(f"task {task.name!r} on a real image needs --mask MASK.png (white = "
                             f"observed), or --degrade to mask a clean image")
            try:
                mask = load_mask(args.mask)
            except (FileNotFoundError, ValueError) as e:
                raise _usage(str(e)) from None
            if mask.shape[:2] != (h, w):
                raise _usage(f"--mask is {mask.shape[0]}x{mask.shape[1]}, the input is {h}x{w}")
    t0 = time.perf_counter()
    x_hat = restore_image(y, task, method, prior=prior, mask=mask, steps=args.steps,
                          seed=args.seed, progress=True, batch_size=args.batch_size,
                          samples=args.samples)
    secs = time.perf_counter() - t0
    save_image(out, x_hat)
    y_view = y if task.make_mask is None else y * mask  # show holes as mid-grey
    label = method.name if method.kind == "classical" else method_label(
        method.name, args.samples,
        args.steps if args.steps not in (None, method.default_steps) else None)
    panels = [("input", y_view), (label, x_hat)]
    if x is not None:
        panels.append(("ground truth", x))
    save_image(compare_path(out), comparison_image(panels).astype(np.float32) / 127.5 - 1.0)
    print(f"restored {args.input} ({task.name}, {label}) in {secs:.1f} s -> {out} "
          f"and {compare_path(out)}")
    if x is not None:
        base = restore_image(y, task, "pinv", mask=mask)
        for name, z in (("degraded input (A+y)", base), (label, x_hat)):
            p = float(metrics.psnr(z, x))
            s = float(metrics.ssim(z, x))
            print(f"  {name:>22}: PSNR {p:6.2f} dB   SSIM {s:.4f}")
    return 0


def add_restore_parser(sub) -> argparse.ArgumentParser:
    from ._methods import METHODS
    from ._tasks import TASKS

    p = sub.add_parser("restore", help="restore one image with a diffusion prior or a baseline",
                       description="Restore INPUT (a degraded image, or with --degrade a clean "
                       "image that is degraded first so PSNR/SSIM can be reported). Images of any "
                       "size are restored patch-wise with the 64x64 prior.")
    p.add_argument("input", metavar="INPUT", help="image file (PNG, JPEG, ...)")
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--output", "-o", required=True, help="restored PNG; OUT_compare.png too")
    p.add_argument("--degrade", action="store_true",
                   help="INPUT is clean: degrade it (seeded), restore, print PSNR/SSIM")
    p.add_argument("--mask", help="inpainting mask PNG (white = observed) for a real image")
    p.add_argument("--prior", default="photos64", help="shipped prior name or .npz path")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="sampling steps (default: the method's official number)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=_positive_int, default=1, metavar="K", help=_SAMPLES_HELP)
    p.add_argument("--batch-size", type=_positive_int, default=16,
                   help="sampler draws per call (patches x samples)")
    p.set_defaults(func=_cmd_restore)
    return p


# ---- jaxir evaluate ----

def _cmd_evaluate(args) -> int:
    from ._evaluate import evaluate, markdown_table, summarize, write_results

    names = [m.strip() for m in args.method.split(",") if m.strip()]
    if not names:
        raise _usage("--method is empty")
    methods = [_task_and_method(args.task, m)[1] for m in names]
    _check_samples(args.samples, methods)
    need_prior = any(m.kind == "diffusion" for m in methods)
    prior = load_prior_or_fail(args.prior) if need_prior else None
    size = 64 if prior is None else int(prior.image_size)  # one window per image
    from ._evaluate import load_eval_images

    try:
        images = load_eval_images(args.data, args.n, size)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        raise _usage(str(e)) from None
    stem = f"evaluate_{args.task}"
    old = []
    if args.append:
        from ._evaluate import read_results

        old_csv = Path(args.out) / f"{stem}.csv"
        if old_csv.exists():
            try:
                old = read_results(old_csv)
            except (KeyError, ValueError) as e:
                raise _usage(f"--append: cannot read {str(old_csv)!r} ({e})") from None
            if {r["image"] for r in old} != set(range(args.n)):
                raise _usage(f"--append: {str(old_csv)!r} scores "
                             f"{len({r['image'] for r in old})} images, this run --n {args.n}")
    # --samples K: diffusion rows are "METHOD (mean of K)" ("METHOD (S steps, mean of K)" with a
    # --steps other than the method's default); classical ones are unchanged.
    # With --append the reference rows (pinv, A⁺y) are kept if the file has them.
    reference = not (args.append and any(r["method"] == "pinv" for r in old))
    rows = evaluate(names, args.task, prior=prior, n=args.n, steps=args.steps, seed=args.seed,
                    images=images, progress=True, batch_size=args.batch_size,
                    samples=args.samples, reference=reference)
    if old:
        from ._evaluate import merge_results

        rows = merge_results(old, rows)
    print(f"{args.task} on {args.n} images of {args.data} ({size}x{size}); "
          f"mean ± 95% CI:")
    print(markdown_table(summarize(rows)))
    csv_path, md_path = write_results(rows, args.out, stem)
    print(f"wrote {csv_path} and {md_path}")
    return 0


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="PSNR / SSIM / consistency of methods on a data set")
    p.add_argument("--method", required=True, help="comma-separated method names")
    p.add_argument("--task", required=True)
    p.add_argument("--data", default="photos:test",
                   help="a data source spec (default photos:test, 64x64 crops)")
    p.add_argument("--n", type=_positive_int, default=8, help="number of images")
    p.add_argument("--out", default="jaxir-evaluate", help="folder for the CSV and markdown")
    p.add_argument("--prior", default="photos64")
    p.add_argument("--steps", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=_positive_int, default=1, metavar="K",
                   help=_SAMPLES_HELP + "; rows are labelled 'METHOD (mean of K)'")
    # (a --steps other than the method's default is named in the label too)
    p.add_argument("--append", action="store_true",
                   help="keep the rows of other methods already in OUT/evaluate_TASK.csv "
                   "(same --n, --data and --seed assumed) and add or replace these")
    p.add_argument("--batch-size", type=_positive_int, default=16,
                   help="sampler draws per call (patches x samples)")
    p.set_defaults(func=_cmd_evaluate)
    return p


# ---- jaxir demo ----

def _cmd_demo(args) -> int:
    from ._demo import run_demo

    prior = load_prior_or_fail(args.prior)
    t0 = time.perf_counter()
    path, ok = run_demo(prior, args.out, quick=args.quick, seed=args.seed,
                        gaussian_samples=args.samples)
    print(f"\njaxir demo: {time.perf_counter() - t0:.0f} s in all; report: {path.resolve()}")
    return 0 if ok else 1


def add_demo_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="restore bundled photographs and run the exact benchmarks; "
                       "writes one self-contained HTML report",
                       description="Offline demo (no download): restores crops of the "
                       "astronaut and coffee photographs (never seen in training) for several "
                       "tasks with several diffusion methods and a classical baseline, runs "
                       "the Gaussian exact check and the GMM exact-posterior benchmark at d = 8, "
                       "and writes report.html.")
    p.add_argument("--out", default="jaxir-demo", help="output folder (default jaxir-demo)")
    p.add_argument("--quick", action="store_true", help="fewer images, tasks and steps")
    p.add_argument("--prior", default="photos64")
    p.add_argument("--samples", type=_positive_int, default=2000,
                   help="samples per sampler in the Gaussian exact check")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return p
