"""Exact references: Gaussian and Gaussian-mixture priors (the ground truth of every test).

Under any linear SDE (``x_t = α x_0 + m + σ ε``, see :mod:`jaxir.sdes`) a Gaussian prior
``N(μ, Σ)`` stays Gaussian, ``N(α μ + m, α² Σ + σ² I)``, and a mixture stays a mixture of
such components, so the noised score, Tweedie's ``E[x_0 | x_t]`` and ``ε̂`` are closed
form. :meth:`Gaussian.model_fn` returns them as a ``model_fn(x, t, cond)`` of any
prediction type, usable by every sampler exactly like a trained network.

Linear-Gaussian observations ``y = A x + σ_y ε`` have closed-form posteriors
(:meth:`Gaussian.posterior`, :meth:`GaussianMixture.posterior`; for a mixture the
posterior is a mixture of the per-component posteriors with weights
``∝ w_k N(y; A μ_k, A Σ_k Aᵀ + σ_y² I)``).

Shapes: event shape ``(d,)``; functions accept any leading batch shape ``(..., d)`` and
``t`` either scalar or with the batch shape. Covariances are factorised once at
construction (``eigh``) so each call costs two matrix products.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxir import exact, sdes
    >>> prior = exact.Gaussian(jnp.zeros(2), jnp.array([[1.0, 0.5], [0.5, 2.0]]))
    >>> model_fn = prior.model_fn(sdes.VPSDE(), prediction="eps")
    >>> model_fn(jnp.ones((4, 2)), 0.5, None).shape
    (4, 2)
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import predictions as _pred
from ._utils import bcast
from .precision import heinsum, hmatmul

__all__ = ["Gaussian", "GaussianMixture", "moment_zscores", "interpolant_velocity"]


def _coeffs(sde, t, x):
    a, s = sde.marginal_coeffs(t)
    return bcast(a, x), bcast(s, x), sde.marginal_offset(t, x)


def _check_vec(x, d, name="x"):
    if x.shape[-1:] != (d,):
        raise ValueError(f"{name} must have shape (..., {d}), got {x.shape}")


class Gaussian(eqx.Module):
    """``N(mean, cov)`` on ``R^d`` with exact noised statistics under any linear SDE."""

    mean: jax.Array
    cov: jax.Array
    evals: jax.Array
    evecs: jax.Array

    def __init__(self, mean, cov):
        mean = jnp.asarray(mean, jnp.float32)
        cov = jnp.asarray(cov, jnp.float32)
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (d,), got {mean.shape}")
        d = mean.shape[0]
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {cov.shape}")
        cov = 0.5 * (cov + cov.T)
        self.mean, self.cov = mean, cov
        self.evals, self.evecs = jnp.linalg.eigh(cov)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def sample(self, key, n: int):
        """``(n, d)`` exact samples."""
        z = jax.random.normal(key, (n, self.dim))
        return self.mean + hmatmul(z * jnp.sqrt(jnp.maximum(self.evals, 0.0)), self.evecs.T)

    def log_prob(self, x):
        """Log-density at ``x`` of shape ``(..., d)`` → ``(...)``."""
        _check_vec(x, self.dim)
        z = hmatmul(x - self.mean, self.evecs)
        return -0.5 * jnp.sum(z**2 / self.evals + jnp.log(2 * math.pi * self.evals), -1)

    def marginal(self, sde, t) -> "Gaussian":
        """The noised marginal at scalar ``t`` (for zero-offset SDEs or a fixed ``μ``)."""
        a, s = sde.marginal_coeffs(t)
        m = sde.marginal_offset(t, self.mean)
        return Gaussian(a * self.mean + m, a**2 * self.cov + s**2 * jnp.eye(self.dim))

    def _project(self, x, t, sde):
        _check_vec(x, self.dim)
        a, s, m = _coeffs(sde, t, x)
        z = hmatmul(x - m - a * self.mean, self.evecs)
        c = a**2 * self.evals + s**2
        return a, s, z, c

    def score(self, x, t, sde):
        """``∇_x log p_t(x)``."""
        _, _, z, c = self._project(x, t, sde)
        return -hmatmul(z / c, self.evecs.T)

    def x0_mean(self, x, t, sde):
        """Tweedie: ``E[x_0 | x_t = x] = μ + Σ α (α²Σ + σ²I)⁻¹ (x − αμ − m)``."""
        a, _, z, c = self._project(x, t, sde)
        return self.mean + hmatmul(a * self.evals * z / c, self.evecs.T)

    def denoise(self, x, t, sde):
        """``(E[x_0 | x_t], E[ε | x_t])``, computed stably at σ = 0 and α → 0."""
        a, s, z, c = self._project(x, t, sde)
        x0 = self.mean + hmatmul(a * self.evals * z / c, self.evecs.T)
        eps = hmatmul(s * z / c, self.evecs.T)
        return x0, eps

    def model_fn(self, sde, prediction: str = "eps"):
        """The exact ``model_fn(x, t, cond)`` for ``prediction`` (``cond`` is ignored)."""
        return _exact_model_fn(self, sde, prediction)

    def posterior(self, A, sigma_y, y) -> "Gaussian":
        """Exact posterior of ``x`` given ``y = A x + σ_y ε`` (``A``: ``(dy, d)``, ``y``: ``(dy,)``)."""
        mean, cov, _ = _gaussian_posterior(self.mean, self.cov, A, sigma_y, y)
        return Gaussian(mean, cov)


def _gaussian_posterior(mean, cov, A, sigma_y, y):
    A = jnp.asarray(A, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if A.ndim != 2 or A.shape[1] != mean.shape[-1]:
        raise ValueError(f"A must have shape (dy, {mean.shape[-1]}), got {A.shape}")
    if y.shape != (A.shape[0],):
        raise ValueError(f"y must have shape ({A.shape[0]},), got {y.shape}")
    S = hmatmul(hmatmul(A, cov), A.T) + sigma_y**2 * jnp.eye(A.shape[0])  # predictive covariance of y
    K = jnp.linalg.solve(S, hmatmul(A, cov)).T  # Kalman gain (d, dy)
    resid = y - hmatmul(A, mean)
    post_mean = mean + hmatmul(K, resid)
    post_cov = cov - hmatmul(hmatmul(K, A), cov)
    post_cov = 0.5 * (post_cov + post_cov.T)
    _, logdet = jnp.linalg.slogdet(S)
    loglik = -0.5 * (hmatmul(resid, jnp.linalg.solve(S, resid)) + logdet + A.shape[0] * math.log(2 * math.pi))
    return post_mean, post_cov, loglik


class GaussianMixture(eqx.Module):
    """``Σ_k w_k N(μ_k, Σ_k)`` on ``R^d``; ``covs`` is ``(K, d, d)`` or ``(K, d)`` (diagonal).

    The diagonal form never builds ``d × d`` matrices (for the d = 800 GMM benchmark).
    """

    weights: jax.Array
    means: jax.Array
    evals: jax.Array
    evecs: jax.Array | None

    def __init__(self, weights, means, covs):
        w = jnp.asarray(weights, jnp.float32)
        means = jnp.asarray(means, jnp.float32)
        covs = jnp.asarray(covs, jnp.float32)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {means.shape}")
        K, d = means.shape
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {w.shape}")
        self.weights = w / jnp.sum(w)
        self.means = means
        if covs.shape == (K, d):
            self.evals, self.evecs = covs, None
        elif covs.shape == (K, d, d):
            self.evals, self.evecs = jnp.linalg.eigh(0.5 * (covs + jnp.swapaxes(covs, -1, -2)))
        else:
            raise ValueError(f"covs must have shape ({K}, {d}, {d}) or ({K}, {d}), got {covs.shape}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def covs(self):
        """``(K, d, d)`` covariances (materialised)."""
        if self.evecs is None:
            return jax.vmap(jnp.diag)(self.evals)
        return heinsum("kij,kj,klj->kil", self.evecs, self.evals, self.evecs)

    def _rot(self, z):  # (..., K, d) -> eigenbasis coordinates
        return z if self.evecs is None else heinsum("...ki,kij->...kj", z, self.evecs)

    def _unrot(self, z):
        return z if self.evecs is None else heinsum("...kj,kij->...ki", z, self.evecs)

    def sample(self, key, n: int):
        """``(n, d)`` exact samples."""
        kc, kz = jax.random.split(key)
        comp = jax.random.choice(kc, self.num_components, (n,), p=self.weights)
        z = jax.random.normal(kz, (n, self.dim)) * jnp.sqrt(jnp.maximum(self.evals[comp], 0.0))
        if self.evecs is not None:
            z = heinsum("nij,nj->ni", self.evecs[comp], z)
        return self.means[comp] + z

    def sample_with_components(self, key, n: int):
        """Samples and the component index each was drawn from."""
        kc, _ = jax.random.split(key)
        comp = jax.random.choice(kc, self.num_components, (n,), p=self.weights)
        return self.sample(key, n), comp

    def _component_terms(self, x, t, sde):
        _check_vec(x, self.dim)
        a, s = sde.marginal_coeffs(t)
        a = jnp.asarray(a)[..., None, None]
        s = jnp.asarray(s)[..., None, None]
        m = sde.marginal_offset(t, x)[..., None, :] if jnp.ndim(sde.marginal_offset(t, x)) else 0.0
        z = self._rot(x[..., None, :] - m - a * self.means)  # (..., K, d)
        c = a**2 * self.evals + s**2  # (..., K, d)
        logn = -0.5 * jnp.sum(z**2 / c + jnp.log(2 * math.pi * c), -1)  # (..., K)
        r = jax.nn.softmax(jnp.log(self.weights) + logn, axis=-1)
        return a, s, z, c, r, logn

    def log_prob(self, x):
        """Log-density at ``x`` (``(..., d)`` → ``(...)``)."""
        _check_vec(x, self.dim)
        z = self._rot(x[..., None, :] - self.means)
        logn = -0.5 * jnp.sum(z**2 / self.evals + jnp.log(2 * math.pi * self.evals), -1)
        return jax.scipy.special.logsumexp(jnp.log(self.weights) + logn, axis=-1)

    def noised_log_prob(self, x, t, sde):
        """``log p_t(x)`` of the noised marginal."""
        _, _, _, _, _, logn = self._component_terms(x, t, sde)
        return jax.scipy.special.logsumexp(jnp.log(self.weights) + logn, axis=-1)

    def responsibilities(self, x, t, sde):
        """``p(k | x_t = x)``, shape ``(..., K)``."""
        return self._component_terms(x, t, sde)[4]

    def score(self, x, t, sde):
        _, _, z, c, r, _ = self._component_terms(x, t, sde)
        return -jnp.sum(r[..., None] * self._unrot(z / c), -2)

    def denoise(self, x, t, sde):
        """``(E[x_0 | x_t], E[ε | x_t])``."""
        a, s, z, c, r, _ = self._component_terms(x, t, sde)
        x0_k = self.means + self._unrot(a * self.evals * z / c)
        eps_k = self._unrot(s * z / c)
        return jnp.sum(r[..., None] * x0_k, -2), jnp.sum(r[..., None] * eps_k, -2)

    def x0_mean(self, x, t, sde):
        return self.denoise(x, t, sde)[0]

    def model_fn(self, sde, prediction: str = "eps"):
        """The exact ``model_fn(x, t, cond)`` for ``prediction`` (``cond`` is ignored)."""
        return _exact_model_fn(self, sde, prediction)

    def posterior(self, A, sigma_y, y) -> "GaussianMixture":
        """Exact posterior given ``y = A x + σ_y ε``: a mixture with reweighted components."""
        means, covs, loglik = jax.vmap(
            lambda mu, cov: _gaussian_posterior(mu, cov, A, sigma_y, y)
        )(self.means, self.covs)
        logw = jnp.log(self.weights) + loglik
        w = jax.nn.softmax(logw)
        return GaussianMixture(w, means, covs)


def _exact_model_fn(prior, sde, prediction):
    _pred._check(prediction)

    def model_fn(x, t, cond=None):
        del cond
        x0, eps = prior.denoise(x, t, sde)
        return _pred.from_x0_eps(x0, eps, x, t, sde, prediction)

    return model_fn


def moment_zscores(samples, mean, cov):
    """How far sample moments are from exact ones, in standard errors (numpy, float64).

    For ``n`` i.i.d. samples of ``N(mean, cov)`` the standard error of the sample mean
    ``i`` is ``√(Σ_ii/n)`` and that of the sample covariance ``(i, j)`` is
    ``√((Σ_ii Σ_jj + Σ_ij²)/n)``. Returns a dict with the largest absolute z-scores
    (``z_mean``, ``z_cov``) and the raw errors (``mean_err`` = max |Δμ|,
    ``cov_err`` = max |ΔΣ|). Under a correct sampler each z is approximately ``|N(0, 1)|``, so
    a bound of 5 on the maximum over a few entries fails by chance with probability < 1e-5.
    """
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    mean = np.asarray(mean, np.float64)
    cov = np.asarray(cov, np.float64)
    m = x.mean(0)
    c = np.cov(x.T).reshape(cov.shape)
    dg = np.diag(cov)
    z_mean = np.abs(m - mean) / np.sqrt(dg / n)
    z_cov = np.abs(c - cov) / np.sqrt((np.outer(dg, dg) + cov**2) / n)
    return {
        "z_mean": float(z_mean.max()),
        "z_cov": float(z_cov.max()),
        "mean_err": float(np.abs(m - mean).max()),
        "cov_err": float(np.abs(c - cov).max()),
        "n": int(n),
    }


def interpolant_velocity(source: Gaussian, target: Gaussian):
    """Exact flow-matching velocity for independent Gaussians and the straight interpolant.

    With ``x_t = (1 − t) x_0 + t x_1``, ``x_0 ~ target`` (clean), ``x_1 ~ source`` (degraded),
    independent: ``E[x_1 − x_0 | x_t] = (μ_1 − μ_0) + C_t V_t⁻¹ (x_t − m_t)`` with
    ``m_t = (1−t) μ_0 + t μ_1``, ``V_t = (1−t)² Σ_0 + t² Σ_1``, ``C_t = t Σ_1 − (1−t) Σ_0``.
    Returns ``velocity_fn(x, t, cond)`` for :func:`jaxir.samplers.flow_sample`; the ODE it
    defines carries ``source`` exactly to ``target`` (the marginal-preserving property).
    """

    def velocity_fn(x, t, cond=None):
        del cond
        t = jnp.asarray(t, jnp.float32)
        m = (1 - t) * target.mean + t * source.mean
        V = (1 - t) ** 2 * target.cov + t**2 * source.cov
        C = t * source.cov - (1 - t) * target.cov
        corr = hmatmul(jnp.linalg.solve(V, (x - m).reshape(-1, x.shape[-1]).T).T, C.T)
        return (source.mean - target.mean) + corr.reshape(x.shape)

    return velocity_fn
