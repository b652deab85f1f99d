"""The ``jaxir`` command line.

    jaxir demo [--quick] [--out D]   restore bundled photos + exact benchmarks -> D/report.html
    jaxir restore --method M --task T IN -o OUT [--degrade]   restore one image (any size)
    jaxir evaluate --method M,M2 --task T [--data S --n N]    PSNR / SSIM / consistency table
    jaxir bench gaussian [--json]    the same numbers as JSON / markdown
    jaxir bench gmm --dim 8 [--json] the MCGdiff mixture-posterior benchmark
    jaxir train --config C --workdir D   train (resumes from D), on 1 device, a mesh or a pod
    jaxir sample --workdir D ...     sample a PNG grid from a trained model

User mistakes end with a one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line."""


def positive_int(s: str) -> int:
    """argparse type for the positive integer options of every subcommand."""
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
    from .restore._cli import add_demo_parser, add_evaluate_parser, add_restore_parser

    add_demo_parser(sub)
    add_restore_parser(sub)
    add_evaluate_parser(sub)
    from .bench._cli import add_bench_parser

    add_bench_parser(sub)
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
