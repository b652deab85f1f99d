"""Every training-free sampler that is linear in its state, against its own exact law.

With a Gaussian prior ``N(μ, Σ)`` the exact denoiser ``x̂_0(x_t) = J_t x_t + b_t`` is affine,
so DDRM, ΠGDM, DDNM / DDNM+ (with time travel), DiffPIR, replacement ("projection"), ILVR,
RePaint, MCG (squared norm), GDP with a fixed linear operator, and classifier / classifier-free
guidance with Gaussian classifiers / conditionals all map a Gaussian start to a Gaussian output.
Each method's output law — at *its own* step count and η, not the posterior — is computed here
by pushing the first two moments through the method's published update equations, in float64
NumPy, from the papers and the official code (what each function follows is written in its
docstring), importing nothing from jaxir. jaxir's draws (public ``jaxir.inverse.*_sample`` /
``jaxir.samplers``) are then z-tested against that law: every mean and covariance entry within
the Bonferroni threshold of :func:`oracle.z_threshold` (family-wise false alarm ≤ 1e-5).

Each case also proves that it discriminates: the law of each listed nearby wrong update (a wrong
variance term, η ↔ η_b swapped, a dropped correction, the previous-step index off by one, the
measurement noised at the step's start instead of its end, …) must lie at least ``FAR`` times
the threshold away at the case's sample count (:func:`oracle.law_distance_in_se`). "Off by
one" is tested as the previous step read one position off the respaced grid (``"grid"``); a
step landing one *DDPM* index off (``"index"``, ``prev + 1``) moves the law by only 0.1–1.2
thresholds at n = 40,000 with an exact score (measured by the same function) — below the
resolution of any affordable n, and not claimed.

Problems: a non-diagonal Gaussian prior on R^6 with a random dense 3 × 6 operator
(``DenseMatrix``); 2× block-average super-resolution on 4 × 4 × 1 images (d = 16) and
inpainting of a 2 × 3 × 1 image (d = 6) for the operator-specific (SVD, pixel-mask) paths. The
oracle builds its matrices from its own dense ``A`` (``np.linalg.svd`` for the spectral
methods); a separate check makes sure jaxir's operator is that matrix.

Where the output law is degenerate (replacement methods end with ``A x = y`` exactly), the
z-test runs in the law's non-degenerate eigen-subspace and the degenerate directions are checked
to float32 rounding.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import oracle
import pytest

from jaxir import exact, operators, samplers, schedules, sdes
from jaxir.inverse import (
    classifier_free_guidance,
    classifier_guidance,
    ddnm_sample,
    ddrm_sample,
    diffpir_sample,
    gdp_sample,
    ilvr_sample,
    mcg_sample,
    pigdm_sample,
    projection_sample,
    repaint_sample,
)

N_TRAIN = 1000
SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(N_TRAIN))
BETAS = oracle.linear_betas(N_TRAIN)
ABAR = oracle.alphas_cumprod(BETAS)
N = 40_000  # draws per case: se(mean) ≈ 0.5 % of a standard deviation
ALPHA = 1e-5  # family-wise false-alarm probability of one case's z-test
FAR = 3.0  # a nearby wrong update must be at least FAR thresholds away


# ============================================================================ affine algebra
# A state-affine expression with fresh noise: value = M s + c + Σ_k R_k z_k, where s is the
# (stacked) state of the chain and z_k are independent standard normal vectors created by
# `fresh`. One step of a linear sampler maps the law of s to the law of [values...].

_noise_ids = itertools.count()


class Aff:
    __array_ufunc__ = None  # numpy defers `array @ Aff` and `array * Aff` to us

    def __init__(self, M, c, R=None):
        self.M = np.asarray(M, np.float64)
        self.c = np.asarray(c, np.float64)
        self.R = dict(R or {})

    @property
    def dim(self):
        return self.M.shape[0]

    def _lin(self, f):
        return Aff(f(self.M), f(self.c), {k: f(v) for k, v in self.R.items()})

    def __add__(self, o):
        if not isinstance(o, Aff):
            return Aff(self.M, self.c + o, self.R)
        R = dict(self.R)
        for k, v in o.R.items():
            R[k] = R[k] + v if k in R else v
        return Aff(self.M + o.M, self.c + o.c, R)

    __radd__ = __add__

    def __neg__(self):
        return self._lin(lambda a: -a)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, s):
        s = np.asarray(s, np.float64)
        if s.ndim == 0:
            return self._lin(lambda a: s * a)
        return self._lin(lambda a: (s * a.T).T)  # a vector: diagonal scaling

    __rmul__ = __mul__

    def __truediv__(self, s):
        return self * (1.0 / np.asarray(s, np.float64))

    def __rmatmul__(self, A):
        A = np.asarray(A, np.float64)
        return self._lin(lambda a: A @ a)


def fresh(m, d):
    """A new standard normal d-vector, for a state of dimension m."""
    return Aff(np.zeros((d, m)), np.zeros(d), {next(_noise_ids): np.eye(d)})


def state(m, d, block=0):
    """The ``block``-th d-vector of a stacked state of dimension m."""
    M = np.zeros((d, m))
    M[:, block * d : (block + 1) * d] = np.eye(d)
    return Aff(M, np.zeros(d))


def const(m, v):
    v = np.asarray(v, np.float64)
    return Aff(np.zeros((v.shape[0], m)), v)


def push(law: oracle.Law, *outs: Aff) -> oracle.Law:
    """The law of the stacked ``outs`` when the state has law ``law``."""
    P = np.vstack([o.M for o in outs])
    q = np.concatenate([o.c for o in outs])
    ids = sorted(set().union(*(o.R for o in outs)))
    blocks = []
    for k in ids:
        width = next(o.R[k].shape[1] for o in outs if k in o.R)
        blocks.append(np.vstack([o.R.get(k, np.zeros((o.dim, width))) for o in outs]))
    R = np.hstack(blocks) if blocks else None
    return law.push(P, q, R)


def start(*outs: Aff) -> oracle.Law:
    """The law of ``outs`` built from constants and fresh noise only (an initial state)."""
    return push(oracle.Law.of(np.zeros(0), np.zeros((0, 0))), *outs)


# ============================================================================ the chain
def abar(i):
    """ᾱ of DDPM index i; index −1 is the data (ᾱ = 1)."""
    return 1.0 if i < 0 else float(ABAR[i])


def ac(i):
    """(√ᾱ_i, √(1 − ᾱ_i))."""
    a2 = abar(i)
    return np.sqrt(a2), np.sqrt(1.0 - a2)


def step_pairs(indices, bug=None):
    """(t, s) index pairs of a descending grid, the last step going to −1 (data); mutants as
    :func:`_moves`."""
    ts = [int(i) for i in indices]
    return _moves(ts + [-1], bug)


def leading(n):
    return oracle.leading_timesteps(N_TRAIN, n)


@functools.lru_cache(maxsize=None)
def _den(prior_key, i):
    mu, Sig = _PRIORS[prior_key]
    a, s = ac(i)
    return oracle.gaussian_denoiser(mu, Sig, a, s)


def denoise(prior_key, i, x):
    """(x̂_0, ε̂) of the exact Gaussian denoiser at DDPM index i, as affine expressions of x."""
    J, b = _den(prior_key, i)
    a, s = ac(i)
    x0 = J @ x + b
    return x0, (x - a * x0) / s


def ddpm_posterior(i, j, bug=None):
    """Ho et al. (2020) Eq. 7 on the respaced chain t = i → s = j: the posterior
    ``q(x_s | x_t, x_0) = N(c0 x_0 + ct x_t, τ²)`` with ``β' = 1 − ᾱ_t/ᾱ_s`` and the "fixed
    small" ``τ² = β̃ = β'(1 − ᾱ_s)/(1 − ᾱ_t)`` (mutant ``fixed_large``: ``τ² = β'``)."""
    at, as_ = abar(i), abar(j)
    beta = 1.0 - at / as_
    c0 = np.sqrt(as_) * beta / (1.0 - at)
    ct = np.sqrt(at / as_) * (1.0 - as_) / (1.0 - at)
    tau2 = beta if bug == "fixed_large" and j >= 0 else (1.0 - as_) / (1.0 - at) * beta
    return c0, ct, np.sqrt(max(tau2, 0.0))


def ddim_coeffs(i, j, eta):
    """DDIM (Song et al. 2021, Eq. 12/16): ``c1 = η √((1 − ᾱ_t/ᾱ_s)(1 − ᾱ_s)/(1 − ᾱ_t))``,
    ``c2 = √(1 − ᾱ_s − c1²)``."""
    at, as_ = abar(i), abar(j)
    c1 = eta * np.sqrt((1.0 - at / as_) * (1.0 - as_) / (1.0 - at))
    return c1, np.sqrt(max(1.0 - as_ - c1**2, 0.0))


def spectral(A, y, sigma_y):
    """From the dense A: full V (d × d), singular values padded to d, observed mask,
    ȳ = (Uᵀy)/s on the observed coordinates, ρ = σ_y/s."""
    dy, d = A.shape
    U, s, Vt = np.linalg.svd(A, full_matrices=True)
    s_full = np.zeros(d)
    s_full[:dy] = np.where(s > 1e-10 * s[0], s, 0.0)
    obs = s_full > 0
    s_safe = np.where(obs, s_full, 1.0)
    uty = np.zeros(d)
    uty[:dy] = U.T @ y
    ybar = np.where(obs, uty / s_safe, 0.0)
    rho = np.where(obs, sigma_y / s_safe, 0.0)
    return Vt.T, Vt, s_full, obs, ybar, rho


# ============================================================================ problems
_PRIORS: dict = {}


def _register(name, mu, Sig):
    _PRIORS[name] = (np.asarray(mu, np.float64), np.asarray(Sig, np.float64))
    return name


class Problem:
    """A Gaussian prior (float64), the oracle's dense ``A`` (dy × d) and ``y`` (dy), and jaxir's
    operator with ``y`` in the operator's layout. ``A_img``/``y_img``: the same-shape image-space
    form of an inpainting operator (``diag(mask)``, the masked image), else None."""

    def __init__(self, name, mu, Sig, A, y, sigma_y, op, y_op, x_shape, A_img=None, y_img=None):
        self.prior = _register(name, mu, Sig)
        self.mu, self.Sig = _PRIORS[name]
        self.A, self.y = np.asarray(A, np.float64), np.asarray(y, np.float64)
        self.d = self.A.shape[1]
        self.sigma_y, self.op, self.y_op, self.x_shape = sigma_y, op, y_op, x_shape
        self.A_img, self.y_img = A_img, y_img

    def model_fn(self):
        g = exact.Gaussian(jnp.asarray(self.mu, jnp.float32), jnp.asarray(self.Sig, jnp.float32))
        base = g.model_fn(SDE)
        if len(self.x_shape) == 1:
            return base
        return lambda x, t, c=None: base(x.reshape(x.shape[0], -1), t).reshape(x.shape)

    def shape(self, n=None):
        return (N if n is None else n, *self.x_shape)


def _spd(rng, d, scale, floor):
    L = rng.normal(size=(d, d)) * scale
    return L @ L.T + floor * np.eye(d)


@functools.lru_cache(maxsize=None)
def dense_problem(sigma_y):
    """R^6, non-diagonal prior, A dense 3 × 6 (DenseMatrix), y from a prior draw + noise."""
    rng = np.random.default_rng(0)
    d, dy = 6, 3
    mu, Sig = rng.normal(size=d) * 0.5, _spd(rng, d, 0.6, 0.3)
    A32 = (rng.normal(size=(dy, d)) / np.sqrt(d)).astype(np.float32)
    x_star = mu + np.linalg.cholesky(Sig) @ rng.normal(size=d)
    y = (A32.astype(np.float64) @ x_star + sigma_y * rng.normal(size=dy)).astype(np.float32)
    return Problem(f"dense{sigma_y}", mu, Sig, A32, y, sigma_y,
                   operators.DenseMatrix(jnp.asarray(A32)), jnp.asarray(y), (d,))


def _block_average(h, w, f):
    """Dense 2-D block averaging (C-order flattening of (h, w, 1) images)."""
    A = np.zeros(((h // f) * (w // f), h * w))
    for i, j in itertools.product(range(h), range(w)):
        A[(i // f) * (w // f) + j // f, i * w + j] = 1.0 / f**2
    return A


@functools.lru_cache(maxsize=None)
def sr_problem(sigma_y):
    """2× block-average super-resolution of 4 × 4 × 1 images (d = 16, dy = 4)."""
    rng = np.random.default_rng(1)
    d = 16
    mu, Sig = rng.normal(size=d) * 0.3, _spd(rng, d, 0.3, 0.1)
    A = _block_average(4, 4, 2)
    x_star = mu + np.linalg.cholesky(Sig) @ rng.normal(size=d)
    y = (A @ x_star + sigma_y * rng.normal(size=4)).astype(np.float32)
    return Problem(f"sr{sigma_y}", mu, Sig, A, y, sigma_y, operators.SuperResolution((4, 4, 1), 2),
                   jnp.asarray(y.reshape(2, 2, 1)), (4, 4, 1))


MASK = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


@functools.lru_cache(maxsize=None)
def inpaint_problem(sigma_y):
    """Inpainting 3 of the 6 pixels of a 2 × 3 × 1 image; y is the masked (noisy) image."""
    rng = np.random.default_rng(2)
    d = 6
    mu, Sig = rng.normal(size=d) * 0.5, _spd(rng, d, 0.5, 0.2)
    keep = MASK.reshape(-1) > 0
    A = np.eye(d)[keep]
    x_star = mu + np.linalg.cholesky(Sig) @ rng.normal(size=d)
    y_img = np.where(keep, x_star + sigma_y * rng.normal(size=d), 0.0).astype(np.float32)
    return Problem(f"inp{sigma_y}", mu, Sig, A, y_img[keep], sigma_y,
                   operators.Inpainting(jnp.asarray(MASK[..., None])),
                   jnp.asarray(y_img.reshape(2, 3, 1)), (2, 3, 1),
                   A_img=np.diag(keep.astype(np.float64)), y_img=y_img.astype(np.float64))


def _gauss_kernel(size, sigma):
    t = np.arange(size) - (size - 1) / 2
    k = np.exp(-(t**2) / (2 * sigma**2))
    k = np.outer(k, k)
    return k / k.sum()


def _circular_blur(h, w, k):
    """Dense periodic convolution ``y[i, j] = Σ_ab k[a, b] x[(i − a + kh//2) % h, (j − b + kw//2) % w]``."""
    kh, kw = k.shape
    B = np.zeros((h * w, h * w))
    for i, j, a, b in itertools.product(range(h), range(w), range(kh), range(kw)):
        B[i * w + j, ((i - a + kh // 2) % h) * w + (j - b + kw // 2) % w] += k[a, b]
    return B


@functools.lru_cache(maxsize=None)
def blur_problem(sigma_y):
    """Periodic 3 × 3 Gaussian blur of 4 × 4 × 1 images (``CircularBlur``, no spectrum
    truncation: DiffPIR's FFT data step)."""
    rng = np.random.default_rng(3)
    d = 16
    mu, Sig = rng.normal(size=d) * 0.3, _spd(rng, d, 0.3, 0.1)
    k = _gauss_kernel(3, 0.8).astype(np.float32)
    A = _circular_blur(4, 4, k.astype(np.float64))
    x_star = mu + np.linalg.cholesky(Sig) @ rng.normal(size=d)
    y = (A @ x_star + sigma_y * rng.normal(size=d)).astype(np.float32)
    return Problem(f"blur{sigma_y}", mu, Sig, A, y, sigma_y,
                   operators.CircularBlur((4, 4, 1), jnp.asarray(k), threshold=0.0),
                   jnp.asarray(y.reshape(4, 4, 1)), (4, 4, 1))


@functools.lru_cache(maxsize=None)
def bicubic_up():
    """``jax.image.resize(·, cubic)`` from 2 × 2 to 4 × 4 as a dense 16 × 4 matrix (the upsampler
    ILVR's ``upsample="bicubic"`` names; JAX's, not jaxir's)."""
    e = jnp.eye(4).reshape(4, 2, 2, 1)
    cols = jax.vmap(lambda v: jax.image.resize(v, (4, 4, 1), "cubic"))(e)
    return np.asarray(cols, np.float64).reshape(4, 16).T


@pytest.mark.parametrize("make", [dense_problem, sr_problem, inpaint_problem, blur_problem])
def test_operators_are_the_oracles_matrices(make):
    """jaxir's operator applies exactly the dense A the oracle uses (so a failure below is the
    sampler's, not the problem's)."""
    p = make(0.0)
    e = jnp.eye(p.d).reshape(p.d, *p.x_shape)
    cols = np.asarray(jax.vmap(p.op.A)(e)).reshape(p.d, -1).T
    keep = slice(None) if p.A.shape[0] == cols.shape[0] else MASK.reshape(-1) > 0
    np.testing.assert_allclose(cols[keep], p.A, atol=1e-6)
    if cols.shape[0] != p.A.shape[0]:  # inpainting: y lives on the image grid, 0 off the mask
        np.testing.assert_array_equal(cols[~keep], 0.0)


# ============================================================================ method laws
def ddrm_law(p: Problem, n_steps, eta, eta_b, bug=None, init="paper"):
    """DDRM (Kawar et al. 2022, Eqs. 7–8, official ``efficient_generalized_steps``).

    In the VE view ``x̄ = Vᵀ x_t/√ᾱ_t`` with ``σ̄ = √((1 − ᾱ)/ᾱ)``, per spectral coordinate
    of the step to ``s``: missing (s_i = 0): ``x̄_0 + √(1−η²) σ̄_s ε̄ + η σ̄_s z``; less noisy
    than y (``s_i σ̄_s < σ_y``): ``x̄_0 + √(1−η²) σ̄_s (ȳ − x̄_0)/(σ_y/s_i) + η σ̄_s z``; noisier
    (``s_i σ̄_s > σ_y``): ``η_b ȳ + (1 − η_b) x̄_0 + √(σ̄_s² − η_b² σ_y²/s_i²) z``; ties go to the
    missing rule (strict inequalities, as the code). ``x_T`` from Eq. 7, scaled by ``√ᾱ_T``
    (the paper's VP view; the code's ``1/σ̄_T`` differs by ``1/√(1 − ᾱ_T) − 1 < 2e-4`` here,
    ``test_documented_conventions_are_below_resolution``). Leading grid. Mutant
    ``init_var`` (x_T's observed variance ``σ̄_T² + σ_y²/s²``) moves the output law by
    < 10⁻⁵ thresholds: x_T reaches the output only through ``√ᾱ_T``-small terms, so that token
    is outside what any law test can see.
    """
    V, Vt, s, obs, ybar, rho = spectral(p.A, p.y, p.sigma_y)
    d = p.d
    if bug == "eta_swap":
        eta, eta_b = eta_b, eta
    pairs = step_pairs(leading(n_steps), bug)
    rho_safe = np.where(rho > 0, rho, 1.0)
    a_T, sig_T = ac(pairs[0][0])
    sb_T = sig_T / a_T
    big = obs & (s * sb_T > p.sigma_y)
    z = fresh(0, d)
    init_var = sb_T**2 + rho**2 if bug == "init_var" else sb_T**2 - rho**2
    xbar = np.where(big, 1.0, 0.0) * (const(0, ybar) + np.sqrt(np.maximum(init_var, 0)) * z) \
        + np.where(big, 0.0, 1.0) * (sb_T * z)
    law = start((a_T if init == "paper" else 1.0 / sb_T) * (V @ xbar))
    for i, j in pairs:
        x = state(d, d)
        x0, eps = denoise(p.prior, i, x)
        a_s, sig_s = ac(j)
        sb = sig_s / a_s
        x0b, eb = Vt @ x0, Vt @ eps
        z = fresh(d, d)
        before = obs & (s * sb > p.sigma_y)
        after = obs & (s * sb < p.sigma_y)
        missing = ~(before | after)
        c = np.sqrt(1 - eta**2) * sb
        miss = x0b + (0.0 if bug == "drop_eps" else c) * eb + eta * sb * z
        ca = sb if bug == "after_coef" else c
        aft = x0b + ca * (const(d, ybar) - x0b) / rho_safe + eta * sb * z
        eb_var = eta if bug == "before_eta" else eta_b  # before_eta: η in place of η_b
        noise_b = sb if bug == "before_var" else np.sqrt(np.maximum(sb**2 - eb_var**2 * rho**2, 0.0))
        bef = eta_b * const(d, ybar) + (1 - eta_b) * x0b + noise_b * z
        out = missing * miss + after * aft + before * bef
        law = push(law, a_s * (V @ out))
    return law


def pigdm_law(p: Problem, n_steps, eta, noiseless, w=1.0, bug=None):
    """ΠGDM (Song et al. 2023): DDIM with η plus the pseudo-inverse guidance
    ``w √ᾱ_s √ᾱ_t (∂x̂_0/∂x_t)ᵀ v``. Noiseless (NVlabs RED-diff ``algos/pgdm.py``, ``awd``):
    ``v = A⁺(y − A x̂_0)``; noisy: the paper's likelihood score
    ``Aᵀ(r_t² AAᵀ + σ_y² I)⁻¹(y − A x̂_0)`` times ``r_t² = 1 − ᾱ_t`` (jaxir's stated
    normalisation, which makes it reduce to the noiseless form at σ_y = 0; no official code
    exists for it). Start ``x_T = √ᾱ_T A⁺y + √(1−ᾱ_T) z``. Leading grid."""
    d = p.d
    Ap = np.linalg.pinv(p.A)
    pairs = step_pairs(leading(n_steps), bug)
    a_T, s_T = ac(pairs[0][0])
    law = start(const(0, a_T * Ap @ p.y) + s_T * fresh(0, d))
    for i, j in pairs:
        x = state(d, d)
        x0, eps = denoise(p.prior, i, x)
        J, _ = _den(p.prior, i)
        a_t, _ = ac(i)
        a_s, _ = ac(j)
        c1, c2 = ddim_coeffs(i, j, eta)
        if bug == "eta_var":  # the ε̂ coefficient without the −c1² of DDIM's variance budget
            c2 = np.sqrt(1.0 - abar(j))
        resid = const(d, p.y) - p.A @ x0
        if noiseless:
            v = Ap @ resid
        else:
            r2 = 1.0 - abar(i)
            if bug == "r2_unsquared":  # r_t² = σ_t²/(α_t + σ_t²): α_t not squared
                r2 = r2 / (np.sqrt(abar(i)) + r2)
            S = r2 * p.A @ p.A.T + p.sigma_y**2 * np.eye(p.A.shape[0])
            v = (1.0 if bug == "no_r2" else r2) * (p.A.T @ np.linalg.solve(S, np.eye(len(S)))) @ resid
        coef = w * a_t * (1.0 if bug == "no_as" else a_s)
        law = push(law, a_s * x0 + c1 * fresh(d, d) + c2 * eps + coef * (J.T @ v))
    return law


def _moves(levels, bug=None):
    """Consecutive (from, to) DDPM indices of a walk. Mutants: ``"index"`` — every down move
    lands one DDPM index too high (``prev + 1``); ``"grid"`` — every down move targets the
    grid point after the right one (the previous step read one position off the respaced
    grid), while the next move still starts from the right one."""
    moves = list(zip(levels[:-1], levels[1:]))
    if bug == "index":
        moves = [(i, j + 1 if 0 <= j < i else j) for i, j in moves]
    if bug == "grid":
        lower = sorted({v for v in levels if v >= 0}, reverse=True) + [-1]
        after = dict(zip(lower[:-1], lower[1:]))
        moves = [(i, after[j] if 0 <= j < i else j) for i, j in moves]
    return moves


def jump_schedule(n, length, repeat):
    """The official DDNM / RePaint ``get_schedule_jump``: a walk over 0..n−1 ending at −1 that
    goes back up ``length`` levels ``repeat − 1`` times at every ``length``-th level."""
    jumps = {j: repeat - 1 for j in range(0, n - length, length)}
    t, walk = n, []
    while t >= 1:
        t -= 1
        walk.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(length):
                t += 1
                walk.append(t)
    walk.append(-1)
    return walk


def ddnm_law(p: Problem, n_steps, eta, plus, travel=(1, 1), bug=None):
    """DDNM / DDNM+ (Wang et al. 2023; official ``functions/svd_ddnm.py`` and the
    ``Lambda``/``Lambda_noise`` of ``svd_operators.py``), with time travel.

    Down step t → s (DDPM indices ``k·skip``): ``x̂_0h = x̂_0 − A⁺(A x̂_0 − y)`` and
    ``x_s = √ᾱ_s x̂_0h + σ_s (η z + √(1−η²) ε̂)`` (σ_s = √(1 − ᾱ_s), ε̂ the model's, i.e. of the
    uncorrected x̂_0). DDNM+ per singular value with ``a = √ᾱ_s``, ``ρ = σ_y/s_i``: correction
    scaled by ``λ = √(1−η²) σ_s/(aρ)`` where ``σ_s < aρ`` (else 1); noise ``σ_s η z`` there,
    ``√(σ_s² − a²ρ²) z`` where ``σ_s > aρ``, ``σ_s(η z + √(1−η²) ε̄)`` on unobserved
    coordinates (and on ties). Up step (time travel) to s: ``√ᾱ_s x̂_0 + σ_s z`` from the last
    *uncorrected* x̂_0. The state is ``[x, last x̂_0]``. Start ``x_T ~ N(0, I)``."""
    d = p.d
    skip = N_TRAIN // n_steps
    walk = jump_schedule(n_steps, *travel)
    idx = [k * skip if k >= 0 else -1 for k in walk]
    moves = _moves(idx, bug)
    Ap = np.linalg.pinv(p.A)
    V, Vt, s, obs, ybar, rho = spectral(p.A, p.y, p.sigma_y)
    law = start(fresh(0, d), const(0, np.zeros(d)))
    ce = np.sqrt(1.0 - eta**2)
    for i, j in moves:
        x, x0_last = state(2 * d, d, 0), state(2 * d, d, 1)
        a_s, sig_s = ac(j)
        if j > i:  # time travel
            src = x0_last
            law = push(law, a_s * src + sig_s * fresh(2 * d, d), x0_last)
            continue
        x0, eps = denoise(p.prior, i, x)
        if not plus:
            x0h = x0 if bug == "no_correction" else x0 - Ap @ (p.A @ x0 - p.y)
            if bug == "eps_corrected":
                eps = (x - ac(i)[0] * x0h) / ac(i)[1]
            new = a_s * x0h + sig_s * eta * fresh(2 * d, d) + sig_s * ce * eps
        else:
            x0b, eb, zb = Vt @ x0, Vt @ eps, fresh(2 * d, d)
            noisy = obs & (sig_s < a_s * rho)
            quiet = obs & (sig_s > a_s * rho)
            lam_noisy = (1.0 if bug == "lambda_no_eta" else ce) * sig_s / (a_s * np.where(noisy, rho, 1.0))
            lam = np.where(noisy, lam_noisy, 1.0) * obs
            if bug == "no_correction":
                lam = 0.0 * lam
            x0hb = x0b - lam * (x0b - const(2 * d, ybar))
            d1 = np.where(quiet, np.sqrt(np.maximum(sig_s**2 - (a_s * rho) ** 2, 0.0)), sig_s * eta)
            d2 = np.where(noisy | quiet, 0.0, sig_s * ce)
            new = V @ (a_s * x0hb + d1 * zb + d2 * eb)
        last = x0
        if bug == "travel_corrected":  # re-noise the corrected x̂_0 instead of the model's
            last = x0h if not plus else V @ x0hb
        law = push(law, new, last)
    return law.block(0, d)


def diffpir_law(p: Problem, n_steps, zeta, lam, eta=0.0, grad=None, bug=None):
    """DiffPIR (Zhu et al. 2023, Alg. 1; official ``main_ddpir_*.py``), "quad" schedule
    ``t_k = N − 1 − ⌊√(linspace(0, N², n))⌋`` (last index 0), start ``x_T ~ N(0, I)``:
    ``x̂_0 = argmin ‖y − Az‖² + ρ_t ‖z − x̂_0‖²`` with ``ρ_t = λ σ² ᾱ_t/(1 − ᾱ_t)``,
    ``σ = max(σ_y/2, 10⁻³)`` (σ of [0, 1] images); ``ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t)`` from
    the new x̂_0; ``x_s = √ᾱ_s x̂_0 + √(1−ζ)(√(1 − ᾱ_s − c²) ε̂ + c z) + √ζ √(1 − ᾱ_s) z'``; the
    last step (to ᾱ = 1) returns the data-step x̂_0 (Alg. 1; jaxir documents this choice).
    ``c = 0`` at the official η = 0. For η > 0 the paper has no η; jaxir uses DDIM's
    ``c = η τ_{t→s}`` (official code: ``η σ_s/σ_t √β_t`` with the single DDPM step's β, the
    same without respacing) — the η > 0 case pins jaxir's stated choice. ``grad = (K, L)``:
    K gradient steps of size ``1/(2(L + ρ))`` from x̂_0 on the same objective (jaxir's
    ``solver="grad"``)."""
    d = p.d
    seq = np.floor(np.sqrt(np.linspace(0.0, float(N_TRAIN) ** 2, n_steps))).astype(int)
    seq[-1] = N_TRAIN - 1
    pairs = step_pairs(N_TRAIN - 1 - seq, bug)
    sigma = max(p.sigma_y / 2.0, 1e-3)
    law = start(fresh(0, d))
    AtA, Aty = p.A.T @ p.A, p.A.T @ p.y
    for i, j in pairs:
        x = state(d, d)
        x0, eps0 = denoise(p.prior, i, x)
        a_t, sig_t = ac(i)
        a_s, sig_s = ac(j)
        rho = (1.0 if bug == "rho_no_lambda" else lam) * sigma**2 * a_t**2 / sig_t**2
        if grad is None:
            x0 = np.linalg.solve(AtA + rho * np.eye(d), np.eye(d)) @ (rho * x0 + Aty)
        else:
            K, L = grad
            lr = 1.0 / (2.0 * (L + rho))
            z0, zk = x0, x0
            for _ in range(K):
                zk = zk - lr * (2.0 * (AtA @ zk - Aty) + 2.0 * rho * (zk - z0))
            x0 = zk
        eps = eps0 if bug == "eps_before_prox" else (x - a_t * x0) / sig_t
        c = eta * np.sqrt(max((1.0 - abar(j)) / (1.0 - abar(i)) * (1.0 - abar(i) / abar(j)), 0.0))
        zs, zd = (np.sqrt(1.0 - zeta), np.sqrt(zeta)) if bug != "zeta_swap" else (np.sqrt(zeta), np.sqrt(1.0 - zeta))
        new = a_s * x0 + zs * (np.sqrt(max(sig_s**2 - c**2, 0.0)) * eps + c * fresh(d, d)) \
            + zd * sig_s * fresh(d, d)
        law = push(law, new)
    return law


def _replace(V, Vt, obs, ybar, x, a, sig, m):
    """The observed spectral coefficients of x replaced by ``a ȳ + σ e`` (forward marginal of
    the measurement at level (a, σ))."""
    zb = Vt @ x
    keep = np.where(obs, 0.0, 1.0)
    return V @ (keep * zb + obs * (a * const(m, ybar) + sig * fresh(m, len(obs))))


def projection_law(p: Problem, n_steps, eta, bug=None):
    """Replacement (Song et al. 2021, App. I.2; here with a DDIM-η base step): after each step
    t → s the observed spectral coefficients become ``√ᾱ_s ȳ + √(1−ᾱ_s) e`` — noised to the
    level the step arrives at (as the paper; the Score-SDE code uses the step's start, which
    is the ``level_t`` mutant). Start ``x_T ~ N(0, I)``. Leading grid."""
    d = p.d
    V, Vt, s, obs, ybar, _ = spectral(p.A, p.y, 0.0)
    law = start(fresh(0, d))
    for i, j in step_pairs(leading(n_steps), bug):
        x = state(d, d)
        x0, eps = denoise(p.prior, i, x)
        c1, c2 = ddim_coeffs(i, j, eta)
        if bug == "eta_var":  # the ε̂ coefficient without the −c1² of DDIM's variance budget
            c2 = np.sqrt(1.0 - abar(j))
        xs = ac(j)[0] * x0 + c2 * eps + c1 * fresh(d, d)
        a, sig = ac(i if bug == "level_t" else j)
        law = push(law, _replace(V, Vt, obs, ybar, xs, a, sig, d))
    return law


def ilvr_law(p: Problem, n_steps, stop=-1, up=None, bug=None):
    """ILVR (Choi et al. 2021, Alg. 1) with ``φ = A⁺A``: DDPM step (β̃) to x', then
    ``x_s = x' + A⁺(y_s − A x')`` with ``y_s = √ᾱ_s y + A(√(1−ᾱ_s) e)`` — the reference noised
    to the level the step arrives at (Alg. 1; the official code uses the start, mutant
    ``level_t``) — while the step's start index exceeds ``stop``. ``up``: another upsampling
    matrix U in ``φ = U A`` (bicubic), else ``A⁺``. Leading grid."""
    d = p.d
    Ap = np.linalg.pinv(p.A) if up is None else up
    law = start(fresh(0, d))
    for i, j in step_pairs(leading(n_steps), bug):
        x = state(d, d)
        x0, _ = denoise(p.prior, i, x)
        c0, ct, tau = ddpm_posterior(i, j, bug)
        xs = c0 * x0 + ct * x + tau * fresh(d, d)
        if i > stop or (bug == "stop_ge" and i == stop):
            a, sig = ac(i if bug == "level_t" else j)
            ys = a * p.y + (0.0 if bug == "no_ref_noise" else sig) * (p.A @ fresh(d, d))
            xs = xs + Ap @ (ys - p.A @ xs)
        law = push(law, xs)
    return law


def repaint_law(p: Problem, n_steps, length, repeat, blend_start=False, bug=None):
    """RePaint (Lugmayr et al. 2022, Alg. 1 with the jump schedule). Levels k on the
    ``linspace`` respacing of the 1000-step chain; start ``x_T ~ N(0, I)``; a down move k → k−1
    is the ancestral step (β̃ of the respaced chain) followed by the blend
    ``m ⊙ (√ᾱ_{k−1} y + √(1−ᾱ_{k−1}) ε) + (1−m) ⊙ x`` (y itself at the end); an up move is
    ``x_{k+1} = √(ᾱ_{k+1}/ᾱ_k) x_k + √(1 − ᾱ_{k+1}/ᾱ_k) ε``. ``blend_start=True`` also blends
    x_T (jaxir blends at the start of every reverse step, which equals Alg. 1 in law except at
    x_T: see ``test_repaint_blend_at_start_is_equivalent``)."""
    d = p.d
    V, Vt, s, obs, ybar, _ = spectral(p.A, p.y, 0.0)
    grid = np.round(np.linspace(0, N_TRAIN - 1, n_steps)).astype(int)
    walk = jump_schedule(n_steps, length, repeat)
    lev = [int(grid[k]) if k >= 0 else -1 for k in walk]
    law = start(fresh(0, d))
    if blend_start:
        a, sig = ac(lev[0])
        law = push(law, _replace(V, Vt, obs, ybar, state(d, d), a, sig, d))
    for i, j in _moves(lev, bug):
        x = state(d, d)
        if j > i:  # undo: forward transition i -> j
            r = abar(j) / abar(i)
            if bug == "undo_full":
                r = abar(j)
            law = push(law, np.sqrt(r) * x + np.sqrt(1.0 - r) * fresh(d, d))
            continue
        x0, _ = denoise(p.prior, i, x)
        c0, ct, tau = ddpm_posterior(i, j, bug)
        xs = c0 * x0 + ct * x + tau * fresh(d, d)
        a, sig = ac(i if bug == "level_t" else j)
        law = push(law, _replace(V, Vt, obs, ybar, xs, a, sig, d))
    return law


def mcg_law(p: Problem, n_steps, scale, bug=None):
    """MCG with the paper's squared norm (Chung et al. 2022, Eqs. 14–16): DDPM step (β̃),
    ``− α ∇_{x_t} ‖y − A x̂_0(x_t)‖² = + 2α Jᵀ Aᵀ(y − A x̂_0)``, then the observed spectral part
    replaced at the level the step arrives at. Leading grid, ``x_T ~ N(0, I)``."""
    d = p.d
    V, Vt, s, obs, ybar, _ = spectral(p.A, p.y, 0.0)
    law = start(fresh(0, d))
    for i, j in step_pairs(leading(n_steps), bug):
        x = state(d, d)
        x0, _ = denoise(p.prior, i, x)
        J, _ = _den(p.prior, i)
        c0, ct, tau = ddpm_posterior(i, j, bug)
        g = p.A.T @ (const(d, p.y) - p.A @ x0)
        if bug != "grad_x0":
            g = J.T @ g
        xs = c0 * x0 + ct * x + tau * fresh(d, d) + (0.0 if bug == "no_grad" else 2.0 * scale) * g
        a, sig = ac(i if bug == "level_t" else j)
        law = push(law, _replace(V, Vt, obs, ybar, xs, a, sig, d))
    return law


def gdp_law(p: Problem, n_steps, scale, guidance, same_shape, bug=None):
    """GDP (Fei et al. 2023; official ``gaussian_diffusion{,_x0}.py`` ``condition_mean``):
    ``x_s = μ(x_t, x̂_0) − s ∇_z mean_i (r_i(z)/2)² + τ z`` with no variance factor, ``z = x̂_0``
    (GDP-x0, gradient taken w.r.t. x̂_0 itself) or ``x_t`` (GDP-x_t); ``r = A z − y`` for a
    same-shape operator, ``A⁺(A z − y)`` when A changes the shape (the official
    ``H_pinv(H(x))`` against the upsampled image); the mean runs over the D entries and /2
    maps [-1, 1] to [0, 1]. DDPM β̃ on the leading grid, ``x_T ~ N(0, I)``."""
    d = p.d
    A, y = (p.A_img, p.y_img) if same_shape else (p.A, p.y)
    if not same_shape:
        Ap = np.linalg.pinv(A)
        R, c = Ap @ A, Ap @ y
    else:
        R, c = A, y
    law = start(fresh(0, d))
    for i, j in step_pairs(leading(n_steps), bug):
        x = state(d, d)
        x0, _ = denoise(p.prior, i, x)
        c0, ct, tau = ddpm_posterior(i, j, bug)
        zg = x0 if guidance == "x0" else x
        r = R @ zg - c
        div = 2.0 * (1.0 if bug == "sum_not_mean" else d) * (0.25 if bug == "no_half" else 1.0)
        g = (R.T @ r) / div
        k = scale * (tau**2 if bug == "variance_factor" else 1.0)
        law = push(law, c0 * x0 + ct * x - k * g + tau * fresh(d, d))
    return law


# ============================================================================ checking
def _split(law: oracle.Law):
    """Eigenbasis of the law's covariance split into free and degenerate directions."""
    w, v = np.linalg.eigh(law.cov)
    top = max(float(w.max()), 1e-300)
    free = w > 1e-9 * top
    if (~free).any():
        gap = w[free].min() / top
        assert gap > 1e-6, f"ill-separated degenerate subspace (λ_min/λ_max = {gap:.1e})"
    return v[:, free], v[:, ~free]


def assert_own_law(x, law: oracle.Law, label):
    """z-test of draws ``x`` (n, d) against ``law``, in the law's free eigen-subspace; the
    degenerate directions (if any) must hold their mean to float32 rounding."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    assert np.isfinite(x).all(), label
    Pf, Pd = _split(law)
    if Pd.shape[1]:
        scale = 1.0 + float(np.abs(law.mean).max())
        dev = np.abs((x - law.mean) @ Pd).max()
        assert dev < 1e-4 * scale, f"{label}: degenerate directions off by {dev:.2e}"
        law = oracle.Law.of(Pf.T @ law.mean, Pf.T @ law.cov @ Pf)
        x = x @ Pf
    oracle.assert_law(x, law, label, ALPHA)


def law_distance(law: oracle.Law, wrong: oracle.Law, n) -> float:
    """:func:`oracle.law_distance_in_se` in the free subspace of ``law``; infinite when the wrong
    law moves a degenerate direction (the float32 check above would catch it)."""
    Pf, Pd = _split(law)
    if Pd.shape[1]:
        scale = 1.0 + float(np.abs(law.mean).max())
        moved = np.abs(Pd.T @ (wrong.mean - law.mean)).max() + np.sqrt(
            max(float(np.abs(Pd.T @ wrong.cov @ Pd).max()), 0.0))
        if moved > 1e-3 * scale:
            return np.inf
        proj = lambda L: oracle.Law.of(Pf.T @ L.mean, Pf.T @ L.cov @ Pf)  # noqa: E731
        return oracle.law_distance_in_se(proj(law), proj(wrong), n)
    return oracle.law_distance_in_se(law, wrong, n)


def _threshold(law):
    Pf, _ = _split(law)
    k = Pf.shape[1]
    return oracle.z_threshold(k + k * (k + 1) // 2, ALPHA)


def check_case(run, law_fn, bugs, key, label):
    """Draw with jaxir, test against the exact law, and show every listed mutant is far."""
    law = law_fn(None)
    thr = _threshold(law)
    for bug in bugs:
        dist = law_distance(law, law_fn(bug), N)
        assert dist > FAR * thr, f"{label}: mutant {bug!r} only {dist:.1f} se away (thr {thr:.2f})"
    out = jax.jit(run)(jax.random.key(key))
    assert bool(out.finite), label
    assert_own_law(np.asarray(out.x).reshape(N, -1), law, label)


def guided_law(eps_fn, d, n_steps, eta=None, bug=None):
    """DDPM (β̃, Ho et al. 2020 Alg. 2; ``eta=None``) or DDIM-η on the leading grid, with
    ``x̂_0 = (x_t − √(1−ᾱ_t) ε')/√ᾱ_t`` from a guided ``ε' = eps_fn(i, x)``; ``x_T ~ N(0, I)``."""
    law = start(fresh(0, d))
    for i, j in step_pairs(leading(n_steps), bug):
        x = state(d, d)
        a_t, s_t = ac(i)
        eps = eps_fn(i, x)
        x0 = (x - s_t * eps) / a_t
        if eta is None:
            c0, ct, tau = ddpm_posterior(i, j)
            new = c0 * x0 + ct * x + tau * fresh(d, d)
        else:
            c1, c2 = ddim_coeffs(i, j, eta)
            new = ac(j)[0] * x0 + c2 * eps + c1 * fresh(d, d)
        law = push(law, new)
    return law


# A Gaussian "classifier" log p(c | x_t) = −‖W x − m_c‖²/(2v) and a second Gaussian prior for
# classifier-free guidance (conditional = the dense problem's prior, unconditional = this one).
_rng = np.random.default_rng(7)
CLS_W = _rng.normal(size=(2, 6)) * 0.5
CLS_M = np.array([[1.0, -0.5], [-1.0, 0.5]])
CLS_V = 0.8
NULL = _register("null", _rng.normal(size=6) * 0.5, _spd(_rng, 6, 0.4, 0.4))


def classifier_law(p, n_steps, scale, bug=None):
    """Classifier guidance (Dhariwal & Nichol 2021, Alg. 2 / Eq. 14):
    ``ε' = ε̂ − s σ_t ∇ log p(c | x_t)`` with the quadratic classifier above, class 0."""
    def eps_fn(i, x):
        _, eps = denoise(p.prior, i, x)
        sig = ac(i)[1]
        g = -(CLS_W.T @ (CLS_W @ x - CLS_M[0])) / CLS_V
        k = {"no_sigma": 1.0, "sigma2": sig**2}.get(bug, sig)
        return eps - scale * k * g
    return guided_law(eps_fn, p.d, n_steps, bug=bug if bug in ("grid", "index") else None)


def cfg_law(p, n_steps, w, eta, bug=None):
    """Classifier-free guidance (Ho & Salimans 2021, Eq. 6): ``ε' = (1 + w) ε(x, c) − w ε(x, ∅)``
    (mutant ``w_convention``: the ``ε(∅) + w(ε(c) − ε(∅))`` form with the same number)."""
    def eps_fn(i, x):
        _, ec = denoise(p.prior, i, x)
        _, e0 = denoise(NULL, i, x)
        if bug == "w_convention":
            return e0 + w * (ec - e0)
        return (1.0 + w) * ec - w * e0
    return guided_law(eps_fn, p.d, n_steps, eta, bug=bug if bug in ("grid", "index") else None)


# ============================================================================ the cases
def _ddrm(p, steps, eta, eta_b):
    mf = p.model_fn()
    return lambda k: ddrm_sample(k, mf, SDE, p.op, p.y_op, p.sigma_y, p.shape(), num_steps=steps,
                                 eta=eta, eta_b=eta_b)


def _pigdm(p, steps, eta):
    mf = p.model_fn()
    sy = 0 if p.sigma_y == 0 else p.sigma_y  # a Python 0 selects the noiseless form
    return lambda k: pigdm_sample(k, mf, SDE, p.op, p.y_op, sy, p.shape(), num_steps=steps, eta=eta)


def _ddnm(p, steps, eta, travel=(1, 1)):
    mf = p.model_fn()
    sy = 0 if p.sigma_y == 0 else p.sigma_y
    return lambda k: ddnm_sample(k, mf, SDE, p.op, p.y_op, sy, p.shape(), num_steps=steps, eta=eta,
                                 travel_length=travel[0], travel_repeat=travel[1])


def _diffpir(p, steps, zeta, lam, eta=0.0, grad=None):
    mf = p.model_fn()
    kw = {} if grad is None else dict(solver="grad", num_grad_steps=grad[0], lipschitz=grad[1])
    return lambda k: diffpir_sample(k, mf, SDE, p.op, p.y_op, p.sigma_y, p.shape(), num_steps=steps,
                                    zeta=zeta, lam=lam, eta=eta, clip_x0=False, **kw)


def _plain(fn, p, **kw):
    mf = p.model_fn()
    return lambda k: fn(k, mf, SDE, p.op, p.y_op, 0.0, p.shape(), clip_x0=False, **kw)


def _classifier(p, steps, scale):
    guided = classifier_guidance(p.model_fn(), SDE, lambda x, t, c: -0.5 * jnp.sum(
        (jnp.asarray(CLS_W, jnp.float32) @ x - jnp.asarray(CLS_M, jnp.float32)[c]) ** 2) / CLS_V,
        scale=scale)
    return lambda k: samplers.ddpm_sample(k, guided, SDE, p.shape(), num_steps=steps, clip_x0=False,
                                          cond=jnp.zeros((N,), jnp.int32))


def _cfg(p, steps, w, eta):
    mu0, S0 = _PRIORS[NULL]
    cond_fn = p.model_fn()
    null_fn = exact.Gaussian(jnp.asarray(mu0, jnp.float32), jnp.asarray(S0, jnp.float32)).model_fn(SDE)

    def model(x, t, c):
        return jnp.where((c == 0)[:, None], cond_fn(x, t), null_fn(x, t))

    guided = classifier_free_guidance(model, w, null_label=-1)
    kw = dict(num_steps=steps, clip_x0=False, cond=jnp.zeros((N,), jnp.int32))
    if eta is None:
        return lambda k: samplers.ddpm_sample(k, guided, SDE, p.shape(), **kw)
    return lambda k: samplers.ddim_sample(k, guided, SDE, p.shape(), eta=eta, **kw)


def _lipschitz(p):
    return 1.1 * float(np.linalg.norm(p.A, 2) ** 2)


D05, D02, D0 = (functools.partial(dense_problem, s) for s in (0.5, 0.2, 0.0))
SR1, SR0 = (functools.partial(sr_problem, s) for s in (0.1, 0.0))
INP0 = functools.partial(inpaint_problem, 0.0)
DDRM_BUGS = ["eta_swap", "drop_eps", "grid"]

# name: (problem, jaxir runner, oracle law(bug), mutants that must be FAR away)
CASES = {
    # ---- DDRM: two step counts, two (η, η_b), σ_y > 0 and = 0, the SR operator's SVD
    "ddrm-dense-s10-eta.85": (D02, lambda p: _ddrm(p, 10, 0.85, 1.0),
                              lambda p, b: ddrm_law(p, 10, 0.85, 1.0, b), DDRM_BUGS),
    "ddrm-dense-s25-eta.85": (D02, lambda p: _ddrm(p, 25, 0.85, 1.0),
                              lambda p, b: ddrm_law(p, 25, 0.85, 1.0, b), DDRM_BUGS),
    "ddrm-dense-s10-eta.5-etab.7": (D02, lambda p: _ddrm(p, 10, 0.5, 0.7),
                                    lambda p, b: ddrm_law(p, 10, 0.5, 0.7, b), DDRM_BUGS),
    "ddrm-dense-sy.5-s5": (D05, lambda p: _ddrm(p, 5, 0.85, 1.0),
                           lambda p, b: ddrm_law(p, 5, 0.85, 1.0, b), DDRM_BUGS + ["before_var", "after_coef"]),
    "ddrm-dense-noiseless-s25": (D0, lambda p: _ddrm(p, 25, 0.85, 1.0),
                                 lambda p, b: ddrm_law(p, 25, 0.85, 1.0, b), ["eta_swap", "drop_eps", "grid"]),
    "ddrm-sr-s10": (SR1, lambda p: _ddrm(p, 10, 0.85, 1.0),
                    lambda p, b: ddrm_law(p, 10, 0.85, 1.0, b), DDRM_BUGS),
    # ---- ΠGDM: noiseless (pseudo-inverse) and noisy form, η ∈ {0, 0.5}
    "pigdm-dense-noiseless-s10-eta0": (D0, lambda p: _pigdm(p, 10, 0.0),
                                       lambda p, b: pigdm_law(p, 10, 0.0, True, bug=b), ["no_as", "grid"]),
    "pigdm-dense-noiseless-s25-eta.5": (D0, lambda p: _pigdm(p, 25, 0.5),
                                        lambda p, b: pigdm_law(p, 25, 0.5, True, bug=b),
                                        ["no_as", "eta_var", "grid"]),
    "pigdm-dense-noisy-s10-eta0": (D02, lambda p: _pigdm(p, 10, 0.0),
                                   lambda p, b: pigdm_law(p, 10, 0.0, False, bug=b), ["no_as", "no_r2", "grid"]),
    "pigdm-dense-noisy-s25-eta.5": (D02, lambda p: _pigdm(p, 25, 0.5),
                                    lambda p, b: pigdm_law(p, 25, 0.5, False, bug=b),
                                    ["no_r2", "eta_var", "grid"]),
    "pigdm-sr-noisy-s10": (SR1, lambda p: _pigdm(p, 10, 0.0),
                           lambda p, b: pigdm_law(p, 10, 0.0, False, bug=b), ["no_r2", "grid"]),
    "pigdm-inpaint-noiseless-s10": (INP0, lambda p: _pigdm(p, 10, 0.0),
                                    lambda p, b: pigdm_law(p, 10, 0.0, True, bug=b), ["no_as", "grid"]),
    # ---- DDNM (noiseless), DDNM+ (σ_y > 0), time travel
    "ddnm-dense-s10-eta.85": (D0, lambda p: _ddnm(p, 10, 0.85),
                              lambda p, b: ddnm_law(p, 10, 0.85, False, bug=b),
                              ["no_correction", "eps_corrected", "grid"]),
    "ddnm-dense-s25-eta.4": (D0, lambda p: _ddnm(p, 25, 0.4),
                             lambda p, b: ddnm_law(p, 25, 0.4, False, bug=b),
                             ["no_correction", "eps_corrected", "grid"]),
    "ddnm+-dense-s10-eta.85": (D05, lambda p: _ddnm(p, 10, 0.85),
                               lambda p, b: ddnm_law(p, 10, 0.85, True, bug=b),
                               ["no_correction", "lambda_no_eta", "grid"]),
    "ddnm+-dense-s25-eta.4": (D05, lambda p: _ddnm(p, 25, 0.4),
                              lambda p, b: ddnm_law(p, 25, 0.4, True, bug=b), ["no_correction", "grid"]),
    "ddnm-travel-dense-s10-l1-r3": (D0, lambda p: _ddnm(p, 10, 0.85, (1, 3)),
                                    lambda p, b: ddnm_law(p, 10, 0.85, False, (1, 3), bug=b),
                                    ["no_correction", "travel_corrected", "grid"]),
    "ddnm+-travel-sr-s10-l2-r3": (SR1, lambda p: _ddnm(p, 10, 0.85, (2, 3)),
                                  lambda p, b: ddnm_law(p, 10, 0.85, True, (2, 3), bug=b),
                                  ["no_correction", "grid"]),
    "ddnm-inpaint-s10": (INP0, lambda p: _ddnm(p, 10, 0.85),
                         lambda p, b: ddnm_law(p, 10, 0.85, False, bug=b), ["no_correction", "grid"]),
    # ---- DiffPIR: two step counts and (ζ, λ), the gradient data step, η > 0
    "diffpir-dense-s10-zeta.1": (D05, lambda p: _diffpir(p, 10, 0.1, 7.0),
                                 lambda p, b: diffpir_law(p, 10, 0.1, 7.0, bug=b),
                                 ["rho_no_lambda", "eps_before_prox", "zeta_swap", "grid"]),
    "diffpir-dense-s25-zeta.5": (D05, lambda p: _diffpir(p, 25, 0.5, 2.0),
                                 lambda p, b: diffpir_law(p, 25, 0.5, 2.0, bug=b),
                                 ["rho_no_lambda", "eps_before_prox", "grid"]),
    "diffpir-dense-s10-grad2": (D05, lambda p: _diffpir(p, 10, 0.1, 7.0, grad=(2, _lipschitz(p))),
                                lambda p, b: diffpir_law(p, 10, 0.1, 7.0, grad=(2, _lipschitz(p)), bug=b),
                                ["rho_no_lambda", "eps_before_prox"]),
    "diffpir-dense-s10-eta.5": (D05, lambda p: _diffpir(p, 10, 0.1, 7.0, eta=0.5),
                                lambda p, b: diffpir_law(p, 10, 0.1, 7.0, eta=0.5, bug=b),
                                ["zeta_swap", "grid"]),
    "diffpir-blur-s10-fft": (functools.partial(blur_problem, 0.2), lambda p: _diffpir(p, 10, 0.1, 7.0),
                             lambda p, b: diffpir_law(p, 10, 0.1, 7.0, bug=b),
                             ["rho_no_lambda", "eps_before_prox", "grid"]),
    # ---- replacement ("projection"), ILVR, RePaint, MCG
    "projection-inpaint-s10-eta1": (INP0, lambda p: _plain(projection_sample, p, num_steps=10, eta=1.0),
                                    lambda p, b: projection_law(p, 10, 1.0, b), ["level_t", "eta_var", "grid"]),
    "projection-inpaint-s25-eta.5": (INP0, lambda p: _plain(projection_sample, p, num_steps=25, eta=0.5),
                                     lambda p, b: projection_law(p, 25, 0.5, b), ["level_t", "eta_var", "grid"]),
    "projection-dense-s10": (D0, lambda p: _plain(projection_sample, p, num_steps=10),
                             lambda p, b: projection_law(p, 10, 1.0, b), ["level_t", "grid"]),
    "ilvr-sr-s10": (SR0, lambda p: _plain(ilvr_sample, p, num_steps=10),
                    lambda p, b: ilvr_law(p, 10, bug=b), ["level_t", "fixed_large", "grid"]),
    "ilvr-sr-s25": (SR0, lambda p: _plain(ilvr_sample, p, num_steps=25),
                    lambda p, b: ilvr_law(p, 25, bug=b), ["level_t", "fixed_large", "grid"]),
    "ilvr-sr-s10-stop200": (SR0, lambda p: _plain(ilvr_sample, p, num_steps=10,
                                                  t_stop=float(SDE.index_to_time(200))),
                            lambda p, b: ilvr_law(p, 10, stop=200, bug=b), ["stop_ge", "level_t", "grid"]),
    "ilvr-sr-s10-bicubic": (SR0, lambda p: _plain(ilvr_sample, p, num_steps=10, upsample="bicubic"),
                            lambda p, b: ilvr_law(p, 10, up=bicubic_up(), bug=b), ["level_t", "fixed_large", "grid"]),
    "repaint-inpaint-s10-j2-r3": (INP0, lambda p: _plain(repaint_sample, p, num_steps=10, jump_length=2,
                                                         jump_n_sample=3),
                                  lambda p, b: repaint_law(p, 10, 2, 3, bug=b),
                                  ["undo_full", "fixed_large", "level_t", "grid"]),
    "repaint-inpaint-s20-j5-r2": (INP0, lambda p: _plain(repaint_sample, p, num_steps=20, jump_length=5,
                                                         jump_n_sample=2),
                                  lambda p, b: repaint_law(p, 20, 5, 2, bug=b),
                                  ["undo_full", "fixed_large", "level_t", "grid"]),
    "mcg-inpaint-s10-a.3": (INP0, lambda p: _plain(mcg_sample, p, num_steps=10, scale=0.3, norm="squared"),
                            lambda p, b: mcg_law(p, 10, 0.3, b), ["grad_x0", "fixed_large", "level_t"]),
    "mcg-dense-s25-a.2": (D0, lambda p: _plain(mcg_sample, p, num_steps=25, scale=0.2, norm="squared"),
                          lambda p, b: mcg_law(p, 25, 0.2, b), ["grad_x0", "level_t", "grid"]),
    # ---- GDP with a fixed linear operator (x̂_0 and x_t guidance)
    "gdp-x0-dense-s10-s2": (D0, lambda p: _plain(gdp_sample, p, num_steps=10, scale=2.0, guidance="x0"),
                            lambda p, b: gdp_law(p, 10, 2.0, "x0", False, b),
                            ["variance_factor", "sum_not_mean", "no_half", "fixed_large", "grid"]),
    "gdp-x0-dense-s25-s1": (D0, lambda p: _plain(gdp_sample, p, num_steps=25, scale=1.0, guidance="x0"),
                            lambda p, b: gdp_law(p, 25, 1.0, "x0", False, b),
                            ["variance_factor", "sum_not_mean", "no_half"]),
    "gdp-xt-dense-s10-s2": (D0, lambda p: _plain(gdp_sample, p, num_steps=10, scale=2.0, guidance="xt"),
                            lambda p, b: gdp_law(p, 10, 2.0, "xt", False, b),
                            ["variance_factor", "sum_not_mean", "no_half"]),
    "gdp-x0-inpaint-s10-s2": (INP0, lambda p: _plain(gdp_sample, p, num_steps=10, scale=2.0, guidance="x0"),
                              lambda p, b: gdp_law(p, 10, 2.0, "x0", True, b),
                              ["variance_factor", "sum_not_mean", "no_half"]),
    # ---- classifier guidance (Gaussian classifier) and classifier-free guidance
    "classifier-ddpm-s10-scale1": (D0, lambda p: _classifier(p, 10, 1.0),
                                   lambda p, b: classifier_law(p, 10, 1.0, b), ["no_sigma", "sigma2", "grid"]),
    "classifier-ddpm-s25-scale3": (D0, lambda p: _classifier(p, 25, 3.0),
                                   lambda p, b: classifier_law(p, 25, 3.0, b), ["no_sigma", "sigma2", "grid"]),
    "cfg-ddpm-s10-w2": (D0, lambda p: _cfg(p, 10, 2.0, None),
                        lambda p, b: cfg_law(p, 10, 2.0, None, b), ["w_convention", "grid"]),
    "cfg-ddim-s25-w.5-eta.5": (D0, lambda p: _cfg(p, 25, 0.5, 0.5),
                               lambda p, b: cfg_law(p, 25, 0.5, 0.5, b), ["w_convention", "grid"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_own_law(name):
    make_problem, runner, law_fn, bugs = CASES[name]
    p = make_problem()
    key = sum(map(ord, name))  # fixed per case
    check_case(runner(p), lambda b: law_fn(p, b), bugs, key, name)


def test_noisy_cases_visit_every_regime():
    """The σ_y > 0 DDRM / DDNM+ cases go through both sides of ``s σ̄ = σ_y`` (DDRM Eq. 8) and
    ``σ_s = √ᾱ_s σ_y/s`` (DDNM+), so a bug in either rule shows (a property of the problems)."""
    for make, n in ((D02, 10), (D02, 25), (D05, 5), (SR1, 10), (D05, 10), (D05, 25)):
        p = make()
        _, _, s, obs, _, rho = spectral(p.A, p.y, p.sigma_y)
        seen_ddrm, seen_ddnm = set(), set()
        for _, j in step_pairs(leading(n)):
            a_s, sig_s = ac(j)
            for k in np.flatnonzero(obs):
                seen_ddrm.add(np.sign(s[k] * sig_s / a_s - p.sigma_y))
                seen_ddnm.add(np.sign(sig_s - a_s * rho[k]))
                # no coordinate sits so close to a boundary that float32 could flip its rule
                assert abs(s[k] * sig_s / a_s - p.sigma_y) > 1e-4 or j < 0
        assert {-1.0, 1.0} <= seen_ddrm and {-1.0, 1.0} <= seen_ddnm, (n, seen_ddrm, seen_ddnm)


def test_documented_conventions_are_below_resolution():
    """Two places where the oracle follows the paper and jaxir / the official code differ in a
    way no test at this n can see: DDRM's ``x_T`` scaled by ``√ᾱ_T`` (paper) vs ``1/σ̄_T``
    (official code), and RePaint blending the known part into ``x_T`` (jaxir) vs not (Alg. 1).
    Both laws are within 1 % of a threshold of each other."""
    p = D02()
    a, b = ddrm_law(p, 10, 0.85, 1.0), ddrm_law(p, 10, 0.85, 1.0, init="official")
    assert law_distance(a, b, N) < 0.01 * _threshold(a)
    q = INP0()
    a, b = repaint_law(q, 10, 2, 3), repaint_law(q, 10, 2, 3, blend_start=True)
    assert law_distance(a, b, N) < 0.01 * _threshold(a)


# ============================================================================ spectral basis
# Two update terms act on directions whose share of the output covariance is too small for the
# entry-wise z-test in x coordinates (its standard errors scale with the large diagonal entries):
# DDRM's "noisier than y" variance σ̄_s² − η_b² ρ² when it sets the output's variance along an
# observed singular direction (ρ ≈ 0.007 there), and ΠGDM's r_t², which only matters where
# σ_y² is comparable to r_t² s_i². Read in the operator's own basis (z = Vᵀx, V from the
# oracle's SVD of its dense A), every mean and covariance entry of z has its own standard error,
# and the same Bonferroni test resolves both. (issue 18 item 4: mutants ddrm-4, pigdm-1.)
def _rotated(law: oracle.Law, Vt) -> oracle.Law:
    return oracle.Law.of(Vt @ law.mean, Vt @ law.cov @ Vt.T)


D012 = functools.partial(dense_problem, 0.012)

SPECTRAL_CASES = {
    # DDRM's defaults (η = 0.85, η_b = 1) at 5 steps: the last step arrives at DDPM index 0
    # (σ̄ = 0.0100), where the top singular direction (s = 1.61, s σ̄ = 0.0161 > σ_y = 0.012)
    # still follows the noisier rule; its output variance is σ̄² − η_b² ρ² = 4.5e-5
    # (5.9e-5 with η in place of η_b).
    "ddrm-dense-sy.012-s5": (D012, lambda p: _ddrm(p, 5, 0.85, 1.0),
                             lambda p, b: ddrm_law(p, 5, 0.85, 1.0, b), ["before_eta", "before_var"]),
    # ΠGDM's noisy form with σ_y = 0.5 next to singular values 0.48–1.61 (σ_y² ≈ r_t² s_i²).
    "pigdm-dense-noisy-sy.5-s25-eta0": (D05, lambda p: _pigdm(p, 25, 0.0),
                                        lambda p, b: pigdm_law(p, 25, 0.0, False, bug=b),
                                        ["r2_unsquared", "no_r2"]),
}


@pytest.mark.parametrize("name", list(SPECTRAL_CASES))
def test_own_law_in_the_spectral_basis(name):
    """jaxir's draws rotated by Vᵀ against the rotated exact law; each listed wrong update's
    rotated law must be FAR thresholds away (the rotation is exact: the law of Vᵀx is
    N(Vᵀμ, VᵀΣV))."""
    make_problem, runner, law_fn, bugs = SPECTRAL_CASES[name]
    p = make_problem()
    _, Vt, s, obs, _, _ = spectral(p.A, p.y, p.sigma_y)
    if name.startswith("ddrm"):  # the regime the case is built on, with a float32-safe margin
        sb0 = ac(0)[1] / ac(0)[0]
        assert s[0] * sb0 > 1.2 * p.sigma_y and np.all(s[1:][obs[1:]] * sb0 < 0.8 * p.sigma_y)
    law = _rotated(law_fn(p, None), Vt)
    thr = _threshold(law)
    for bug in bugs:
        dist = law_distance(law, _rotated(law_fn(p, bug), Vt), N)
        assert dist > FAR * thr, f"{name}: mutant {bug!r} only {dist:.1f} se away (thr {thr:.2f})"
    out = jax.jit(runner(p))(jax.random.key(sum(map(ord, name))))
    assert bool(out.finite), name
    assert_own_law(np.asarray(out.x, np.float64).reshape(N, -1) @ Vt.T, law, name)


def test_diffpir_quad_grid_is_the_official_one():
    """DiffPIR's default "quad" schedule, transcribed from the official ``main_ddpir_*.py``:
    ``seq = [int(√v) for v in linspace(0, N², n)]``, ``seq[-1] −= 1``; step i runs at the DDPM
    index whose ``√((1 − ᾱ)/ᾱ)`` is nearest ``sigmas[seq[i]]``, with ``sigmas[k] =
    √((1 − ᾱ)/ᾱ)[N − 1 − k]`` (so index ``N − 1 − seq[i]``; found here by the same nearest
    search), and moves to the next one; the last step ends at the data. A grid one DDPM index
    off moves the law of a 10-step run by far less than a z-test can see (see the module
    docstring), so the grid itself is compared, exactly. (issue 18 item 4: mutant pir-5.)"""
    from jaxir.inverse._diffpir import _diffpir_grid

    reduced = np.sqrt((1.0 - ABAR) / ABAR)
    sigmas = reduced[::-1]
    for n in (10, 25, 100):
        seq = [int(v) for v in np.sqrt(np.linspace(0, N_TRAIN**2, n))]
        seq[-1] = seq[-1] - 1
        official = [int(np.argmin(np.abs(reduced - sigmas[k]))) for k in seq]
        ts, nxt = _diffpir_grid(SDE, n, "quad")
        idx = np.asarray(SDE.time_to_index(jnp.asarray(ts)))
        np.testing.assert_array_equal(idx, official, err_msg=f"n={n}")
        np.testing.assert_allclose(ts, (np.asarray(official) + 1) * SDE.T / N_TRAIN, rtol=1e-6)
        np.testing.assert_allclose(nxt[:-1], ts[1:], rtol=0)
        assert float(nxt[-1]) == 0.0
