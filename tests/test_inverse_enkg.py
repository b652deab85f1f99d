"""EnKG (Zheng et al., 2024): draw for draw against a float64 transcription, and its mean-field
limit on a linear-Gaussian problem.

EnKG's update couples the particles of the ensemble (the batch) through the matrix
``C_kj = ⟨A(x̂_0^k) − y, A(x̂_0^j) − mean⟩/B`` and normalises the step by ``‖C‖_F``, so it is
not linear in the state even with a Gaussian prior. It is written here once more in float64
NumPy from the official code (``devzhk/enkg-pytorch`` ``algo/enkg.py``: ``inference``,
``update_particles``, ``ode_sampler``) with the exact VE denoiser ``D(x; ς) = J_ς x + b_ς`` of a
Gaussian prior as the network, and fed jaxir's own start ``x_T = 80 z`` (``z`` regenerated from
the key: ``key → (k_init, k_steps)``, ``z = normal(k_init)``; EnKG draws nothing else). Both run
in float64 (``jax.enable_x64``; the levels are the float32 values jaxir's driver holds, read as
float64 inputs), so the tolerance is float64 rounding: every step is a few dense products of
size ≤ B·D (relative error ≤ K u with ``u = 1.1e-16``, ``K ≤ 10³``) and the normalised update
``g C Δx/‖C‖_F`` is scale-free (its relative error is that of ``C``), so after ≲ 3,000 such
operations the relative error is ≤ 3·10⁻¹⁰; the bound used is ``1e-8 (1 + max|x|)``. Nearby
wrong updates (the step normalised by the spectral norm ``‖C‖_2`` instead of ``torch.linalg.
matrix_norm``'s Frobenius norm, the particle spread ``Δx`` taken from x̂_0
instead of x_t, x̂_0 by one denoiser call instead of the ODE) miss by more than 100 bounds.
Operators: a dense 3 × 6 matrix, phase retrieval (4 × 4 → 8 × 8 magnitudes) and JPEG-like
quantisation (8 × 8, quality 50) — the operators enter the transcription as inputs (their own
``A``, evaluated in float64), the update does not.

Mean field: for a Gaussian prior and linear ``A`` the ODE maps are affine, ``x̂_0 = M x + c``,
and as ``B → ∞`` each particle takes ``x ← x − g Cov(x) MᵀAᵀ(A x̂_0 − y)/√tr(S_e S_d)``
(``S_d = AM Cov(x) MᵀAᵀ``, ``S_e = S_d + ē ēᵀ``): a Gaussian recursion on (mean, covariance),
:func:`mean_field_law`. Finite ensembles approach it slowly (documented in ``enkg_sample``); the
test here checks the derivation itself: the mean-field map is the finite update evaluated at the
exact moments (an ensemble with exactly a law's sample moments is mapped to the pushed law's).

Time: ~20 s of CPU for the file.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import oracle
import pytest

from jaxir import operators, sdes
from jaxir.inverse import enkg_sample
from jaxir.inverse._enkg import enkg_plan

SDE = sdes.VPSDE()  # closed-form float64 (α, σ) under x64


def levels_f32(n, smax=80.0, smin=0.002, rho=7):
    """EnKG's ``t_steps`` (poly-ρ) as the driver holds them (float32), then 0; float64 values."""
    r = np.arange(n) / (n - 1)
    lv = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.concatenate([lv.astype(np.float32).astype(np.float64), [0.0]])


def plan(n, thr_s=0.05, thr_e=0.05, g=2.0, factor=4, max_m=20):
    """``inference``'s guard, ODE step count and scale (``lr_min_ratio = 0``), written again."""
    rows = []
    for i in range(n):
        guided = (i < n - int(thr_e * n)) and (i > thr_s * n)
        rows.append((guided, min(1 + (n - i) // factor, max_m), g))
    return rows


def make_den(mu, Sig):
    def den(x, s):  # x (B, d)
        J, b = oracle.gaussian_denoiser(mu, Sig, 1.0, s)
        return x @ J.T + b
    return den


def ode(den, x, sig, m, smin=0.002, rho=7):
    """``ode_sampler``: ``m`` Euler steps over poly-ρ levels sig → smin, then 0 (m = 1: D)."""
    if m == 1:
        return den(x, sig)
    j = np.arange(m) / (m - 1)
    lv = np.concatenate([(sig ** (1 / rho) + j * (smin ** (1 / rho) - sig ** (1 / rho))) ** rho, [0.0]])
    for a, b in zip(lv[:-1], lv[1:]):
        x = x + (b - a) * (x - den(x, a)) / a
    return x


def enkg_numpy(x, den, A, y, n, updates=2, bug=None, **plan_kw):
    """The official loop on an ensemble ``x`` (B, D); ``A`` maps (B, D) → (B, dy)."""
    lv = levels_f32(n)
    for i, (guided, m, g) in enumerate(plan(n, **plan_kw)):
        sig, nxt = lv[i], lv[i + 1]
        if guided:
            for _ in range(updates):
                x = kalman_update(x, den, A, y, sig, m, g, bug)
        x = x + (nxt - sig) * (x - den(x, sig)) / sig
    return x


def kalman_update(x, den, A, y, sig, m, g, bug=None):
    """``update_particles``' loop body: one ensemble Kalman step of the particles ``x``."""
    x0 = den(x, sig) if bug == "one_shot" else ode(den, x, sig, m)
    ys = A(x0)
    err, dys = ys - y, ys - ys.mean(0)
    dxs = (x0 - x0.mean(0)) if bug == "dx_of_x0" else (x - x.mean(0))
    coef = err @ dys.T / x.shape[0]
    lr = g / (np.linalg.norm(coef, 2) if bug == "spectral_norm" else np.sqrt(np.sum(coef**2)))
    return x - lr * coef @ dxs


def _model64(mu, Sig):
    mu, Sig = jnp.asarray(mu), jnp.asarray(Sig)
    d = mu.shape[0]

    def model(x, t, c=None):
        a, s = SDE.marginal_coeffs(t)
        shp = x.shape
        x = x.reshape(shp[0], -1)
        J = a * jnp.linalg.solve(a * a * Sig + s * s * jnp.eye(d), Sig).T
        x0 = x @ J.T + (mu - a * J @ mu)
        return ((x - a * x0) / s).reshape(shp)

    return model


def _spd(rng, d, scale, floor):
    L = rng.normal(size=(d, d)) * scale
    return L @ L.T + floor * np.eye(d)


def _case(name):
    """(μ, Σ, jaxir operator, x_shape, y) for a named operator; y = A(x*) (+ noise)."""
    rng = np.random.default_rng(5)
    if name == "dense":
        mu, Sig, A, y = oracle.dense_problem(0)
        return mu, Sig, operators.DenseMatrix(jnp.asarray(A)), (6,), y
    if name == "phase":
        d, shape = 16, (4, 4, 1)
        op = operators.PhaseRetrieval(shape, 2.0)
        mu, Sig = 0.2 * rng.normal(size=d), _spd(rng, d, 0.15, 0.05)
    else:
        d, shape = 64, (8, 8, 1)
        op = operators.JPEGLike(shape, quality=50)
        mu, Sig = 0.1 * rng.normal(size=d), _spd(rng, d, 0.05, 0.02)
    x_star = mu + np.linalg.cholesky(Sig) @ rng.normal(size=d)
    with jax.enable_x64(True):
        y = np.asarray(op.A(jnp.asarray(x_star.reshape(shape))), np.float64)
    return mu, Sig, op, shape, y + 0.01 * rng.normal(size=y.shape)


@pytest.mark.parametrize("name, n", [("dense", 80), ("phase", 20), ("jpeg", 12)])
def test_enkg_matches_float64_transcription(name, n):
    """jaxir's EnKG (defaults; ``n`` steps) equals the NumPy loop on the same start; the wrong
    updates miss by > 100 tolerances."""
    mu, Sig, op, shape, y = _case(name)
    B, key = 32, jax.random.key(7)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(lambda k: enkg_sample(k, _model64(mu, Sig), SDE, op,
                                                       jnp.asarray(y), None, (B, *shape),
                                                       num_steps=n).x)(key)).reshape(B, -1)
        x_T = 80.0 * np.asarray(jax.random.normal(jax.random.split(key, 2)[0], (B, *shape),
                                                  jnp.float64)).reshape(B, -1)
        A = lambda x: np.asarray(jax.vmap(op.A)(jnp.asarray(x.reshape(-1, *shape)))).reshape(len(x), -1)
        den = make_den(mu, Sig)
        ref = enkg_numpy(x_T, den, A, y.reshape(-1), n)
        wrong = {b: enkg_numpy(x_T, den, A, y.reshape(-1), n, bug=b)
                 for b in ("spectral_norm", "dx_of_x0", "one_shot")}
    tol = 1e-8 * (1 + np.abs(ref).max())
    err = np.abs(got - ref).max()
    assert err < tol, f"{name}: max |jaxir − numpy| = {err:.3g} (tol {tol:.3g})"
    for b, w in wrong.items():
        miss = np.abs(got - w).max()
        assert miss > 100 * tol, f"{name} {b}: misses by only {miss:.3g} (tol {tol:.3g})"


def test_plan_is_the_official_one():
    """Guided steps, ODE step counts and scales equal the official loop's (80 steps)."""
    g, m, s = enkg_plan(80)
    ref = plan(80)
    assert list(g) == [r[0] for r in ref] and list(m) == [r[1] for r in ref]
    assert np.all(s == 2.0)


def ode_affine(mu, Sig, sig, m, smin=0.002, rho=7):
    """``(M, c)`` with ``ode(x) = M x + c`` for the exact Gaussian denoiser."""
    d = mu.shape[0]
    I = np.eye(d)
    if m == 1:
        return oracle.gaussian_denoiser(mu, Sig, 1.0, sig)
    j = np.arange(m) / (m - 1)
    lv = np.concatenate([(sig ** (1 / rho) + j * (smin ** (1 / rho) - sig ** (1 / rho))) ** rho, [0.0]])
    M, c = I, np.zeros(d)
    for a, b in zip(lv[:-1], lv[1:]):
        J, bb = oracle.gaussian_denoiser(mu, Sig, 1.0, a)
        h = (b - a) / a
        P = I + h * (I - J)
        M, c = P @ M, P @ c - h * bb
    return M, c


def mean_field_law(mu, Sig, A, y, n, updates=2, smax=80.0, norm="frobenius"):
    """The B → ∞ law of EnKG's particles: Gaussian, pushed by the affine mean-field maps."""
    d = mu.shape[0]
    I = np.eye(d)
    lv = levels_f32(n)
    law = oracle.Law.of(np.zeros(d), smax**2 * I)
    for i, (guided, m, g) in enumerate(plan(n)):
        sig, nxt = lv[i], lv[i + 1]
        if guided:
            M, c = ode_affine(mu, Sig, sig, m)
            for _ in range(updates):
                law = _mf_update(law, M, c, A, y, g, norm)
        J, b = oracle.gaussian_denoiser(mu, Sig, 1.0, sig)
        law = _mf_push(law, J, b, (nxt - sig) / sig)
    return law


def _mf_update(law, M, c, A, y, g, norm="frobenius"):
    """One mean-field ensemble Kalman update of a Gaussian law (ODE map ``x̂_0 = M x + c``)."""
    C = law.cov
    e_bar = A @ (M @ law.mean + c) - y
    S_d = A @ M @ C @ M.T @ A.T
    S_e = S_d + np.outer(e_bar, e_bar)
    if norm == "frobenius":  # ‖C‖_F² = Σ_kj ⟨e_k, d_j⟩²/B² → tr(S_e S_d)
        kappa = g / np.sqrt(np.trace(S_e @ S_d))
    else:  # ‖C‖_2² = λ_max((EᵀE)(DᵀD))/B² → λ_max(S_e S_d)
        kappa = g / np.sqrt(np.linalg.eigvals(S_e @ S_d).real.max())
    G = C @ M.T @ A.T
    return law.push(np.eye(len(c)) - kappa * G @ A @ M, -kappa * G @ (A @ c - y))


def _mf_push(law, J, b, h):
    """The Euler PF-ODE step ``x + h (x − J x − b)`` on a law."""
    I = np.eye(len(b))
    return law.push(I + h * (I - J), -h * b)


def test_mean_field_map_is_the_update_at_exact_moments():
    """The mean-field map is the finite update evaluated at the law's moments: an ensemble whose
    sample mean and (1/B) covariance *equal* a Gaussian law's (whitened draws) is mapped by
    three consecutive guided updates and Euler steps (steps 17–19 of 40, m = 6 ODE steps) to an
    ensemble whose sample moments equal the mean-field law pushed the same way — to float64
    rounding (bound 1e-9 relative; the update is affine given the moments, so the sample
    moments transform exactly). The spectral-norm variant's push misses by > 1e-3."""
    mu, Sig, A, y = oracle.dense_problem(0)
    n, B, d = 40, 300, 6
    lv = levels_f32(n)
    den = make_den(mu, Sig)
    rng = np.random.default_rng(0)
    law = oracle.Law.of(mu + 0.3 * rng.normal(size=d), 0.5 * Sig)
    z = rng.standard_normal((B, d))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / B)).T  # zᵀz/B = I exactly
    x = law.mean + z @ np.linalg.cholesky(law.cov).T
    ref, other = law, law
    for i in (17, 18, 19):
        guided, m, g = plan(n)[i]
        assert guided and m == 6
        sig, nxt = lv[i], lv[i + 1]
        M, c = ode_affine(mu, Sig, sig, m)
        J, b = oracle.gaussian_denoiser(mu, Sig, 1.0, sig)
        h = (nxt - sig) / sig
        x = kalman_update(x, den, lambda v: v @ A.T, y, sig, m, g)
        x = x + h * (x - den(x, sig))
        ref = _mf_push(_mf_update(ref, M, c, A, y, g), J, b, h)
        other = _mf_push(_mf_update(other, M, c, A, y, g, "spectral"), J, b, h)
    cov = (x - x.mean(0)).T @ (x - x.mean(0)) / B
    scale = 1 + np.abs(ref.cov).max() + np.abs(ref.mean).max()
    assert np.abs(x.mean(0) - ref.mean).max() < 1e-9 * scale
    assert np.abs(cov - ref.cov).max() < 1e-9 * scale
    assert max(np.abs(other.mean - ref.mean).max(), np.abs(other.cov - ref.cov).max()) > 1e-3


def test_errors_and_nfe():
    """The batch is the ensemble (B ≥ 2); bad arguments are ValueErrors; NFE per particle is
    ``n + num_updates Σ_guided m_i``."""
    from jaxir import exact

    g = exact.Gaussian(jnp.zeros(3), jnp.eye(3))
    op = operators.DenseMatrix(jnp.eye(3)[:1])
    run = lambda shape, **kw: enkg_sample(jax.random.key(0), g.model_fn(SDE), SDE, op,
                                          jnp.ones(1), None, shape, **kw)
    for shape, kw, match in (((1, 3), {}, "B >= 2"), ((4, 3), dict(num_updates=0), "num_updates"),
                             ((4, 3), dict(num_steps=1), "num_steps"),
                             ((4, 3), dict(sigma_max=1e5), "sigma_max")):
        with pytest.raises(ValueError, match=match):
            run(shape, **kw)
    gd, m, _ = enkg_plan(6)
    assert run((2, 3), num_steps=6).nfe == 6 + 2 * int(np.sum(m[gd]))


@pytest.mark.parametrize("name", ["daps", "reddiff", "pnpdm", "enkg", "fps", "fps-smc", "tds", "dcps"])
def test_restore_methods_run(name):
    """The ``jaxir restore`` / ``evaluate`` entries run on 8 × 8 × 3 patches with an exact
    Gaussian prior (4× SR; tiny step counts): right shape, finite, NFE > 0."""
    from jaxir import exact, priors, schedules
    from jaxir.restore._methods import METHODS
    from jaxir.restore._tasks import TASKS

    sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
    g = exact.Gaussian(jnp.zeros(192), 0.3 * jnp.eye(192))
    model = lambda x, t, c=None: g.model_fn(sde)(x.reshape(x.shape[0], -1), t).reshape(x.shape)
    prior = priors.Prior(model, sde, "eps", 8, 3, None, None, None)
    steps = {"daps": 3, "reddiff": 5, "pnpdm": 2, "enkg": 4, "fps": 4, "fps-smc": 4, "tds": 4,
             "dcps": 6}[name]
    for task_name in ("sr4",):
        task = TASKS[task_name]
        op = task.make_operator((8, 8, 3), None)
        y = jnp.zeros((2, *op.y_shape))
        out = METHODS[name].run(jax.random.key(0), prior, op, y, task.sigma_y, task, steps)
        assert out.x.shape == (2, 8, 8, 3) and bool(jnp.all(jnp.isfinite(out.x))) and out.nfe > 0
        # network passes per patch: the particle filters count every particle
        want = {"fps": steps, "fps-smc": 5 * steps, "tds": 4 * steps,
                "dcps": 3 * 5 + (steps - 1) * 3}.get(name)
        assert want is None or out.nfe == want, (name, out.nfe)
