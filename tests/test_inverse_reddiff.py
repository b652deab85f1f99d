"""RED-diff (Mardani et al., ICLR 2024): its exact law with plain SGD, and Adam draw for draw.

With a Gaussian prior the exact ``ε̂(x_t)`` is affine in ``x_t = α_t μ + σ_t ε``, so with the
optimiser ``optax.sgd`` every RED-diff step ``μ ← μ − lr g`` is affine in ``μ`` and the fresh
``ε``: the output law is Gaussian and computed here in float64 NumPy from the official update
(``NVlabs/RED-diff`` ``algos/reddiff.py``: ``loss = λ w_t mean(sg[ε̂ − ε] μ) + v mean((y −
Hμ)²)/2``, output ``x0_pred`` = μ before the last update), importing nothing from jaxir; jaxir's
draws are z-tested against it (Bonferroni, false alarm 1e-5), and nearby wrong updates (the data
mean over D instead of the observed entries, no stop-gradient on the regulariser, the paper's
output μ after the last update, the ``sqrt`` weighting, the regulariser without ``− ε``) are
shown ≥ FAR thresholds away.

Adam (the default) is nonlinear; it is compared draw for draw with a float64 NumPy
transcription of the same loop (``torch.optim.Adam`` with β = (0.9, 0.99), ε = 1e-8), fed
jaxir's own noise (regenerated from the key: ``key → (k_init, k_steps)``, step k draws
``normal(split(k_steps, n)[k])``). Both run in float64 (``jax.enable_x64``), the schedule's
float32 ``(α_t, σ_t)`` read once from the SDE and used by both, so the tolerance is float64
rounding: per step ``K u ‖terms‖`` with ``u = 1.1e-16`` and ``K ~ 10 d``, passed through Adam's
normalised step (sensitivity ``lr`` per relative error of ``g``: ≤ 1e-13 over 1000 steps);
the bound used, ``1e-9 (1 + max|μ|)``, has ≥ 10⁴ slack on that. The wrong updates (the
paper's output after the last update, Adam without bias correction) miss by > 100 bounds.

Time: ~15 s of CPU for the file.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import oracle
import optax
import pytest

from jaxir import exact, operators, schedules, sdes
from jaxir.inverse import reddiff_sample

N_TRAIN = 1000
SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(N_TRAIN))
N = 40_000
ALPHA = 1e-5
FAR = 3.0


def ac(i):
    """(α, σ) of DDPM index i as the SDE computes them (float32 values, used in float64)."""
    a, s = SDE.marginal_coeffs(jnp.float32((i + 1) / N_TRAIN))
    return float(a), float(s)


def leading(n):
    return oracle.leading_timesteps(N_TRAIN, n)


def reddiff_law(mu, Sig, A, y, n, lr, lam=0.25, v=1.0, bug=None):
    """Exact law of SGD RED-diff (float64): state μ, start A⁺y; step at index i with fresh ε:
    ``g = λ w (ε̂ − ε)/D − v Aᵀ(y − Aμ)/n_obs``, ``w = σ/α``, ``ε̂ = (x − α(Jx + b))/σ``,
    ``x = αμ + σε``; ``μ ← μ − lr g``; output μ before the last step."""
    d, dy = mu.shape[0], A.shape[0]
    I = np.eye(d)
    n_obs = d if bug == "mean_over_d" else dy
    law = oracle.Law.of(np.linalg.pinv(A) @ y, np.zeros((d, d)))
    ts = leading(n)
    last = n if bug == "after_last" else n - 1
    for i in ts[:last]:
        a, s = ac(i)
        J, b = oracle.gaussian_denoiser(mu, Sig, a, s)
        w = np.sqrt(s / a) if bug == "sqrt_weight" else s / a
        # ε̂ − ε as affine in (μ, ε): ε̂ = (αμ + σε − α(J(αμ + σε) + b))/σ
        E_mu = a * (I - a * J) / s
        E_eps = (I - a * J) - (0.0 if bug == "no_minus_eps" else I)
        e_c = -a * b / s
        P = I - lr * (v * A.T @ A / n_obs)
        q = lr * v * A.T @ y / n_obs
        # regulariser λ w (ε̂ − ε)/D (stop-gradient: its value, not its derivative)
        P = P - lr * lam * w * E_mu / d
        q = q - lr * lam * w * e_c / d
        R = -lr * lam * w * E_eps / d
        if bug == "no_stopgrad":  # + the derivative of (ε̂ − ε)ᵀμ through ε̂: E_muᵀ μ
            P = P - lr * lam * w * E_mu.T / d
        law = law.push(P, q, R)
    return law


def _gauss(mu, Sig):
    return exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32))


def test_reddiff_sgd_matches_its_exact_law():
    """SGD (lr 1, 20 leading steps) RED-diff draws vs its float64 law; the wrong updates are
    ≥ FAR thresholds away."""
    mu, Sig, A, y = oracle.dense_problem(0)
    n, lr = 20, 1.0
    law = reddiff_law(mu, Sig, A, y, n, lr)
    wrong = {b: reddiff_law(mu, Sig, A, y, n, lr, bug=b)
             for b in ("mean_over_d", "no_stopgrad", "after_last", "sqrt_weight", "no_minus_eps")}
    oracle.assert_discriminates(law, wrong, N, ALPHA, FAR)
    op = operators.DenseMatrix(jnp.asarray(A, jnp.float32))
    f = jax.jit(lambda k: reddiff_sample(k, _gauss(mu, Sig).model_fn(SDE), SDE, op,
                                         jnp.asarray(y, jnp.float32), None, (N, 6), num_steps=n,
                                         optimizer=optax.sgd(lr)).x)
    oracle.assert_law(np.asarray(f(jax.random.key(0)), np.float64), law, "reddiff sgd", ALPHA)


# ---------------------------------------------------------------- Adam, draw for draw (float64)
def reddiff_adam_numpy(m_mu, m_Sig, A, y, n, eps_draws, lr=0.1, lam=0.25, v=1.0, b1=0.9, b2=0.99,
                       adam_eps=1e-8, bug=None):
    """Official RED-diff with ``torch.optim.Adam`` in float64 NumPy; ``eps_draws[k]`` (B, d) is
    step k's ε. Returns μ before the last update (``x0_pred``)."""
    d, dy = m_mu.shape[0], A.shape[0]
    B = eps_draws.shape[1]
    mu = np.tile(np.linalg.pinv(A) @ y, (B, 1))
    m = np.zeros_like(mu)
    vv = np.zeros_like(mu)
    out = mu
    for k, i in enumerate(leading(n)):
        a, s = ac(i)
        J, b = oracle.gaussian_denoiser(m_mu, m_Sig, a, s)
        eps = eps_draws[k]
        x = a * mu + s * eps
        eps_hat = (x - a * (x @ J.T + b)) / s
        w = s / a
        g = lam * w * (eps_hat - eps) / d - v * (y - mu @ A.T) @ A / dy
        out = mu
        m = b1 * m + (1 - b1) * g
        vv = b2 * vv + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** (k + 1)), vv / (1 - b2 ** (k + 1))
        step = mhat / (np.sqrt(vhat) + adam_eps) if bug != "no_bias_correction" else m / (np.sqrt(vv) + adam_eps)
        mu = mu - lr * step
    return out if bug != "after_last" else mu


def _model64(mu, Sig):
    """The exact ε-model in float64 (the schedule's float32 (α, σ) cast up)."""
    mu, Sig = jnp.asarray(mu), jnp.asarray(Sig)

    def model(x, t, c=None):
        a, s = SDE.marginal_coeffs(t)
        a, s = a.astype(jnp.float64), s.astype(jnp.float64)
        J = a * jnp.linalg.solve(a * a * Sig + s * s * jnp.eye(mu.shape[0]), Sig).T
        x0 = x @ J.T + (mu - a * J @ mu)
        return (x - a * x0) / s

    return model


@pytest.mark.parametrize("n", [20, 1000])
def test_reddiff_adam_matches_float64_transcription(n):
    """Default RED-diff (Adam lr 0.1, λ 0.25, linear weighting) vs the NumPy transcription on
    the same noise, 64 chains; ``n = 1000`` is the default step count."""
    mu, Sig, A, y = oracle.dense_problem(0)
    B = 64
    with jax.enable_x64(True):
        op = operators.DenseMatrix(jnp.asarray(A))
        key = jax.random.key(3)
        got = np.asarray(jax.jit(lambda k: reddiff_sample(k, _model64(mu, Sig), SDE, op,
                                                          jnp.asarray(y), None, (B, 6),
                                                          num_steps=n).x)(key))
        k_steps = jax.random.split(key, 2)[1]
        draws = np.stack([np.asarray(jax.random.normal(k, (B, 6), jnp.float64))
                          for k in jax.random.split(k_steps, n)])
        # (α, σ) read under x64 too: the same evaluation of the schedule as jaxir's run
        ref = reddiff_adam_numpy(mu, Sig, A, y, n, draws)
        wrong = {b: reddiff_adam_numpy(mu, Sig, A, y, n, draws, bug=b)
                 for b in ("after_last", "no_bias_correction")}
    tol = 1e-9 * (1 + np.abs(ref).max())
    err = np.abs(got - ref).max()
    assert err < tol, f"max |jaxir − numpy| = {err:.3g} (tol {tol:.3g})"
    for bug, w in wrong.items():
        miss = np.abs(got - w).max()
        assert miss > 100 * tol, f"{bug}: misses by only {miss:.3g}"


def test_observed_count_and_errors():
    """Inpainting's data mean runs over the observed pixels (as the official ``H``); bad
    arguments are ValueErrors."""
    from jaxir.inverse._reddiff import _num_observed

    mask = jnp.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])[..., None]
    assert int(_num_observed(operators.Inpainting(mask, (2, 3, 2)))) == 6
    assert _num_observed(operators.SuperResolution((4, 4, 1), 2)) == 4
    g = _gauss(np.zeros(3), np.eye(3))
    op = operators.DenseMatrix(jnp.eye(3)[:1])
    with pytest.raises(ValueError, match="weighting"):
        reddiff_sample(jax.random.key(0), g.model_fn(SDE), SDE, op, jnp.ones(1), None, (2, 3),
                       weighting="cubic")
    with pytest.raises(ValueError, match="lr"):
        reddiff_sample(jax.random.key(0), g.model_fn(SDE), SDE, op, jnp.ones(1), None, (2, 3),
                       lr=0.0)
