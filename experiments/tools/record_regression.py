"""Record or check the fixed-key regression file of jaxir (``tests/data/regression/``).

The cases (every sampler, posterior sampler, loss / train step, restoration entry point and
CLI command on tiny inputs) are defined once, in ``tests/regression_cases.py``; this script
and ``tests/test_regression.py`` both import them.

    python experiments/tools/record_regression.py            # --check: compare, change nothing
    python experiments/tools/record_regression.py --check --exact   # bitwise (determinism)
    python experiments/tools/record_regression.py --write    # recompute and overwrite the files
    python experiments/tools/record_regression.py --write --group inverse --case dps_dense

When regenerating is allowed: only when a change is *meant* to change numbers (a bug fix, a
new official default, a deliberately different algorithm), never to make a refactoring pass.
Write only the groups / cases concerned (``--group`` / ``--case``), and give the reason in the
commit message of the commit that changes ``tests/data/regression/``. New cases are added with
``--write --group G --case NEW`` (the other cases of the group keep their stored arrays).

Run from the repository root with the project's venv. ``--check`` exits 1 when any case
differs from the stored arrays (tolerances: `regression_cases.compare`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # as the tests run (tests/conftest.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import regression_cases as rc  # noqa: E402


def _run(groups, only):
    results: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for g in groups:
        for name, fn in rc.GROUPS[g].items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            results.setdefault(g, {})[name] = fn()
            print(f"  {g}/{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return results


def _write(results) -> None:
    for g, cases in results.items():
        stored = rc.load_group(g) if rc.group_path(g).exists() else {}
        stored.update(cases)  # only the recomputed cases change
        stale = sorted(set(stored) - set(rc.GROUPS[g]))
        for c in stale:  # cases no longer defined
            del stored[c]
        path = rc.save_group(g, stored)
        print(f"wrote {path.relative_to(ROOT)} ({len(stored)} cases"
              + (f"; dropped {stale}" if stale else "") + ")")
        if g == "cli":
            js = rc.DATA_DIR / "cli.json"
            js.write_text(json.dumps(rc.cli_summary(stored), indent=1) + "\n")
            print(f"wrote {js.relative_to(ROOT)}")


def _bitwise(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _check(results, exact: bool) -> int:
    bad = 0
    for g, cases in results.items():
        stored = rc.load_group(g) if rc.group_path(g).exists() else {}
        for name, got in cases.items():
            if name not in stored:
                print(f"FAIL {g}/{name}: not recorded")
                bad += 1
                continue
            want = stored[name]
            if exact:
                problems = [f"{k}: not bitwise equal" for k in sorted(set(got) | set(want))
                            if k not in got or k not in want or not _bitwise(got[k], want[k])]
            else:
                problems = rc.GROUPS[g][name].compare(got, want)
            if problems:
                bad += 1
                print(f"FAIL {g}/{name}:")
                for p in problems:
                    print(f"    {p}")
    n = sum(len(c) for c in results.values())
    print(f"{n - bad} of {n} cases match" + (" bitwise" if exact else ""))
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="compare with the stored arrays (the default)")
    mode.add_argument("--write", action="store_true", help="recompute and store (deliberate only)")
    p.add_argument("--exact", action="store_true", help="with --check: require bitwise equality")
    p.add_argument("--group", action="append", choices=sorted(rc.GROUPS),
                   help="only these groups (repeatable)")
    p.add_argument("--case", action="append", help="only these case names (repeatable)")
    args = p.parse_args(argv)
    groups = args.group or list(rc.GROUPS)
    t0 = time.perf_counter()
    results = _run(groups, set(args.case or ()))
    print(f"computed {sum(len(c) for c in results.values())} cases in "
          f"{time.perf_counter() - t0:.0f} s")
    if args.write:
        _write(results)
        return 0
    return _check(results, args.exact)


if __name__ == "__main__":
    sys.exit(main())
