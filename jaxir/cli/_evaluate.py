"""``jaxir evaluate`` and ``jaxir demo``: parsers, checks, entry points (the checks shared with
``jaxir restore`` are in `jaxir.cli._restore`).

Every user mistake (an unknown method or task, an option that does not apply, an output folder
that is a file, a table or report that exists) is a `UsageError`, raised before any computing.
"""

from __future__ import annotations

import argparse
import time

from ._common import UsageError, check_output_dir, nonnegative_int, positive_int
from ._restore import (
    _check_samples,
    _check_steps,
    _task_and_method,
    add_sampling_options,
    load_prior_or_fail,
)

# ---- jaxir evaluate ----

def evaluation_methods(args):
    """``--method`` split and checked against ``--task``, ``--samples`` and ``--steps``:
    ``(names, methods)``."""
    names = [m.strip() for m in args.method.split(",") if m.strip()]
    if not names:
        raise UsageError("--method is empty")
    methods = [_task_and_method(args.task, m)[1] for m in names]
    _check_samples(args.samples, methods)
    _check_steps(args.steps, methods)
    return names, methods


def evaluation_tables(args, may_append: bool):
    """``(out_dir, stem, csv_path)`` of the tables ``OUT/evaluate_TASK.{csv,md}``; a
    `UsageError` where one is a folder, or exists without ``--overwrite`` (or ``--append``
    where ``may_append``)."""
    out_dir = check_output_dir(args.out)
    stem = f"evaluate_{args.task}"
    csv_old, md_old = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    for f in (csv_old, md_old):
        if f.is_dir():
            raise UsageError(f"{str(f)!r} is a folder, not a file")
    kept = args.overwrite or (may_append and args.append)
    if not kept and (csv_old.exists() or md_old.exists()):
        how = "--append to add rows or --overwrite" if may_append else "--overwrite"
        raise UsageError(f"{str(csv_old if csv_old.exists() else md_old)!r} exists; pass "
                         f"{how} to replace it")
    return out_dir, stem, csv_old


def evaluation_images(args, methods):
    """The prior (when a method needs one) and the ``--n`` images of ``--data``, one
    prior-sized window each: ``(prior, size, images)``."""
    need_prior = any(m.kind == "diffusion" for m in methods)
    prior = load_prior_or_fail(args.prior) if need_prior else None
    size = 64 if prior is None else int(prior.image_size)  # one window per image
    from ..restore._evaluate import load_eval_images

    try:
        images = load_eval_images(args.data, args.n, size)
    except (ValueError, TypeError, OSError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    return prior, size, images


def _cmd_evaluate(args) -> int:
    names, methods = evaluation_methods(args)
    if args.append and args.overwrite:
        raise UsageError("--append and --overwrite exclude each other")
    out_dir, stem, csv_old = evaluation_tables(args, may_append=True)
    old = []
    if args.append and csv_old.exists():
        from ..restore._evaluate import read_results

        try:
            old = read_results(csv_old)
        except (KeyError, ValueError, OSError) as e:
            raise UsageError(f"--append: cannot read {str(csv_old)!r} ({e})") from None
        if {r["image"] for r in old} != set(range(args.n)):
            raise UsageError(f"--append: {str(csv_old)!r} scores "
                             f"{len({r['image'] for r in old})} images, this run --n {args.n}")
    prior, size, images = evaluation_images(args, methods)
    # --samples K: diffusion rows are "METHOD (mean of K)" ("METHOD (S steps, mean of K)" with a
    # --steps other than the method's default); classical ones are unchanged.
    # With --append the reference rows (pinv, A⁺y) are kept if the file has them.
    from ..restore._evaluate import evaluate, merge_results

    reference = not (args.append and any(r["method"] == "pinv" for r in old))
    rows = evaluate(names, args.task, prior=prior, n=args.n, steps=args.steps, seed=args.seed,
                    images=images, progress=True, batch_size=args.batch_size,
                    samples=args.samples, reference=reference)
    if old:
        rows = merge_results(old, rows)
    return write_evaluation(rows, out_dir, stem, f"{args.task} on {args.n} images of "
                            f"{args.data} ({size}x{size}); mean ± 95% CI:")


def write_evaluation(rows, out_dir, stem: str, heading: str) -> int:
    """Print ``heading`` and the summary table of ``rows``, write ``OUT/STEM.{csv,md}``."""
    from ..restore._evaluate import markdown_table, summarize, write_results

    print(heading)
    print(markdown_table(summarize(rows)))
    csv_path, md_path = write_results(rows, out_dir, stem)
    print(f"wrote {csv_path} and {md_path}")
    return 0


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    from ..restore._tasks import TASKS

    p = sub.add_parser("evaluate", help="PSNR / SSIM / LPIPS / consistency of methods on a data set",
                       description="Degrade N images of a data source with TASK, restore them "
                       "with each METHOD (and the degraded input A+y for reference), and write "
                       "OUT/evaluate_TASK.csv and .md: mean ± 95% CI of PSNR, SSIM, LPIPS "
                       "(AlexNet) and the consistency RMSE, NFE and seconds per image.")
    p.add_argument("--method", required=True, help="comma-separated method names, e.g. "
                   "ddrm,gaussian")
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--data", default="photos:test",
                   help="a data source spec (default photos:test, 64x64 crops)")
    p.add_argument("--n", type=positive_int, default=8, help="number of images (default 8)")
    p.add_argument("--out", default="jaxir-evaluate",
                   help="folder for the CSV and markdown (default jaxir-evaluate)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT/evaluate_TASK table")
    add_sampling_options(
        p, steps="sampling steps (default: each method's setting for the task, as for jaxir "
        "restore)", seed="random seed (degradation and samplers; default 0)",
        samples="rows are labelled 'METHOD (mean of K)' (default: each method's setting for "
        "the task, as for jaxir restore)")
    # (a --steps other than the method's default is named in the label too)
    p.add_argument("--append", action="store_true",
                   help="keep the rows of other methods already in OUT/evaluate_TASK.csv "
                   "(same --n, --data and --seed assumed) and add or replace these")
    p.set_defaults(func=_cmd_evaluate)
    return p


# ---- jaxir demo ----

def _cmd_demo(args) -> int:
    out_dir = check_output_dir(args.out)
    report = out_dir / "report.html"
    if report.is_dir():
        raise UsageError(f"{str(report)!r} is a folder, not a file")
    if report.exists() and not args.overwrite:
        raise UsageError(f"{str(report)!r} exists; pass --overwrite to replace it (or --out "
                         f"another folder)")
    prior = load_prior_or_fail(args.prior)
    from ..restore._demo import run_demo

    t0 = time.perf_counter()
    path, ok = run_demo(prior, out_dir, full=args.full, seed=args.seed,
                        gaussian_samples=args.samples)
    print(f"\njaxir demo: {time.perf_counter() - t0:.0f} s in all; report: {path.resolve()}")
    return 0 if ok else 1


def add_demo_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="restore bundled photographs and run the exact benchmarks; "
                       "writes one self-contained HTML report",
                       description="Offline demo (no download): restores crops of the "
                       "astronaut and coffee photographs (never seen in training) for several "
                       "tasks with several diffusion methods and the best classical baseline, "
                       "runs the Gaussian exact check and the GMM exact-posterior benchmark at "
                       "d = 8, and writes OUT/report.html (about 3 minutes on 2 CPU cores).")
    p.add_argument("--out", default="jaxir-demo", help="output folder (default jaxir-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/report.html")
    p.add_argument("--full", action="store_true",
                   help="the long run: 96-px crops, DiffPIR and ΠGDM too, the larger GMM "
                   "setting (several times the default's time; ΠGDM alone takes minutes on a "
                   "CPU)")
    p.add_argument("--prior", default="photos64", help="shipped prior name or .npz path "
                   "(default photos64)")
    p.add_argument("--samples", type=positive_int, default=2000,
                   help="samples per sampler in the Gaussian exact check (default 2000)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return p
