"""Fixed-key regression: jaxir's numbers must not change unless a change means them to.

Every case of ``tests/regression_cases.py`` (every sampler of `jaxir.samplers`, every
posterior sampler and guidance wrapper of `jaxir.inverse`, a loss value and two train steps for
every loss kind / learned family of `jaxir.training`, `restore_image` and `restore_learned`,
and the ``jaxir restore | evaluate | bench gaussian | bench gmm | train | sample`` (a
generative run and a learned IR-SDE restoration with ``--lq``) commands) is recomputed with
its fixed keys and compared with the arrays stored in ``tests/data/regression/<group>.npz``
(written by ``experiments/tools/record_regression.py --write``; regenerate only when a change
is meant to change numbers, with the reason in the commit message — see that script). This is
a behaviour lock for refactorings, not a correctness test: correctness is tested against exact
answers elsewhere.

Tolerances (`regression_cases.compare`): float arrays ``rtol = 1e-5`` and ``atol = 1e-5 ·
max|stored array|`` — float32 rounding of a refactoring that reorders operations, amplified
by a few sampler steps. Measured headroom: running every jit-compiled case eagerly (XLA then
fuses and orders the operations differently) moved no fixed-step case by more than 0.09 of
this tolerance (most by < 0.03). Ints, bools and strings exactly (an NFE may change integer
width); decoded PNG pixels within one grey level (a float near a rounding boundary); numbers
printed by the CLI within one unit of their last printed digit.

Discrete choices: the step acceptance of an adaptive solver (tsit5 with rtol = atol = 1e-3)
is discontinuous in its inputs, and the eager run above did flip one in the adaptive flow
case (NFE 55 → 61, x moved 1.3e-4 relative). The three adaptive cases (``adaptive=True``) are
therefore compared with ``rtol = 1e-2`` and their NFE within 25 %. MCGdiff's resampling
(indices from comparing cumulative weights with uniforms) is discontinuous too; a flip needs a
comparison within ~1e-7 relative of its threshold (not seen in the eager run); if the MCGdiff
case alone fails after a refactoring, look at its smooth ``x_mean`` before suspecting the
change.

The stored arrays are a float32 **CPU reference**. On an accelerator at its default precision
(TF32 matmuls on NVIDIA, one bfloat16 pass on TPU; ``jaxir.precision``) a network's products
round their operands to 10 / 7 mantissa bits (2⁻¹¹ / 2⁻⁸ relative each, against the float32
reference's 2⁻²⁴), so cases that run a real network move beyond the tolerance above for a
reason that is not a regression: under ``JAXIR_EMULATE_MATMUL=tf32`` on a CPU,
``cli/train_then_sample`` (a tiny U-Net trained 3 steps) reports a gradient norm 2.5e-5
relative off its stored value, 1.2 times its tolerance (the toy-network and exact-prior cases
pass there: their products are elementwise or ask for ``HIGHEST``). The exact parts are tested
at their own tolerances by the numerics tests. So wherever the test process does not compute as the reference did (a non-CPU default
backend, or ``JAXIR_EMULATE_MATMUL`` set: ``tests/conftest.py``), every case is recomputed in
one subprocess on the CPU backend (``JAX_PLATFORMS=cpu``, no emulation) and compared there;
each test still reports its own case, and a warning printed in the run's summary says so. No
case is skipped.

Time (83 tests, measured on the team machine's 2 shared cores): 176 s of CPU (user), 575 s
wall at load average 12; one XLA compilation per case dominates (~1-2 s each; the CLI cases
train_then_sample, bench_gmm_smallest, restore_ddrm_tiny_unet_prior and evaluate_two_crops
take ~35 s of it). ``-k "not cli/"`` skips those.
"""

import functools
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
import regression_cases as rc

TESTS = Path(__file__).resolve().parent
#: does this process compute as the reference was recorded (float32 on the CPU backend)?
CPU_REFERENCE = (jax.default_backend() == "cpu"
                 and not os.environ.get("JAXIR_EMULATE_MATMUL", "").strip())
REASON = ("the regression file is a float32 CPU reference; this process runs on "
          f"{jax.default_backend()!r}"
          + (f" with JAXIR_EMULATE_MATMUL={os.environ['JAXIR_EMULATE_MATMUL']}"
             if os.environ.get("JAXIR_EMULATE_MATMUL", "").strip() else "")
          + ", whose default-precision network products (TF32 / bf16 operands) move the "
          "cases that run a real network beyond its rtol 1e-5: every case is recomputed on the "
          "CPU backend in a subprocess (JAX_PLATFORMS=cpu) and compared there")

_CPU_CHECK = r"""
import json, sys, traceback
import regression_cases as rc
only = set(sys.argv[1:])
out = {}
for g, cases in rc.GROUPS.items():
    stored = rc.load_group(g) if rc.group_path(g).exists() else {}
    for name, c in cases.items():
        key = f"{g}/{name}"
        if only and key not in only:
            continue
        if name not in stored:
            out[key] = ["not recorded"]
            continue
        try:
            out[key] = c.compare(c(), stored[name])
        except Exception:
            out[key] = ["raised: " + traceback.format_exc(limit=3)]
print("RESULT" + json.dumps(out))
"""


@functools.cache
def _cpu_problems(selected: tuple[str, ...]) -> dict[str, list[str]]:
    """``{group/name: problems}`` of the ``selected`` cases, computed on the CPU backend in one
    subprocess (the path of a process that is not the CPU reference)."""
    warnings.warn(REASON, stacklevel=2)
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAXIR_EMULATE_MATMUL", "JAX_DEFAULT_MATMUL_PRECISION")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(TESTS.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    r = subprocess.run([sys.executable, "-c", _CPU_CHECK, *selected], cwd=TESTS.parent, env=env,
                       capture_output=True, text=True, timeout=1800)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise RuntimeError(f"the CPU regression subprocess failed (exit {r.returncode}):\n"
                       f"{r.stderr[-3000:]}")


@pytest.fixture(scope="module")
def selected_cases(request):
    """The cases this session runs (the CPU subprocess computes only those)."""
    ids = {item.callspec.params["group"] + "/" + item.callspec.params["name"]
           for item in request.session.items
           if item.module is request.module and hasattr(item, "callspec")}
    return tuple(sorted(ids))

CASES = [(g, c) for g, cases in rc.GROUPS.items() for c in cases]


@functools.cache
def _stored(group):
    if not rc.group_path(group).exists():
        return {}
    return rc.load_group(group)


@pytest.mark.parametrize("group,name", CASES, ids=[f"{g}/{c}" for g, c in CASES])
def test_case_matches_the_stored_arrays(group, name, selected_cases):
    stored = _stored(group)
    assert name in stored, (f"{group}/{name} is not recorded: run experiments/tools/"
                            f"record_regression.py --write --group {group} --case {name}")
    c = rc.GROUPS[group][name]
    if CPU_REFERENCE:
        problems = c.compare(c(), stored[name])
    else:  # see the module docstring: compared on the CPU backend, in a subprocess
        problems = _cpu_problems(selected_cases)[f"{group}/{name}"]
    assert not problems, f"{group}/{name} changed:\n  " + "\n  ".join(problems)


def test_every_stored_case_is_still_defined():
    for group in rc.GROUPS:
        stale = sorted(set(_stored(group)) - set(rc.GROUPS[group]))
        assert not stale, f"{group}: stored cases no longer defined: {stale}"


def test_cli_json_mirrors_the_stored_cli_arrays():
    """``cli.json`` (the readable copy: printed numbers, files, pixel checksums) is the one
    written with the stored ``cli.npz``."""
    mirror = json.loads((rc.DATA_DIR / "cli.json").read_text())
    assert mirror == json.loads(json.dumps(rc.cli_summary(_stored("cli"))))


def test_compare_catches_changes():
    """The comparison itself: a change of 1e-4 relative fails, 1e-6 passes; pixel and
    printed-digit rules; integer widths; the adaptive cases' bands; new and missing outputs."""
    w = {"x": np.array([1.0, -2.0, 0.5], np.float32), "n": np.array(3, np.int32),
         "png:a": np.array([[10, 200]], np.uint8), "p": np.array(["23.45", "0.8123"]),
         "s/nfe": np.array(40, np.int32)}
    ok = {**w, "x": w["x"] * (1 + 1e-6), "png:a": np.array([[11, 199]], np.uint8),
          "p": np.array(["23.46", "0.8122"]), "n": np.array(3, np.int64)}
    assert rc.compare(ok, w) == []
    for bad in ({**w, "x": w["x"] * (1 + 1e-4)}, {**w, "n": np.array(4)},
                {**w, "png:a": np.array([[12, 200]], np.uint8)},
                {**w, "p": np.array(["23.47", "0.8123"])}, {**w, "extra": np.zeros(1)},
                {k: v for k, v in w.items() if k != "n"},
                {**w, "x": w["x"].astype(np.float64)}, {**w, "s/nfe": np.array(41)}):
        assert rc.compare(bad, w), bad
    # non-finite entries: the same NaN / inf in the same places match (an LPIPS column of
    # images too small for AlexNet is all NaN); NaN for inf or a number does not
    nan = {**w, "x": np.array([np.nan, -np.inf, 0.5], np.float32)}
    assert rc.compare(dict(nan), nan) == []
    for bad in (w, {**nan, "x": np.array([np.inf, -np.inf, 0.5], np.float32)}):
        assert rc.compare(bad, nan), bad
    loose = {**w, "x": w["x"] * (1 + 5e-3), "s/nfe": np.array(48)}
    assert rc.compare(loose, w, rtol=rc.ADAPTIVE_RTOL, approx_ints=("nfe",)) == []
    assert rc.compare({**loose, "s/nfe": np.array(52)}, w, rtol=rc.ADAPTIVE_RTOL,
                      approx_ints=("nfe",))
