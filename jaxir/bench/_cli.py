"""``jaxir bench SUITE``: the benchmark suites' command-line entry points.

Each suite is one function ``_run_<suite>(args) -> exit code``; ``add_bench_parser`` registers
the options. Suites with an exact answer exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json

from ..cli import positive_int as _positive_int

SUITES = ("gaussian", "gmm", "perf")


def _int_list(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return vals


def _run_gaussian(args) -> int:
    from .gaussian import format_table, run_gaussian_benchmark

    rows = run_gaussian_benchmark(dim=args.dim or 4, num_samples=args.samples or 10_000,
                                  num_steps=args.steps or 1000, seed=args.seed,
                                  progress=not args.json)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0 if all(r["pass"] for r in rows) else 1


def _run_gmm(args) -> int:
    from .gmm import DEFAULT_METHODS, compare_published, format_table, run_gmm_benchmark, summarize

    rows = run_gmm_benchmark(dim=args.dim or 8, dys=args.dy, num_problems=args.problems,
                             methods=args.methods.split(",") if args.methods else DEFAULT_METHODS,
                             num_samples=args.samples or 1000, num_steps=args.steps or 100,
                             eta=args.eta, seed=args.seed, progress=not args.json)
    summary = summarize(rows)
    published = compare_published(rows)  # empty unless d = 8, 100 steps, η = 0.6
    if args.json:
        print(json.dumps({"summary": summary, "published": published, "rows": rows}, indent=1))
    else:
        print(format_table(summary))
        for c in published:
            print(f"{c['method']} dy={c['dy']}: published {c['published_mean']:.3g} lies "
                  f"{'inside' if c['inside_range'] else 'OUTSIDE'} the range over "
                  f"{c['n']} problems [{c['min']:.3g}, {c['max']:.3g}] "
                  f"({c['share_below']:.0%} of them at or below it)")
    return 0 if all(r["finite"] for r in rows) else 1


def _run_perf(args) -> int:
    from .perf import run_perf_cli

    return run_perf_cli(args)


def _dispatch(args) -> int:
    suite = args.suite
    if suite is None:
        if not args.quick:
            print("error: give a suite (gaussian, gmm, perf) or --quick (runs perf)",
                  file=__import__("sys").stderr)
            return 2
        suite = "perf"
    if args.quick and suite != "perf":
        print(f"error: --quick applies to the perf suite, not {suite!r}",
              file=__import__("sys").stderr)
        return 2
    return {"gaussian": _run_gaussian, "gmm": _run_gmm, "perf": _run_perf}[suite](args)


def add_bench_parser(sub) -> argparse.ArgumentParser:
    from .perf import add_perf_args

    b = sub.add_parser("bench", help="benchmarks (gaussian, gmm: exact answers; perf: speed)")
    b.add_argument("suite", nargs="?", choices=SUITES, default=None,
                   help="suite to run (default with --quick: perf)")
    b.add_argument("--quick", action="store_true",
                   help="perf: the small configuration (< 3 min on 2 CPU cores)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--dim", type=_positive_int, default=None,
                   help="dimension (gaussian: 4, gmm: 8)")
    b.add_argument("--samples", type=_positive_int, default=None,
                   help="samples per method (gaussian: 10000, gmm: 1000)")
    b.add_argument("--steps", type=_positive_int, default=None,
                   help="sampler steps (gaussian: 1000, gmm: 100 DDIM steps)")
    b.add_argument("--seed", type=int, default=0)
    g = b.add_argument_group("gmm")
    g.add_argument("--dy", type=_int_list, default=(1, 2, 4), help="observation sizes, e.g. 1,2,4")
    g.add_argument("--problems", type=_positive_int, default=3, help="problems per dy")
    g.add_argument("--methods", default=None, help="comma-separated (default: all but the "
                   "multinomial-resampling variants)")
    g.add_argument("--eta", type=float, default=0.6, help="DDIM η")
    add_perf_args(b)
    b.set_defaults(func=_dispatch)
    return b
