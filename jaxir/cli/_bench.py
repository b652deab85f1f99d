"""``jaxir bench SUITE``: the benchmark suites' parser and entry points.

Each suite is one function ``_run_<suite>(args) -> exit code``; its options are checked before
anything runs. Suites with an exact answer exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._common import UsageError, nonnegative_int, positive_int

SUITES = ("gaussian", "gmm", "perf")
#: sections of `jaxir.bench.perf.run_perf` (a test checks this equals ``perf.SECTIONS``)
PERF_SECTIONS = ("samplers", "diffrax", "grad", "train")


def _int_list(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return vals


def _name_list(s: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in s.split(",") if v.strip())
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {s!r}")
    return vals


def _run_gaussian(args) -> int:
    from ..bench.gaussian import format_table, run_gaussian_benchmark

    rows = run_gaussian_benchmark(dim=args.dim or 4, num_samples=args.samples or 10_000,
                                  num_steps=args.steps or 1000, seed=args.seed,
                                  progress=not args.json)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0 if all(r["pass"] for r in rows) else 1


def _run_gmm(args) -> int:
    from ..bench.gmm import (
        DEFAULT_METHODS,
        METHODS,
        compare_published,
        format_table,
        run_gmm_benchmark,
        summarize,
    )

    methods = args.methods or DEFAULT_METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(METHODS)}")
    dim = args.dim or 8
    if max(args.dy) > dim:
        raise UsageError(f"--dy {max(args.dy)} is larger than the dimension {dim}")
    rows = run_gmm_benchmark(dim=dim, dys=args.dy, num_problems=args.problems,
                             methods=methods, num_samples=args.samples or 1000,
                             num_steps=args.steps or 100, eta=args.eta, seed=args.seed,
                             progress=not args.json)
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


def _check_known(option: str, unknown, known) -> None:
    if unknown:
        raise UsageError(f"{option}: unknown {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(known)}")


def _check_net(option: str, name) -> None:
    """A U-Net size name of `jaxir.models.unet_config`, or "toy" (None: not given)."""
    if name is not None and name != "toy":
        from ..models import unet_config

        try:
            unet_config(name)
        except ValueError as e:
            raise UsageError(f"{option}: {e}") from None


def _run_perf(args) -> int:
    _check_known("--sections", sorted(set(args.sections or ()) - set(PERF_SECTIONS)),
                 PERF_SECTIONS)
    _check_net("--net", args.net)
    if args.samplers is not None:
        from ..bench._perf_samplers import SAMPLERS

        _check_known("--samplers", [s for s in args.samplers if s not in SAMPLERS], SAMPLERS)
    _check_net("--grad-net", args.grad_net)
    if args.grad_variants is not None:
        from ..bench._perf_grad import VARIANTS

        _check_known("--grad-variants", [v for v in args.grad_variants if v not in VARIANTS],
                     VARIANTS)
    from ..bench.perf import format_perf, run_perf

    over = {k: v for k, v in (("net", args.net), ("batch", args.batch), ("steps", args.n),
                              ("samplers", args.samplers), ("grad_net", args.grad_net),
                              ("grad_steps", args.grad_n), ("grad_variants", args.grad_variants),
                              ("grad_time_max_n", args.grad_time_max_n)) if v is not None}
    progress = (lambda s: print(s, file=sys.stderr, flush=True))
    res = run_perf(quick=args.quick, sections=args.sections or PERF_SECTIONS,
                   progress=progress, **over)
    print(json.dumps(res, indent=1) if args.json else format_perf(res))
    return 0


_GMM_ONLY = ("dy", "problems", "methods", "eta")
_PERF_ONLY = ("net", "batch", "n", "samplers", "sections", "grad_net", "grad_n",
              "grad_variants", "grad_time_max_n")


def _dispatch(args) -> int:
    suite = args.suite
    if suite is None:
        if not args.quick:
            raise UsageError("bench: give a suite (gaussian, gmm, perf), or --quick (runs perf)")
        suite = "perf"
    if args.quick and suite != "perf":
        raise UsageError(f"bench: --quick applies to the perf suite, not {suite!r}")
    defaults = {"dy": (1, 2, 4), "problems": 3, "methods": None, "eta": 0.6}
    given = [o for o in _GMM_ONLY if getattr(args, o) != defaults[o]] if suite != "gmm" else []
    given += [o for o in _PERF_ONLY if getattr(args, o) is not None] if suite != "perf" else []
    if given:
        raise UsageError(f"bench {suite}: {', '.join('--' + o.replace('_', '-') for o in given)} "
                         f"{'applies' if len(given) == 1 else 'apply'} to another suite")
    return {"gaussian": _run_gaussian, "gmm": _run_gmm, "perf": _run_perf}[suite](args)


def add_bench_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="benchmarks (gaussian, gmm: exact answers; perf: speed)",
                       description="gaussian: every sampler against an exact Gaussian (mean and "
                       "covariance within 5 standard errors); gmm: the MCGdiff 25-component "
                       "mixture posterior benchmark (max-sliced W2 to exact posterior samples); "
                       "perf: sampler overhead, diffrax vs lax.scan, gradient memory.")
    b.add_argument("suite", nargs="?", choices=SUITES, default=None,
                   help="suite to run (default with --quick: perf)")
    b.add_argument("--quick", action="store_true",
                   help="perf: the small configuration (< 3 min on 2 CPU cores)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--dim", type=positive_int, default=None,
                   help="dimension (gaussian: 4, gmm: 8)")
    b.add_argument("--samples", type=positive_int, default=None,
                   help="samples per method (gaussian: 10000, gmm: 1000)")
    b.add_argument("--steps", type=positive_int, default=None,
                   help="sampler steps (gaussian: 1000, gmm: 100 DDIM steps)")
    b.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    g = b.add_argument_group("gmm")
    g.add_argument("--dy", type=_int_list, default=(1, 2, 4),
                   help="observation sizes, e.g. 1,2,4 (default)")
    g.add_argument("--problems", type=positive_int, default=3,
                   help="problems per dy (default 3)")
    g.add_argument("--methods", type=_name_list, default=None,
                   help="comma-separated (default: all but the multinomial-resampling variants)")
    g.add_argument("--eta", type=float, default=0.6, help="DDIM η (default 0.6)")
    p = b.add_argument_group("perf")
    p.add_argument("--net", default=None,
                   help="U-Net config for the sampler section (toy, tiny, small, base)")
    p.add_argument("--batch", type=positive_int, default=None, help="batch size")
    p.add_argument("--n", type=_int_list, default=None, help="sampler steps, e.g. 20,100,1000")
    p.add_argument("--samplers", type=_name_list, default=None,
                   help="comma-separated sampler names (default: all)")
    p.add_argument("--sections", type=_name_list, default=None,
                   help=f"comma-separated subset of {','.join(PERF_SECTIONS)}")
    p.add_argument("--grad-net", default=None,
                   help="network for the gradient section (toy, tiny, small, base)")
    p.add_argument("--grad-n", type=_int_list, default=None,
                   help="gradient section: sampler steps, e.g. 10,31,100,316,1000")
    p.add_argument("--grad-variants", type=_name_list, default=None,
                   help="gradient section: e.g. ddim/naive,ddim/remat,ddim/sqrt (default: all)")
    p.add_argument("--grad-time-max-n", type=positive_int, default=None,
                   help="gradient section: time grad/forward only up to this N")
    b.set_defaults(func=_dispatch)
    return b
