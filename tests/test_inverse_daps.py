"""DAPS (Zhang et al., CVPR 2025) against its own exact output law and the official schedules.

With a Gaussian prior ``N(μ, Σ)`` the exact VE denoiser ``D(x; ς) = J_ς x + b_ς`` is affine, so
each DAPS level — Euler PF-ODE for x̂_0, a fixed-step Langevin chain on x_0 around it, then
re-noising — is affine in the state and fresh Gaussian noise, and the output law is Gaussian.
It is computed here in float64 NumPy from the paper's equations and the official code's
conventions (``zhangbingliang2019/DAPS``: ``sampler.py``, ``cores/mcmc.py``,
``cores/scheduler.py``), importing nothing from jaxir, and jaxir's draws are z-tested against
it (every mean and covariance entry within the Bonferroni threshold of
:func:`oracle.z_threshold`, family-wise false alarm 1e-5). Nearby wrong updates — the
likelihood divided by 2τ² (InverseBench's port), x̂_0 by one denoiser call instead of the ODE,
re-noising at the current level, the prior term at the next level — are shown to lie at least
``FAR`` thresholds away at the same draw count, so the test can fail.

The official annealing / ODE grids are checked value for value against a NumPy transcription
of ``EDMScheduler`` (``sigma_steps`` of ``n + 1`` poly-7 levels without the last, then 0).

Time: ~20 s of CPU for the file (two law cases of 40,000 chains ~5 s each, the phase-retrieval
run ~5 s, mostly compilation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import oracle
import pytest

from jaxir import exact, operators, schedules, sdes
from jaxir.inverse import daps_sample
from jaxir.inverse._daps import daps_levels, edm_levels, time_of_sigma, sigma_of_time

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
N = 40_000  # draws: se(mean) ≈ 0.5 % of a standard deviation
ALPHA = 1e-5
FAR = 3.0


def dense_problem(sigma_y=0.1):
    return oracle.dense_problem(0, 6, 3, sigma_y)


def official_levels(n, smax, smin, rho=7):
    """``EDMScheduler(num_steps=n).sigma_steps`` (``cores/scheduler.py``), float64."""
    r = np.linspace(0, 1, n + 1)
    ts = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.concatenate([ts[:-1], [0.0]])


def official_ode_levels(sig, n, smin=0.01, rho=7):
    """``EDMScheduler(num_steps=n, sigma_max=sig).get_discrete_time_steps(n + 1)``: the n + 1
    levels the PF-ODE's Euler steps visit (``DiffusionPFODE.sample``)."""
    r = np.linspace(0, 1, n + 1)
    return (sig ** (1 / rho) + r * (smin ** (1 / rho) - sig ** (1 / rho))) ** rho


def daps_law(mu, Sig, A, y, *, n, ode_steps, langevin_steps, lr, lr_min_ratio, tau,
             smax=100.0, smin=0.1, ode_smin=0.01, bug=None):
    """The exact law of DAPS's output (float64), by moment propagation.

    State ``x`` (VE). Level k: ``x̂_0 = M x + c`` (Euler steps ``x + h_j (x − J_j x − b_j)``,
    ``h_j = (ς_{j+1} − ς_j)/ς_j``); Langevin on the stacked ``[x, x_0]`` with
    ``x_0 ← x_0 + η(−2Aᵀ(A x_0 − y)/τ² + (x̂_0 − x_0)/ς_k²) + √(2η) z``,
    ``η = lr (1 + k/(n + 1) (lr_min_ratio − 1))``; then ``x ← x_0 + ς_{k+1} z``.
    """
    d = mu.shape[0]
    I = np.eye(d)
    lv = official_levels(n, smax, smin)
    law = oracle.Law.of(np.zeros(d), lv[0] ** 2 * I)
    lik = 1.0 / tau**2 if bug != "half_tau" else 0.5 / tau**2
    for k in range(n):
        sig, nxt = lv[k], lv[k + 1]
        M, c = I.copy(), np.zeros(d)
        if bug == "one_shot":
            J, b = oracle.gaussian_denoiser(mu, Sig, 1.0, sig)
            M, c = J, b
        else:
            ode = official_ode_levels(sig, ode_steps, ode_smin)
            for j in range(ode_steps):
                J, b = oracle.gaussian_denoiser(mu, Sig, 1.0, ode[j])
                h = (ode[j + 1] - ode[j]) / ode[j]
                P = I + h * (I - J)
                M, c = P @ M, P @ c - h * b
        ratio = k / (n + 1) if bug != "ratio_n" else k / n
        eta = lr * (1 + ratio * (lr_min_ratio - 1))
        r2 = sig**2 if bug != "prior_next" or nxt == 0 else nxt**2
        law = law.push(np.vstack([I, M]), np.concatenate([np.zeros(d), c]))
        G = I - eta * (2 * lik * A.T @ A + I / r2)
        P = np.block([[I, np.zeros((d, d))], [eta / r2 * M, G]])
        q = np.concatenate([np.zeros(d), eta * (2 * lik * A.T @ y + c / r2)])
        R = np.vstack([np.zeros((d, d)), np.sqrt(2 * eta) * I])
        for _ in range(langevin_steps):
            law = law.push(P, q, R)
        s_out = (sig if bug == "renoise_same" else nxt)
        law = law.push(np.hstack([np.zeros((d, d)), I]), 0.0, s_out * I if s_out > 0 else None)
    return law


def _run(mu, Sig, A, y, key, n_draws, **kw):
    g = exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32))
    op = operators.DenseMatrix(jnp.asarray(A, jnp.float32))
    f = jax.jit(lambda k: daps_sample(k, g.model_fn(SDE), SDE, op, jnp.asarray(y, jnp.float32),
                                      None, (n_draws, mu.shape[0]), **kw).x)
    return np.asarray(f(key), np.float64)


# Two settings: each nearby wrong update is ≥ FAR thresholds away in at least one of them (the
# re-noising level and the lr ratio k/(n + 1) vs k/n need little Langevin mixing, the prior
# term's level needs much: measured distances in s.e. at N, threshold 5.1).
CASES = {
    "few_langevin": (dict(n=6, ode_steps=3, langevin_steps=10, lr=0.01, lr_min_ratio=0.01, tau=0.3),
                     ("half_tau", "one_shot", "renoise_same", "ratio_n")),
    "mixing": (dict(n=10, ode_steps=3, langevin_steps=20, lr=0.02, lr_min_ratio=0.2, tau=0.3),
               ("half_tau", "one_shot", "renoise_same", "prior_next")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_daps_matches_its_exact_law(name):
    """jaxir's DAPS output equals its own float64 law (lr and τ chosen so that the Langevin
    chain is stable on this A); the listed wrong updates are ≥ FAR thresholds away at the
    same n: ``half_tau`` (likelihood ∇‖·‖²/(2τ²)), ``one_shot`` (x̂_0 = D(x, ς_k), no ODE),
    ``renoise_same`` (x ← x_0 + ς_k z), ``ratio_n`` (η's ratio k/n), ``prior_next`` (the
    Gaussian prior term at ς_{k+1})."""
    case, bugs = CASES[name]
    mu, Sig, A, y = dense_problem()
    law = daps_law(mu, Sig, A, y, **case)
    oracle.assert_discriminates(law, {b: daps_law(mu, Sig, A, y, **case, bug=b) for b in bugs},
                                N, ALPHA, FAR)
    kw = dict(case, num_steps=case["n"])
    del kw["n"]
    x = _run(mu, Sig, A, y, jax.random.key(0), N, **kw)
    oracle.assert_law(x, law, f"daps {name}", ALPHA)


def test_levels_are_the_official_schedulers():
    """Annealing levels (200 of 201 poly-7 levels from 100 to 0.1, then 0) and the PF-ODE's
    levels equal the official schedulers' to float32 rounding."""
    np.testing.assert_allclose(np.asarray(daps_levels(200)), official_levels(200, 100.0, 0.1),
                               rtol=2e-6, atol=0)
    for sig in (100.0, 3.7, 0.1):
        np.testing.assert_allclose(np.asarray(edm_levels(sig, 0.01, 6)),
                                   official_ode_levels(sig, 5), rtol=2e-6)


def test_time_of_sigma_inverts_the_sde():
    """``ς(t(ς)) = ς`` across the range (float32: relative 1e-5 covers the rounding of
    ``σ_t/α_t`` near the data end, where ς ∝ √t changes fastest)."""
    for sde in (SDE, sdes.VPSDE()):
        s = jnp.asarray([0.005, 0.01, 0.1, 1.0, 10.0, 100.0])
        back = sigma_of_time(sde, time_of_sigma(sde, s))
        np.testing.assert_allclose(np.asarray(back), np.asarray(s), rtol=1e-5)


def test_nonlinear_operator_runs_and_nfe():
    """Phase retrieval (only ``op.A``, gradient by autodiff): finite output, NFE = levels ×
    ODE steps, jit and vmap over keys."""
    op = operators.PhaseRetrieval((4, 4, 1), 2.0)
    g = exact.Gaussian(jnp.zeros(16), 0.25 * jnp.eye(16))
    model = lambda x, t, c=None: g.model_fn(SDE)(x.reshape(x.shape[0], -1), t).reshape(x.shape)
    y = op.A(0.3 * jnp.ones((4, 4, 1)))
    run = jax.jit(jax.vmap(lambda k: daps_sample(k, model, SDE, op, y, 0.05, (2, 4, 4, 1),
                                                 num_steps=3, langevin_steps=2, tau=None).x))
    x = run(jax.random.split(jax.random.key(1), 3))
    assert x.shape == (3, 2, 4, 4, 1) and bool(jnp.all(jnp.isfinite(x)))
    assert daps_sample(jax.random.key(0), model, SDE, op, y, 0.05, (1, 4, 4, 1), num_steps=3,
                       ode_steps=2, langevin_steps=1, tau=None).nfe == 6


@pytest.mark.parametrize("kw, match", [
    (dict(tau=None), "sigma_y"),
    (dict(ode_steps=0), "ode_steps"),
    (dict(sigma_max=1e4), "sigma_max"),
    (dict(num_steps=0), "num_steps"),
    (dict(ode_sigma_min=0.5), "ode_sigma_min"),
])
def test_bad_arguments(kw, match):
    g = exact.Gaussian(jnp.zeros(3), jnp.eye(3))
    op = operators.DenseMatrix(jnp.eye(3)[:1])
    with pytest.raises(ValueError, match=match):
        daps_sample(jax.random.key(0), g.model_fn(SDE), SDE, op, jnp.ones(1), None, (2, 3), **kw)


@pytest.mark.parametrize("method", ["daps", "reddiff", "pnpdm", "enkg", "fps", "fps-smc", "tds", "dcps"])
def test_gmm_benchmark_runs_the_issue16_methods(method):
    """``jaxir bench gmm --methods <name>`` path: each runs on padded problems (dy = 1 padded
    to 2 rows), finite, with a distance row per (dy, problem)."""
    from jaxir.bench import gmm

    rows = gmm.run_gmm_benchmark(dim=4, dys=(1, 2), num_problems=1, methods=[method],
                                 num_samples=32, num_reference=200, num_projections=10,
                                 num_steps=10)
    assert len(rows) == 2 and all(r["finite"] and np.isfinite(r["sw"]) for r in rows)
