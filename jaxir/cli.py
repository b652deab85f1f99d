"""The ``jaxir`` command line.

    jaxir demo                       exact-prior check of every sampler, as a table
    jaxir bench gaussian [--json]    the same numbers as JSON / markdown
    jaxir train --config C --workdir D   train (resumes from D), on 1 device, a mesh or a pod
    jaxir sample --workdir D ...     sample a PNG grid from a trained model

User mistakes end with a one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line."""


def _cmd_bench(args) -> int:
    if args.suite == "gaussian":
        from .bench.gaussian import format_table, run_gaussian_benchmark

        rows = run_gaussian_benchmark(dim=args.dim, num_samples=args.samples,
                                      num_steps=args.steps, seed=args.seed,
                                      progress=not args.json)
        print(json.dumps(rows, indent=1) if args.json else format_table(rows))
        return 0 if all(r["pass"] for r in rows) else 1
    raise UsageError(f"unknown benchmark {args.suite!r}")


def _cmd_demo(args) -> int:
    from .bench.gaussian import format_table, run_gaussian_benchmark

    t0 = time.perf_counter()
    print("jaxir demo: every sampler, driven by the exact score of a 4-D Gaussian, "
          "against the exact answer", flush=True)
    rows = run_gaussian_benchmark(dim=4, num_samples=args.samples, seed=args.seed, progress=True)
    print(format_table(rows))
    ok = all(r["pass"] for r in rows)
    print(f"\n{sum(r['pass'] for r in rows)}/{len(rows)} samplers within 5 standard errors of "
          f"the exact mean and covariance ({args.samples} samples each); "
          f"{time.perf_counter() - t0:.0f} s in all.")
    return 0 if ok else 1


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxir", description="Diffusion-based image restoration in JAX.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the exact-prior sampler check and print its table")
    d.add_argument("--samples", type=_positive_int, default=10_000)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)
    b = sub.add_parser("bench", help="benchmarks with exact answers")
    b.add_argument("suite", choices=["gaussian"])
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--dim", type=_positive_int, default=4)
    b.add_argument("--samples", type=_positive_int, default=10_000)
    b.add_argument("--steps", type=_positive_int, default=1000)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_cmd_bench)
    from .training import add_sample_parser, add_train_parser

    add_train_parser(sub)
    add_sample_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"jaxir: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
