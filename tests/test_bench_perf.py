"""The perf benchmark (issue 7) runs end to end and is well formed. No timing assertions:
only that every ratio is a finite positive number, the JSON round-trips, and the
hand-written scan PF-ODE equals the diffrax one."""

# ruff: noqa: B023 -- timing lambdas made in a loop are called within the same iteration

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import samplers
from jaxir.bench._perf_common import fit_exponent, make_net
from jaxir.bench._perf_diffrax import scan_euler
from jaxir.bench.perf import format_perf, run_perf
from jaxir.sdes import VPSDE


def _finite_pos(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


@pytest.mark.slow  # 20+ s: a benchmark run (jaxir bench --quick runs it); the parts are tested below
def test_run_perf_minimal_is_finite_and_json():
    res = run_perf(quick=True, net="toy", batch=2, steps=(3, 6), samplers=("ddim", "dps"),
                   repeats=1, diffrax_steps=(5,), grad_steps=(4, 8),
                   grad_variants=("ddim/naive", "scan_ode/sqrt"), grad_time_max_n=4)
    back = json.loads(json.dumps(res))
    assert back["config"]["steps"] == [3, 6]
    rows = res["samplers"]["rows"]
    assert [(r["sampler"], r["n"]) for r in rows] == [("ddim", 3), ("ddim", 6), ("dps", 3),
                                                      ("dps", 6)]
    for r in rows:
        assert r["nfe"] == r["n"] and r["finite"]
        assert _finite_pos(r["ratio"]) and _finite_pos(r["ratio_loop"])
    assert all(_finite_pos(r["ratio_vs_vjp"]) for r in rows if r["kind"] == "vjp")
    assert _finite_pos(res["samplers"]["vjp_cost"])
    for r in res["diffrax"]["rows"]:
        assert _finite_pos(r["ratio"])
    ode = [r for r in res["diffrax"]["rows"] if r["path"] == "pf_ode_euler"]
    assert ode and ode[0]["max_rel_diff"] < 1e-5
    # brownian="step" and its gradient equal the scan loop with the same fold_in increments.
    step = {r["path"]: r for r in res["diffrax"]["rows"] if "step" in r["path"]}
    assert set(step) == {"sde_em_step", "grad_sde_em_step"}
    assert all(r["max_rel_diff"] < 1e-4 for r in step.values()), step
    for r in res["grad"]["rows"]:
        assert r["temp_bytes"] is None or r["temp_bytes"] >= 0
    assert all(r["grad_over_forward"] is None or _finite_pos(r["grad_over_forward"])
               for r in res["grad"]["rows"])
    text = format_perf(res)
    assert "Sampler overhead" in text and "diffrax / lax.scan" in text


def test_scan_pf_ode_matches_diffrax():
    net = make_net("toy", 2)
    sde = VPSDE()
    mf = net.model_fn(net.params)
    x_T = sde.prior_sample(jax.random.key(0), net.shape)
    for n in (1, 7, 50):
        ref = jax.jit(lambda x: samplers.ode_sample(None, mf, sde, x_init=x, solver="euler",
                                                    num_steps=n).x)(x_T)
        for ck in (None, "step", "sqrt"):
            got = jax.jit(lambda x: scan_euler(sde, mf, x, n, checkpoint=ck))(x_T)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))


def test_scan_fold_in_matches_step_path():
    net = make_net("toy", 2)
    sde = VPSDE()
    mf = net.model_fn(net.params)
    key = jax.random.key(4)
    ref = jax.jit(lambda k: samplers.sde_sample(k, mf, sde, net.shape, num_steps=9,
                                                brownian="step", denoise=False).x)(key)
    k_init, k_bm = jax.random.split(key)
    x_T = sde.prior_sample(k_init, net.shape)
    got = jax.jit(lambda x: scan_euler(sde, mf, x, 9, key=k_bm, increments="fold_in"))(x_T)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))


def test_fit_exponent():
    assert abs(fit_exponent([10, 100, 1000], [3.0, 30.0, 300.0]) - 1.0) < 1e-12
    assert abs(fit_exponent([10, 1000], [5.0, 50.0]) - 0.5) < 1e-12
    assert fit_exponent([10], [1.0]) is None


def test_train_throughput_reports_both_layouts():
    """The training section measures the trainer's step (flat layout, donated, chained) and the
    tree-layout step against forward + backward, in wall and CPU time: finite positive times
    and ratios (toy net, one repeat; no timing is asserted)."""
    from jaxir.bench._perf_common import Net
    from jaxir.bench._perf_train import train_throughput

    toy = make_net("toy", 2)  # its two convolutions, with a per-example time scale

    def apply(p, x, t):
        return toy.apply(p, x, 0.0) * (1.0 + jnp.reshape(t, (-1, 1, 1, 1)))

    r = train_throughput(Net("toy", apply, toy.params, toy.shape, toy.num_params), repeats=1,
                         chain=1)
    for k in ("train_step_s", "fwd_bwd_s", "step_over_fwd_bwd", "train_step_tree_s",
              "step_over_fwd_bwd_tree", "step_over_fwd_bwd_cpu", "step_over_fwd_bwd_tree_cpu"):
        assert _finite_pos(r[k]), (k, r)
    assert json.loads(json.dumps(r)) == r
