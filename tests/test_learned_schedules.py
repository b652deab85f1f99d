"""Explicit / learned time grids: ``timesteps=`` in `time_grid` and the samplers, gradients
with respect to the times, the logits parameterisation, saving and loading, and learning a
grid through DDIM against a closed-form optimum.

The oracle: for a 1-D prior N(0, s²) the exact ε-model is linear, so deterministic DDIM from
``x_T`` is ``x₀ = c(t_1, …, t_K) x_T`` with the closed form (float64, below)

    c = Π_k m_k,  m_k = α_u g_k + σ_u (1 − α_t g_k)/σ_t,  g_k = α_t s²/(α_t² s² + σ_t²)

on the step ``t = t_k → u = t_{k+1}`` (the last step, to u = 0, returns ``x̂₀ = g_K x``).
With ``x_T ~ N(0, 1)`` the output law is N(0, c²), at W2 distance |c − s| from the prior.

Bounds: float32 evaluation of K steps of products of exps and square roots, each to a few
ulp, gives a relative error ≤ 16 K ε₃₂ in c (16 ulp a step); its derivative in t carries the
same relative error times the conditioning, allowed 64 K ε₃₂ of the largest component.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxir import exact, inverse, operators, samplers, schedules, sdes

EPS32 = float(np.finfo(np.float32).eps)
S = 0.5  # prior std of the 1-D oracle
VP = sdes.VPSDE()
DDPM = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
# a short chain for the gradient oracle: 10 wide segments, so that the float32 table of
# log ᾱ (a cumulative sum) has a slope per segment accurate to a few ulp (on the 1000-step
# chain a segment's slope, 0.016, is the difference of two sums of size ~6 in float32)
SHORT = sdes.DiscreteVPSDE(np.linspace(0.05, 0.5, 10))
OP = operators.DenseMatrix(jnp.array([[1.0, 0.5]]))
Y_OBS = jnp.array([0.3])


def _alpha(sde, t):
    """α(t) in float64: VP's linear β (β_min 0.1, β_max 20), DiscreteVPSDE's interpolated log ᾱ."""
    t = np.asarray(t, np.float64)
    if isinstance(sde, sdes.DiscreteVPSDE):
        betas = np.asarray(sde.betas, np.float64)
        log_abar = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
        return np.exp(0.5 * np.interp(t, np.linspace(0.0, sde.T, betas.shape[0] + 1), log_abar))
    return np.exp(-0.5 * (0.1 * t + 0.5 * (20.0 - 0.1) * t**2))


def _c_exact(sde, ts, s=S):
    c, ts = 1.0, [*np.asarray(ts, np.float64), 0.0]
    for t, u in zip(ts[:-1], ts[1:]):
        at = _alpha(sde, t)
        st = np.sqrt(1.0 - at**2)
        g = at * s**2 / (at**2 * s**2 + st**2)
        if u == 0.0:
            c *= g
        else:
            au = _alpha(sde, u)
            c *= au * g + np.sqrt(1.0 - au**2) * (1.0 - at * g) / st
    return c


def _c_ddim(sde, ts):
    """c(ts) from jaxir's DDIM with the exact model of N(0, S²), from x_T = 1."""
    prior = exact.Gaussian(jnp.zeros(1), jnp.full((1, 1), S**2))
    out = samplers.ddim_sample(jax.random.key(0), prior.model_fn(sde), sde,
                               x_init=jnp.ones((1, 1)), timesteps=ts)
    return out.x[0, 0]


def test_timesteps_reproduce_the_default_grids():
    """Passing a sampler's own default grid as ``timesteps`` gives bit-identical samples
    (DDIM, DDPM, DPM-Solver++, and DDRM through the posterior samplers' driver)."""
    prior = exact.Gaussian(jnp.array([1.0, -1.0]), 0.5 * jnp.eye(2))
    mf = prior.model_fn(DDPM)
    x = jax.random.normal(jax.random.key(0), (8, 2))
    key = jax.random.key(1)
    ts, _ = samplers.time_grid(DDPM, 10, "trailing")
    tsd, _ = samplers.solver_time_grid(DDPM, 7)
    pairs = [
        (samplers.ddim_sample(key, mf, DDPM, x_init=x, num_steps=10, spacing="trailing", eta=0.3),
         samplers.ddim_sample(key, mf, DDPM, x_init=x, timesteps=ts, eta=0.3)),
        (samplers.ddpm_sample(key, mf, DDPM, x_init=x, num_steps=10, spacing="trailing",
                              clip_x0=False),
         samplers.ddpm_sample(key, mf, DDPM, x_init=x, timesteps=ts, clip_x0=False)),
        (samplers.dpm_solver_sample(key, mf, DDPM, x_init=x, num_steps=7),
         samplers.dpm_solver_sample(key, mf, DDPM, x_init=x, timesteps=tsd)),
        # the posterior samplers' driver builds its grid with the same time_grid
        (inverse.ddrm_sample(key, mf, DDPM, OP, Y_OBS, 0.1, (8, 2), num_steps=10,
                             spacing="trailing"),
         inverse.ddrm_sample(key, mf, DDPM, OP, Y_OBS, 0.1, (8, 2), timesteps=ts)),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(a.x, b.x)
        assert a.nfe == b.nfe
    # one η per step: a constant vector is the scalar (to float32 rounding: a constant and
    # an array operand fuse differently; 8 ulp a step over 10 steps)
    a = samplers.ddim_sample(key, mf, DDPM, x_init=x, timesteps=ts, eta=jnp.full(10, 0.3))
    ref = pairs[0][1].x
    np.testing.assert_allclose(a.x, ref, rtol=0, atol=8 * 10 * EPS32 * float(jnp.abs(ref).max()))


def test_timesteps_are_checked():
    mf = exact.Gaussian(jnp.zeros(2), jnp.eye(2)).model_fn(VP)
    x = jnp.zeros((2, 2))
    bad = {"strictly decreasing": [0.5, 0.6], "within": [1.5, 0.5], "1-D": [[0.5, 0.2]],
           "within ": [0.5, 1e-4]}
    for msg, ts in bad.items():
        with pytest.raises(ValueError, match=msg.strip()):
            samplers.ddim_sample(jax.random.key(0), mf, VP, x_init=x, timesteps=ts)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.ddim_sample(jax.random.key(0), mf, VP, x_init=x, num_steps=3, timesteps=[0.5])
    with pytest.raises(ValueError, match="spacing"):
        samplers.time_grid(VP, None, "uniform", timesteps=[0.5])
    with pytest.raises(ValueError, match="eta"):
        samplers.ddim_sample(jax.random.key(0), mf, VP, x_init=x, timesteps=[0.5, 0.2],
                             eta=jnp.zeros(3))
    # traced times (a schedule being learned) are checked inside the program
    run = jax.jit(lambda ts: samplers.ddim_sample(jax.random.key(0), mf, VP, x_init=x,
                                                  timesteps=ts).x)
    assert np.all(np.isfinite(run(jnp.array([0.6, 0.2]))))
    with pytest.raises(Exception, match="strictly decreasing"):
        jax.block_until_ready(run(jnp.array([0.2, 0.6])))


@pytest.mark.parametrize("sde", [VP, SHORT], ids=["vp", "discrete"])
def test_ddim_gradient_wrt_timesteps_is_the_exact_derivative(sde):
    """jax.grad of c(t_1, t_2, t_3) through DDIM against the float64 central difference of the
    closed form (step 1e-7: its truncation error ~1e-14 relative is far below the float32
    bound). On the discrete chain the times sit inside segments (α is smooth there: log ᾱ is
    interpolated linearly between the chain's times)."""
    ts = np.array([0.75, 0.45, 0.15])
    c = _c_ddim(sde, jnp.asarray(ts, jnp.float32))
    assert abs(float(c) - _c_exact(sde, ts)) <= 16 * 3 * EPS32 * abs(_c_exact(sde, ts))
    g = np.asarray(jax.grad(lambda t: _c_ddim(sde, t))(jnp.asarray(ts, jnp.float32)))
    h = 1e-7
    fd = np.array([(_c_exact(sde, ts + h * e) - _c_exact(sde, ts - h * e)) / (2 * h)
                   for e in np.eye(3)])
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, fd, rtol=0, atol=64 * 3 * EPS32 * np.abs(fd).max())


def test_logits_parameterisation():
    """Any logits give a valid grid (strictly decreasing, inside [t_min, T]), and the logits of
    a grid give it back (to the floor the inverse documents)."""
    logits = jax.random.normal(jax.random.key(0), (500, 7)) * jnp.array([1, 1, 1, 1, 1, 1, 6.0])
    for sde in (VP, DDPM):
        ts = np.asarray(jax.vmap(lambda z, sde=sde: samplers.timesteps_from_logits(sde, z))(logits))
        assert np.all(np.diff(ts, axis=1) < 0) and ts.min() >= sde.t_min and ts.max() <= sde.T
        grid = np.array([0.9, 0.5, 0.3, 0.05, 0.01, sde.t_min + 0.001], np.float32)
        back = samplers.timesteps_from_logits(sde, samplers.logits_from_timesteps(sde, grid))
        np.testing.assert_allclose(back, grid, rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match="logits"):
        samplers.timesteps_from_logits(VP, jnp.zeros(1))


def test_save_and_load_a_schedule(tmp_path):
    ts = np.array([0.83101684, 0.4, 0.0011], np.float32)
    eta = np.array([0.1, 0.0, 1.0], np.float32)
    p = samplers.save_schedule(tmp_path / "s.json", ts, eta=eta, sde=DDPM, sampler="ddim",
                               meta={"K": 3, "loss": "sw2"})
    s = samplers.load_schedule(p, DDPM)
    np.testing.assert_array_equal(s.timesteps, ts)  # float32 values round-trip exactly
    np.testing.assert_array_equal(s.eta, eta)
    assert s.sampler == "ddim" and s.meta == {"K": 3, "loss": "sw2"}
    assert s.sde == {"class": "DiscreteVPSDE", "T": 1.0, "t_min": 0.001, "num_steps": 1000}
    with pytest.raises(ValueError, match="made for DiscreteVPSDE"):
        samplers.load_schedule(p, sdes.VESDE())
    rec = json.loads(p.read_text())
    for change, msg in (({"format": "x"}, "not a jaxir schedule"), ({"version": 9}, "version"),
                        ({"timesteps": [0.2, 0.5]}, "strictly decreasing"),
                        ({"eta": [0.1]}, "eta")):
        (tmp_path / "bad.json").write_text(json.dumps({**rec, **change}))
        with pytest.raises(ValueError, match=msg):
            samplers.load_schedule(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="schedule"):
        samplers.load_schedule(tmp_path / "junk.json")
    with pytest.raises(ValueError, match="timesteps"):
        samplers.save_schedule(tmp_path / "x.json", [0.5, 2.0], sde=VP)


def test_learning_a_two_step_grid_reaches_the_exact_optimum():
    """Learn (t_1, t_2) of 2-step DDIM on VP by Adam on the logits, minimising W2(N(0, c²),
    N(0, S²))² = (c − S)² through the sampler. The default uniform grid is far off
    (|c − S| = 0.49, closed form); a grid with c = S exists (the closed form crosses S between
    the learned grid's neighbours), and the learned one reaches it to float32 rounding."""
    ts0 = samplers.time_grid(VP, 2)[0]
    assert abs(_c_exact(VP, ts0) - S) > 0.45
    opt = optax.adam(0.05)

    @jax.jit
    def step(z, state):
        loss, g = jax.value_and_grad(
            lambda z: (_c_ddim(VP, samplers.timesteps_from_logits(VP, z)) - S) ** 2)(z)
        upd, state = opt.update(g, state)
        return optax.apply_updates(z, upd), state, loss

    @jax.jit
    def gauss_newton(z):  # one residual r = c − S: z ← z − r ∇r / |∇r|²
        r, g = jax.value_and_grad(lambda z: _c_ddim(VP, samplers.timesteps_from_logits(VP, z)))(z)
        return z - (r - S) * g / jnp.sum(g**2)

    z = samplers.logits_from_timesteps(VP, ts0)
    state = opt.init(z)
    for _ in range(300):
        z, state, loss = step(z, state)
    assert loss < 1e-3 * (_c_exact(VP, ts0) - S) ** 2  # Adam alone: most of the way
    for _ in range(3):  # polish to float32 rounding (quadratic convergence)
        z = gauss_newton(z)
    ts = np.asarray(samplers.timesteps_from_logits(VP, z), np.float64)
    c = _c_exact(VP, ts)
    assert abs(c - S) <= 2 * 16 * 2 * EPS32 * S, (ts, c)
