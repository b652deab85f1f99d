"""The step-indexed Brownian path of ``sde_sample(..., brownian="step")`` and closure-converted
vector fields (``ode_sample(..., adjoint=BacksolveAdjoint())`` with traced parameters).

The laws of the Euler / Heun solves with this path are pinned by tests/test_oracle_samplers.py.
Path and gradient comparisons here are deterministic: float32 floors, the exact derivative of
the discrete recursion (float64), or Richardson estimates of the discretisation error.
"""

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import oracle as O
from jaxir import exact, samplers, sdes
from jaxir.samplers._diffrax import _StepBrownianPath

EPS32 = float(np.finfo(np.float32).eps)


def _prior(d=3, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d)) * 0.6
    mean = jnp.asarray(rng.normal(size=d) * 0.8, jnp.float32) + shift * jnp.eye(d)[0]
    return exact.Gaussian(mean, L @ L.T + 0.3 * np.eye(d))


PRIOR = _prior()
VP = sdes.VPSDE()


def _scan_em(key, model_fn, sde, x_init, num_steps):
    """Hand-written Euler–Maruyama in u = T − t with the increments of brownian="step":
    step k uses √(u_{k+1} − u_k) · normal(fold_in(k_bm, k))."""
    from jaxir import predictions
    from jaxir.sdes import reverse

    rev = reverse(sde, predictions.score_fn_from_model(model_fn, sde, "eps"))
    _, k_bm = jax.random.split(key)
    span = sde.T - sde.t_min
    us = jnp.float32(span) * (jnp.arange(num_steps + 1, dtype=jnp.float32) / num_steps)

    def step(x, k):
        u, u1 = us[k], us[k + 1]
        dw = jnp.sqrt(u1 - u) * jax.random.normal(jax.random.fold_in(k_bm, k), x.shape)
        return x - rev.drift(x, sde.T - u, None) * (u1 - u) + sde.diffusion(sde.T - u) * dw, None

    return jax.lax.scan(step, x_init, jnp.arange(num_steps))[0]


@pytest.mark.parametrize("num_steps", [1, 7, 100])
def test_step_path_equals_scan_loop_with_same_increments(num_steps):
    mf = PRIOR.model_fn(VP)
    x_T = PRIOR.marginal(VP, VP.T).sample(jax.random.key(3), 256)
    key = jax.random.key(11)
    got = jax.jit(lambda k: samplers.sde_sample(k, mf, VP, x_init=x_T, num_steps=num_steps,
                                                brownian="step", denoise=False).x)(key)
    ref = jax.jit(lambda k: _scan_em(k, mf, VP, x_T, num_steps))(key)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # A different key gives other noise (the comparison above is not vacuous).
    other = _scan_em(jax.random.key(12), mf, VP, x_T, num_steps)
    assert float(jnp.max(jnp.abs(other - ref))) > 1e-2


def test_step_path_index_is_robust_to_time_rounding():
    span, n = 1.0 - 1e-3, 1000
    dt = span / n
    bm = _StepBrownianPath(jax.ShapeDtypeStruct((5,), jnp.float32), jax.random.key(0), dt, n)
    ev = jax.jit(lambda a, b: bm.evaluate(a, b))
    for k in (0, 1, 2, 499, 998, 999):
        t0 = jnp.float32(span) * (jnp.float32(k) / n)
        t1 = jnp.float32(span) if k == n - 1 else jnp.float32(span) * (jnp.float32(k + 1) / n)
        z = jax.random.normal(jax.random.fold_in(jax.random.key(0), k), (5,))
        for ulps in (-3, -1, 0, 1, 3):
            a = t0
            for _ in range(abs(ulps)):
                a = jnp.nextafter(a, jnp.float32(np.sign(ulps) * np.inf))
            a = jnp.maximum(a, 0.0)
            w = ev(a, t1)
            np.testing.assert_allclose(w / jnp.sqrt(t1 - a), z, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ev(t0, t1), ev(t0, t1))  # the same at every evaluation
    # Increments of different steps are independent draws.
    assert float(jnp.abs(ev(jnp.float32(0.0), jnp.float32(dt)) - ev(jnp.float32(dt), jnp.float32(2 * dt))).max()) > 1e-3


def test_step_path_refuses_what_is_not_one_step():
    n, dt = 10, 0.1
    bm = _StepBrownianPath(jax.ShapeDtypeStruct((2,), jnp.float32), jax.random.key(0), dt, n)
    with pytest.raises(ValueError, match="whole steps"):
        bm.evaluate(0.3)
    for a, b in [(0.3, 0.35), (0.35, 0.45), (0.3, 0.5), (1.0, 1.1)]:
        with pytest.raises(Exception, match="not one step"):
            jax.block_until_ready(jax.jit(lambda a, b: bm.evaluate(a, b))(jnp.float32(a), jnp.float32(b)))
    # A solver that takes half steps (diffrax's HalfSolver) gets the same clear error.
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, a: -y),
        diffrax.ControlTerm(lambda t, y, a: lx.DiagonalLinearOperator(jnp.ones_like(y)), bm))
    with pytest.raises(Exception, match="not one step"):
        jax.block_until_ready(diffrax.diffeqsolve(
            terms, diffrax.HalfSolver(diffrax.Euler()), 0.0, 1.0, dt, jnp.ones(2),
            max_steps=n).ys)


def test_step_path_deterministic_and_vmaps_over_keys():
    mf = PRIOR.model_fn(VP)

    def one(k):
        return samplers.sde_sample(k, mf, VP, (4, 3), num_steps=20, brownian="step")

    keys = jax.random.split(jax.random.key(0), 3)
    out = jax.jit(jax.vmap(one))(keys)
    assert out.x.shape == (3, 4, 3) and bool(jnp.all(out.finite))
    single = jax.jit(one)
    for i in range(3):
        np.testing.assert_allclose(out.x[i], single(keys[i]).x, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(single(keys[0]).x, single(keys[0]).x)
    assert float(jnp.abs(out.x[0] - out.x[1]).max()) > 1e-2
    assert single(keys[0]).nfe == 21  # 20 Euler steps + the final denoising
    # Saving a trajectory evaluates no extra increments: same end state.
    traj = jax.jit(lambda k: samplers.sde_sample(k, mf, VP, (4, 3), num_steps=20,
                                                 save_every=5, denoise=False))(keys[0])
    end = jax.jit(lambda k: samplers.sde_sample(k, mf, VP, (4, 3), num_steps=20,
                                                denoise=False).x)(keys[0])
    assert traj.trajectory.shape == (5, 4, 3)
    np.testing.assert_allclose(traj.trajectory[-1], end, rtol=1e-6, atol=1e-6)


def _em_mean_derivative(steps):
    """``d E[x_out] / dm`` of the Euler–Maruyama recursion in ``u = T − t`` (float64): the mean
    follows ``m_{k+1} = (I + Δu(½β I − β C⁻¹)) m_k + Δu β α C⁻¹ μ`` with ``C = α²Σ + σ²I``,
    from ``α_T μ``; it is affine in μ, so the derivative along e_0 is the difference of two
    propagations, exactly."""
    mu0, cov = np.asarray(PRIOR.mean, np.float64), np.asarray(PRIOR.cov, np.float64)
    du = (VP.T - VP.t_min) / steps

    def mean_out(mu):
        m = O.vp_alpha_sigma(VP.T)[0] * mu
        for k in range(steps):
            t = VP.T - k * du
            a, s = O.vp_alpha_sigma(t)
            beta = O.vp_beta(t)
            Ci = np.linalg.inv(a * a * cov + s * s * np.eye(3))
            m = m + du * (0.5 * beta * m - beta * Ci @ (m - a * mu))
        return m

    return mean_out(mu0 + np.eye(3)[0]) - mean_out(mu0)


def test_grad_through_step_path_wrt_prior_mean():
    """Gradient w.r.t. a shift ``m`` of the prior mean (closed over by ``model_fn`` and the
    initial state), through ``RecursiveCheckpointAdjoint``.

    The reverse SDE with an exact Gaussian score is affine in ``(x, m)`` with additive noise,
    so ``d mean(x_out[:, 0]) / dm`` does not depend on the noise: it is the derivative of the
    Euler recursion's mean, computed exactly in float64 (`_em_mean_derivative`), to a float32
    floor (100 steps × 10 ulp); ``mean(x_out²)`` is quadratic in ``m``, so a central
    difference is exact up to float32 rounding."""
    key = jax.random.key(1)

    def run(m):
        prior = _prior(shift=m)
        x_T = prior.marginal(VP, VP.T).sample(jax.random.key(5), 512)
        return samplers.sde_sample(key, prior.model_fn(VP), VP, x_init=x_T, num_steps=100,
                                   brownian="step", denoise=False).x

    lin = jax.jit(jax.value_and_grad(lambda m: jnp.mean(run(m)[:, 0])))
    _, g = lin(jnp.float32(0.3))
    assert abs(float(g) - _em_mean_derivative(100)[0]) < 100 * 10 * EPS32, float(g)
    quad = jax.jit(lambda m: jnp.mean(run(m) ** 2))
    g2 = jax.jit(jax.grad(lambda m: jnp.mean(run(m) ** 2)))(jnp.float32(0.3))
    eps = 0.25
    fd = (quad(jnp.float32(0.3 + eps)) - quad(jnp.float32(0.3 - eps))) / (2 * eps)
    assert abs(float(g2) - float(fd)) <= 1e-3 * abs(float(fd)), (float(g2), float(fd))
    # The same gradient with the (slow) virtual Brownian tree: same law, other noise, so only
    # the noise-free linear gradient must agree.
    gv = jax.jit(jax.grad(lambda m: jnp.mean(samplers.sde_sample(
        key, _prior(shift=m).model_fn(VP), VP,
        x_init=_prior(shift=m).marginal(VP, VP.T).sample(jax.random.key(5), 512),
        num_steps=100, brownian="virtual", denoise=False).x[:, 0])))(jnp.float32(0.3))
    np.testing.assert_allclose(float(gv), float(g), rtol=1e-4)


def test_unsafe_and_virtual_still_work():
    mf = PRIOR.model_fn(VP)
    for b in ("unsafe", "virtual"):
        out = samplers.sde_sample(jax.random.key(0), mf, VP, (8, 3), num_steps=10, brownian=b)
        assert out.x.shape == (8, 3) and bool(out.finite)
    with pytest.raises(ValueError, match="brownian"):
        samplers.sde_sample(jax.random.key(0), mf, VP, (8, 3), brownian="tree")
    with pytest.raises(ValueError, match="num_steps"):
        samplers.sde_sample(jax.random.key(0), mf, VP, (8, 3), num_steps=0)


@pytest.mark.parametrize("solver,steps,order", [("heun", 30, 2), ("euler", 100, 1)])
def test_backsolve_adjoint_with_traced_params(solver, steps, order):
    """``BacksolveAdjoint`` differentiates w.r.t. parameters ``model_fn`` closes over (here
    a scale ``s`` of the network output and a shift ``m`` of the prior mean, traced by
    jax.grad under jax.jit) and agrees with ``RecursiveCheckpointAdjoint``.

    The two are different discretisations of one gradient: backsolve integrates the
    continuous adjoint ODE backwards, recursive checkpointing differentiates the discrete
    solve. Each differs from the continuous gradient by its solver's global error, estimated by
    Richardson from n and 2n steps (``|g(n) − g(2n)| · 2^p/(2^p − 1)``, p the order); the two
    must agree within the sum of those estimates (×2 for the next-order remainder of the
    estimates) plus a float32 floor (n × 10 ulp of |g|)."""
    x = jax.random.normal(jax.random.key(0), (64, 3))

    def loss(theta, adjoint, n):
        s, m = theta
        prior = _prior(shift=m)
        base = prior.model_fn(VP)
        out = samplers.ode_sample(None, lambda x, t, c: s * base(x, t, c), VP, x_init=x,
                                  solver=solver, num_steps=n, adjoint=adjoint)
        return jnp.mean(out.x**2)

    theta = (jnp.float32(0.9), jnp.float32(0.2))
    g = {(name, n): np.array([float(v) for v in jax.jit(jax.grad(
        lambda th: loss(th, adj, n)))(theta)])
         for name, adj in (("rc", None), ("bs", diffrax.BacksolveAdjoint()))
         for n in (steps, 2 * steps)}
    f = 2**order / (2**order - 1)
    err = {k: f * np.abs(g[(k, steps)] - g[(k, 2 * steps)]) for k in ("rc", "bs")}
    tol = 2 * (err["rc"] + err["bs"]) + steps * 10 * EPS32 * np.abs(g[("rc", steps)])
    assert np.all(np.isfinite(g[("rc", steps)])) and np.all(np.abs(g[("rc", steps)]) > 1e-2)
    assert np.all(np.abs(g[("bs", steps)] - g[("rc", steps)]) <= tol), (g, tol)


def test_closure_converted_drift_gives_same_samples():
    """Closure conversion must not change what is computed (the jitted ODE equals eager)."""
    mf = PRIOR.model_fn(VP)
    x = jax.random.normal(jax.random.key(0), (16, 3))
    a = samplers.ode_sample(None, mf, VP, x_init=x, num_steps=20).x
    b = jax.jit(lambda x: samplers.ode_sample(None, mf, VP, x_init=x, num_steps=20).x)(x)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
