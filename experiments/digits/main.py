"""Train / sample / evaluate the digits demo (see README.md in this folder).

    python experiments/digits/main.py train --config digits_small --workdir experiments/digits/workdir
    python experiments/digits/main.py sample --workdir experiments/digits/workdir --output x.png
    python experiments/digits/main.py evaluate --workdir experiments/digits/workdir

`train` and `sample` are the same commands as `jaxir train` / `jaxir sample`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxir.cli import add_sample_parser, add_train_parser


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from evaluate import add_evaluate_parser

    p = argparse.ArgumentParser(prog="experiments/digits/main.py")
    sub = p.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_sample_parser(sub)
    add_evaluate_parser(sub)
    args = p.parse_args(argv)
    from jaxir.cli import UsageError

    try:
        return args.func(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
