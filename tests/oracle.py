"""An independent float64 oracle: the exact output law of a sampler that is linear in its state.

With a Gaussian prior ``N(μ, Σ)`` the exact denoiser ``E[x_0 | x_t]`` is affine in ``x_t``, so a
sampler whose update is linear in the state and in fresh Gaussian noise maps a Gaussian start to
a Gaussian output. Its law — mean and covariance, at *its own* step count and η, not the law of
the data — follows by pushing moments through the paper's update equations.

Everything here is plain float64 NumPy written from the papers (and, where they differ, from the
official code's conventions), and imports nothing from :mod:`jaxir`: a test compares jaxir's
draws with a law computed without jaxir. Test modules build per-method propagations on top of
these pieces (``tests/test_oracle_*.py``).

The state is a stack of ``k`` vectors of dimension ``d`` (e.g. ``[x_t, x̂_0 of the previous step]``
for a two-step solver) flattened to ``k·d``; its law is :class:`Law`. One step is
``s' = P s + q + R z`` with ``z ~ N(0, I)`` fresh: :meth:`Law.push`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Law:
    """A Gaussian law ``N(mean, cov)`` in float64."""

    mean: np.ndarray
    cov: np.ndarray

    @staticmethod
    def of(mean, cov) -> "Law":
        mean = np.asarray(mean, np.float64)
        cov = np.asarray(cov, np.float64)
        return Law(mean, 0.5 * (cov + cov.T))

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def push(self, P, q=0.0, R=None) -> "Law":
        """Law of ``P s + q + R z`` for ``s ~ self`` and ``z ~ N(0, I)`` independent of ``s``."""
        P = np.asarray(P, np.float64)
        mean = P @ self.mean + q
        cov = P @ self.cov @ P.T
        if R is not None:
            R = np.asarray(R, np.float64)
            cov = cov + R @ R.T
        return Law.of(mean, cov)

    def block(self, i: int, d: int) -> "Law":
        """The marginal law of the ``i``-th ``d``-vector of a stacked state."""
        sl = slice(i * d, (i + 1) * d)
        return Law.of(self.mean[sl], self.cov[sl, sl])

    def stack(self, other: "Law") -> "Law":
        """The law of ``[s, s']`` for independent ``s ~ self``, ``s' ~ other``."""
        mean = np.concatenate([self.mean, other.mean])
        cov = np.zeros((self.dim + other.dim,) * 2)
        cov[: self.dim, : self.dim] = self.cov
        cov[self.dim :, self.dim :] = other.cov
        return Law.of(mean, cov)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        w, v = np.linalg.eigh(self.cov)
        return self.mean + (rng.standard_normal((n, self.dim)) * np.sqrt(np.maximum(w, 0))) @ v.T


# ---- the exact Gaussian denoiser under x_t = a x_0 + σ ε ----------------------------------


def gaussian_denoiser(mu, Sigma, a, sigma):
    """``(J, b)`` with ``E[x_0 | x_t] = J x_t + b`` for ``x_0 ~ N(μ, Σ)``, ``x_t = a x_0 + σ ε``.

    ``J = a Σ (a² Σ + σ² I)⁻¹`` and ``b = μ − a J μ`` (the Gaussian conditional mean).
    """
    mu = np.asarray(mu, np.float64)
    Sigma = np.asarray(Sigma, np.float64)
    d = mu.shape[0]
    S = a * a * Sigma + sigma * sigma * np.eye(d)
    J = a * np.linalg.solve(S, Sigma).T  # a Σ S⁻¹ (S, Σ symmetric)
    b = mu - a * J @ mu
    return J, b


def gaussian_posterior(mu, Sigma, A, sigma_y, y):
    """Mean and covariance of ``x | y`` for ``x ~ N(μ, Σ)``, ``y = A x + σ_y ε`` (float64)."""
    mu, Sigma, A, y = (np.asarray(v, np.float64) for v in (mu, Sigma, A, y))
    S = A @ Sigma @ A.T + sigma_y**2 * np.eye(A.shape[0])
    K = np.linalg.solve(S, A @ Sigma).T
    return Law.of(mu + K @ (y - A @ mu), Sigma - K @ A @ Sigma)


# ---- the DDPM chain (Ho et al. 2020) -------------------------------------------------------


def linear_betas(n: int = 1000, lo: float = 1e-4, hi: float = 0.02) -> np.ndarray:
    """DDPM's linear β schedule, float64."""
    return np.linspace(lo, hi, n, dtype=np.float64)


def alphas_cumprod(betas) -> np.ndarray:
    """``ᾱ_i = Π_{j ≤ i} (1 − β_j)``, float64."""
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


def leading_timesteps(num_train: int, num_steps: int) -> np.ndarray:
    """The "leading"/uniform-skip grid of DDIM's official code, descending:
    ``range(0, N, N // n)`` reversed (improved-diffusion's ``space_timesteps`` for ``"ddimK"``)."""
    skip = num_train // num_steps
    return np.arange(0, num_train, skip)[:num_steps][::-1].copy()


# ---- statistics ----------------------------------------------------------------------------


def z_threshold(n_stats: int, alpha: float = 1e-5) -> float:
    """Bonferroni bound: ``|z| ≤ thr`` for all of ``n_stats`` standard normals fails with
    probability ≤ ``alpha`` (two-sided) under a correct sampler."""
    return float(stats.norm.isf(alpha / (2 * n_stats)))


def moment_z(samples, law: Law) -> tuple[np.ndarray, np.ndarray]:
    """z-scores of the sample mean and sample covariance of Gaussian ``samples`` ``(n, d)``
    against ``law``: ``se(m_i) = √(Σ_ii/n)``, ``se(C_ij) = √((Σ_ii Σ_jj + Σ_ij²)/n)``."""
    x = np.asarray(samples, np.float64).reshape(len(samples), -1)
    n = x.shape[0]
    dg = np.diag(law.cov)
    zm = (x.mean(0) - law.mean) / np.sqrt(dg / n)
    iu = np.triu_indices(law.dim)
    c = np.cov(x.T).reshape(law.cov.shape)
    zc = (c - law.cov) / np.sqrt((np.outer(dg, dg) + law.cov**2) / n)
    return zm, zc[iu]


def assert_law(samples, law: Law, label: str = "", alpha: float = 1e-5):
    """Assert that ``samples`` are draws of ``law``: every mean and covariance z-score is below
    the Bonferroni threshold for ``alpha`` (a correct sampler fails with probability ≤ alpha)."""
    zm, zc = moment_z(samples, law)
    thr = z_threshold(zm.size + zc.size, alpha)
    worst_m, worst_c = float(np.abs(zm).max()), float(np.abs(zc).max())
    assert worst_m < thr and worst_c < thr, (
        f"{label}: max |z| mean {worst_m:.2f}, cov {worst_c:.2f} (threshold {thr:.2f}, "
        f"n = {len(samples)})"
    )


def law_distance_in_se(law_a: Law, law_b: Law, n: int) -> float:
    """How many standard errors (at ``n`` samples) separate two laws: the largest z of
    ``law_b``'s moments measured against ``law_a``. A test that must *discriminate* a method's
    law from a nearby wrong one asserts this is well above :func:`z_threshold`."""
    dg = np.diag(law_a.cov)
    zm = np.abs(law_b.mean - law_a.mean) / np.sqrt(dg / n)
    zc = np.abs(law_b.cov - law_a.cov) / np.sqrt((np.outer(dg, dg) + law_a.cov**2) / n)
    return float(max(zm.max(), zc.max()))


# ---- added for the sampler and bridge oracles (tests/test_oracle_*.py) ---------------------


def trailing_timesteps(num_train: int, num_steps: int) -> np.ndarray:
    """diffusers' ``timestep_spacing="trailing"``, descending: ``round(arange(N, 0, −N/n)) − 1``."""
    return (np.round(np.arange(num_train, 0, -num_train / num_steps)).astype(np.int64) - 1)[:num_steps]


def linspace_timesteps(num_train: int, num_steps: int) -> np.ndarray:
    """diffusers' ``timestep_spacing="linspace"``, descending: ``round(linspace(0, N − 1, n))``."""
    return np.round(np.linspace(0, num_train - 1, num_steps)).astype(np.int64)[::-1].copy()


def previous_on_grid(timesteps) -> np.ndarray:
    """The index each step moves to, read off the (descending) grid itself; −1 (data) last."""
    ts = np.asarray(timesteps)
    return np.concatenate([ts[1:], [-1]])


def space_indices(num_steps: int, count: int) -> list:
    """I2SB's ``util.space_indices``: ``count`` indices in ``[0, num_steps − 1]`` by a cumulative
    float stride and Python's ``round`` (ascending)."""
    stride = 1 if count <= 1 else (num_steps - 1) / (count - 1)
    out, cur = [], 0.0
    for _ in range(count):
        out.append(round(cur))
        cur += stride
    return out


def karras_grid(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """EDM's ρ-grid (Karras et al. 2022, Eq. 5) of ``n`` levels from σ_max to σ_min, then 0."""
    ramp = np.linspace(0.0, 1.0, n)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return np.concatenate([(hi + ramp * (lo - hi)) ** rho, [0.0]])


def vp_alpha_sigma(t, beta_min: float = 0.1, beta_max: float = 20.0):
    """Score-SDE's VP marginal (Song et al. 2021, Eq. 29): ``α = e^{−B/2}``, ``σ = √(1 − e^{−B})``
    with ``B(t) = β_min t + ½ t² (β_max − β_min)``; float64."""
    t = np.asarray(t, np.float64)
    B = beta_min * t + 0.5 * t * t * (beta_max - beta_min)
    return np.exp(-0.5 * B), np.sqrt(-np.expm1(-B))


def vp_beta(t, beta_min: float = 0.1, beta_max: float = 20.0):
    """``β(t) = β_min + t (β_max − β_min)``: the VP drift is ``−½ β x``, ``g² = β``."""
    return beta_min + np.asarray(t, np.float64) * (beta_max - beta_min)


def vp_time_of_log_snr(lam, beta_min: float = 0.1, beta_max: float = 20.0):
    """Inverse of ``λ(t) = log(α/σ)`` for the VP SDE: ``B = log(1 + e^{−2λ})``, then the root of
    ``½ (β_max − β_min) t² + β_min t − B = 0`` (DPM-Solver's ``inverse_lambda`` in closed form)."""
    B = np.log1p(np.exp(-2.0 * np.asarray(lam, np.float64)))
    a = 0.5 * (beta_max - beta_min)
    return (-beta_min + np.sqrt(beta_min**2 + 4 * a * B)) / (2 * a)


def irsde_schedule(T: int = 100, eps: float = 0.005, s: float = 0.008):
    """IR-SDE / GOUB official schedule (``cosine_theta_schedule``, ``sde_utils.py``): returns
    ``(thetas (T+1,), thetas_cumsum (T+1,), dt)`` with ``thetas_cumsum = cumsum − θ_0`` and
    ``dt = −log(eps)/thetas_cumsum[-1]``; float64."""
    steps = T + 2
    x = np.linspace(0, steps, steps + 1)
    f = np.cos(((x / steps) + s) / (1 + s) * np.pi * 0.5) ** 2
    f = f / f[0]
    thetas = 1 - f[1:-1]
    cum = np.cumsum(thetas) - thetas[0]
    return thetas, cum, -np.log(eps) / cum[-1]


def i2sb_betas(n: int = 1000, beta_max: float = 0.3, beta_start: float = 1e-4) -> np.ndarray:
    """I2SB's symmetric schedule (``make_beta_schedule`` + mirror, ``runner.py``), float64."""
    b = np.linspace(beta_start**0.5, (beta_max / n) ** 0.5, n) ** 2
    return np.concatenate([b[: n // 2], np.flip(b[: n // 2])])


def assert_discriminates(law: Law, wrong: dict, n: int, alpha: float = 1e-5, factor: float = 2.0):
    """Assert that each law in ``wrong`` (name → :class:`Law`, a nearby *wrong* update) is at
    least ``factor`` Bonferroni thresholds from ``law`` at ``n`` samples, so that a test of
    ``n`` draws against ``law`` fails, with certainty in practice, for a sampler that
    implements the wrong update (its largest z is then ≈ factor·thr ± 1)."""
    d = law.dim
    thr = z_threshold(d + d * (d + 1) // 2, alpha)
    for name, w in wrong.items():
        dist = law_distance_in_se(law, w, n)
        assert dist > factor * thr, f"{name}: only {dist:.1f} s.e. from the law (need > {factor * thr:.1f})"


# ---- added for the issue-16 samplers (tests/test_inverse_{daps,reddiff,pnpdm,enkg}.py) ------


def dense_problem(seed: int = 0, d: int = 6, dy: int = 3, sigma_y: float = 0.1):
    """A non-diagonal Gaussian prior on R^d and a dense ``dy × d`` operator: ``(μ, Σ, A, y)``.

    ``μ ~ 0.5 N(0, I)``, ``Σ = L Lᵀ + 0.3 I`` with ``L ~ 0.6 N(0, 1)``, ``A ~ N(0, 1)/√d``
    rounded to float32 (so jaxir's ``DenseMatrix`` holds the same matrix), ``y = A x* + σ_y ε``
    with ``x*`` a prior draw, rounded to float32; all returned as float64 arrays.
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d) * 0.5
    L = rng.normal(size=(d, d)) * 0.6
    Sig = L @ L.T + 0.3 * np.eye(d)
    A = (rng.normal(size=(dy, d)) / np.sqrt(d)).astype(np.float32).astype(np.float64)
    x_star = mu + np.linalg.cholesky(Sig) @ rng.normal(size=d)
    y = (A @ x_star + sigma_y * rng.normal(size=dy)).astype(np.float32).astype(np.float64)
    return mu, Sig, A, y
