"""ResShift (Yue et al. 2023): the η schedule against the official defaults, the closed-form
posterior against generic Gaussian conditioning, the forward chain against its marginal, the
sampler's purity, and the x_0 loss. Moments are compared in standard errors
(`exact.moment_zscores`); the sampler's law at T = 15 and 50 is pinned by
tests/test_oracle_bridges.py (official ``p_sample_loop``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import exact
from jaxir.samplers import ResShift, resshift_eta_schedule, resshift_sample
from jaxir.training import make_degradation, make_loss

M = np.array([0.2, -0.1])
_L = np.array([[0.3, 0.0], [0.1, 0.2]])
S = _L @ _L.T + 0.01 * np.eye(2)
SN = 0.2  # paired data: y_0 = x_0 + SN·n
Y = np.array([0.5, 0.3])  # the LQ we condition on
N = 20_000

# x_0 | y_0 = Y (Gaussian conditioning of the pair), computed with numpy
_G = S @ np.linalg.inv(S + SN**2 * np.eye(2))
MU_C = M + _G @ (Y - M)
SIG_C = S - _G @ S


def test_schedule_matches_official_defaults():
    """T = 15, κ = 2: √η_1 = min(0.04/κ, 0.04) = 0.02, √η_T = 0.99 (official ``etas_end``),
    increasing, and √η_t = √η_1 (√η_T/√η_1)^{((t−1)/(T−1))^0.3} (Eq. 10 rewritten), to 1e-12.
    √η_1 is 0.04 for κ ≤ 1."""
    eta = resshift_eta_schedule()
    assert eta.shape == (15,) and np.all(np.diff(eta) > 0)
    np.testing.assert_allclose(np.sqrt(eta[[0, -1]]), [0.02, 0.99], rtol=1e-12)
    u = np.linspace(0, 1, 15) ** 0.3
    np.testing.assert_allclose(np.sqrt(eta), 0.02 * (0.99 / 0.02) ** u, rtol=1e-12)
    assert np.isclose(resshift_eta_schedule(10, 0.5)[0], 0.04**2)
    with pytest.raises(ValueError, match="T must be"):
        resshift_eta_schedule(1)


def test_posterior_is_gaussian_conditioning_of_the_chain():
    """For every t, q(x_{t−1} | x_t, x_0, y_0) from `ResShift.posterior` equals the
    conditional of the joint Gaussian of (x_{t−1}, x_t) built from the Markov transitions
    (Eq. 1: variances summed step by step; Schur complement in float64), to 1e-5; and
    `marginal` equals the chain's accumulated mean/variance."""
    rs = ResShift(input_norm=None)
    eta = np.asarray(rs.etas, np.float64)
    alpha = np.diff(np.concatenate([[0.0], eta]))
    k2 = rs.kappa**2
    rng = np.random.default_rng(0)
    x0, y0, xt = rng.normal(size=(3, 5))
    e0 = y0 - x0
    for t in range(1, rs.T + 1):
        mp, vp = x0 + alpha[: t - 1].sum() * e0, k2 * alpha[: t - 1].sum()  # x_{t−1}
        mt, vt = mp + alpha[t - 1] * e0, vp + k2 * alpha[t - 1]  # x_t
        cov = vp  # Cov(x_{t−1}, x_t): the increment is independent of x_{t−1}
        mean_ref = mp + cov / vt * (xt - mt)
        var_ref = vp - cov**2 / vt
        mean, std = rs.posterior(jnp.asarray(x0), jnp.asarray(xt), t)
        np.testing.assert_allclose(mean, mean_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std**2, var_ref, rtol=1e-5, atol=1e-9)
        m_t, s_t = rs.marginal(jnp.asarray(x0), jnp.asarray(y0), t)
        np.testing.assert_allclose(m_t, mt, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s_t**2, vt, rtol=1e-5)


def test_forward_chain_simulation_matches_marginal():
    """Simulating Eq. 1 step by step (20,000 draws from one x_0, y_0) gives the closed-form
    marginal of Eq. 2 at t = 5 and t = T within 5 standard errors."""
    rs = ResShift()
    x0, y0 = jnp.asarray(M, jnp.float32), jnp.asarray(Y, jnp.float32)
    eta = jnp.concatenate([jnp.zeros(1), rs.etas])
    x = jnp.broadcast_to(x0, (N, 2))
    for t, k in zip(range(1, rs.T + 1), jax.random.split(jax.random.key(3), rs.T)):
        a = eta[t] - eta[t - 1]
        x = x + a * (y0 - x0) + rs.kappa * jnp.sqrt(a) * jax.random.normal(k, x.shape)
        if t in (5, rs.T):
            mean, std = rs.marginal(x0, y0, t)
            z = exact.moment_zscores(x, mean, float(std) ** 2 * np.eye(2))
            assert z["z_mean"] < 5 and z["z_cov"] < 5, (t, z)


# ---- the sampler (its law at T = 15 and 50: tests/test_oracle_bridges.py) -------------------
def _exact_x0(rs):
    """E[x_0 | x_t, y_0 = Y] for x_0 | Y ~ N(MU_C, SIG_C); undoes the input normalisation."""
    mu, sig, y = (jnp.asarray(a, jnp.float32) for a in (MU_C, SIG_C, Y))

    def model(x_in, t, cond):
        x = x_in / rs.scale_input(jnp.ones_like(x_in), t)
        eta = rs.eta(t)[:, None, None]
        v = (1 - eta) ** 2 * sig + rs.kappa**2 * eta * jnp.eye(2)
        gain = (1 - eta) * sig @ jnp.linalg.inv(v)
        r = x - (1 - eta[..., 0]) * mu - eta[..., 0] * y
        return mu + jnp.einsum("bij,bj->bi", gain, r)

    return model


def test_input_normalisation_purity_vmap_grad():
    """The input normalisations are x/√(κ²η_t + 1) ("std", default), x/(3κ√η_t + 1) ("max")
    and none; the sampler is deterministic per key, differs across keys under vmap, and is
    differentiable in y_0 (finite, nonzero gradient)."""
    y0 = jnp.broadcast_to(jnp.asarray(Y, jnp.float32), (4, 2))
    t = jnp.array([1, 7, 15])
    eta = np.asarray(ResShift().etas, np.float64)[np.asarray(t) - 1]
    ones = jnp.ones((3, 2))
    for norm, ref in (("std", np.sqrt(4 * eta + 1)), ("max", 6 * np.sqrt(eta) + 1),
                      (None, np.ones(3))):
        np.testing.assert_allclose(ResShift(input_norm=norm).scale_input(ones, t),
                                   np.broadcast_to(1 / ref, (2, 3)).T, rtol=1e-6)
    rs = ResShift()

    def lin(x, t, cond):
        return 0.5 * x + 0.3 * cond

    def f(k, y):
        return resshift_sample(k, lin, rs, y, clip_x0=True).x

    keys = jax.random.split(jax.random.key(4), 2)
    vf = jax.jit(jax.vmap(f, in_axes=(0, None)))
    a = vf(keys, y0)
    np.testing.assert_array_equal(a, vf(keys, y0))
    assert not np.allclose(a[0], a[1])
    g = jax.jit(jax.grad(lambda y: jnp.sum(f(keys[0], y) ** 2)))(y0)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


# ---- the loss -----------------------------------------------------------------------------
def test_loss_vanishes_at_exact_target_and_is_mse():
    """Registered as "resshift": a model returning x_0 has loss exactly 0; x_0 + 0.1 gives
    0.01 (the MSE); the network sees the LQ made by ``degrade_fn`` as its condition and the
    step t ∈ {1..T} as a float."""
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jnp.tanh(jax.random.normal(k1, (8, 4, 4, 3)))
    seen = {}

    def model(shift):
        def fn(x_in, t, cond):
            seen["t"], seen["cond"] = t, cond
            return x0 + shift

        return fn

    loss = make_loss("resshift", None, degrade_fn=make_degradation("sr:2"))
    val, aux = loss(model(0.0), {"image": x0}, k2)
    assert float(val) == 0.0 and float(aux["mse"]) == 0.0
    np.testing.assert_allclose(loss(model(0.1), {"image": x0}, k2)[0], 0.01, rtol=1e-5)
    t = np.asarray(seen["t"])
    assert t.dtype == np.float32 and t.min() >= 1 and t.max() <= 15
    lq = make_degradation("sr:2")(jax.random.split(k2, 3)[0], x0)
    np.testing.assert_allclose(seen["cond"], lq)


def test_loss_at_the_exact_conditional_mean_is_the_bayes_error():
    """With x_0 ~ N(MU_C, SIG_C) paired with y_0 = Y and the exact E[x_0 | x_t, y_0] as the
    model, the loss (batch 20,000) equals the average posterior variance
    E_t[tr Var(x_0 | x_t, y_0)]/2 within 5 standard errors (the per-example squared error's
    sample std / √N): the loss's x_t comes from the right marginal and its target is x_0."""
    rs = ResShift()
    x0 = exact.Gaussian(jnp.asarray(MU_C, jnp.float32), jnp.asarray(SIG_C, jnp.float32)).sample(
        jax.random.key(5), N)
    batch = {"image": x0, "lq": jnp.broadcast_to(jnp.asarray(Y, jnp.float32), (N, 2))}
    model = _exact_x0(rs)
    per = []

    def recorder(x_in, t, cond):
        out = model(x_in, t, cond)
        per.append(jnp.mean((out - x0) ** 2, axis=-1))
        return out

    val, _ = make_loss("resshift", rs)(recorder, batch, jax.random.key(6))
    eta = np.asarray(rs.etas, np.float64)
    bayes = np.mean([np.trace(SIG_C - (1 - e) ** 2 * SIG_C @ np.linalg.inv(
        (1 - e) ** 2 * SIG_C + rs.kappa**2 * e * np.eye(2)) @ SIG_C) / 2 for e in eta])
    se = float(np.std(np.asarray(per[0]))) / np.sqrt(N)
    assert abs(float(val) - bayes) < 5 * se, (float(val), bayes, se)
