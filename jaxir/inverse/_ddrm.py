"""Denoising diffusion restoration models (DDRM; Kawar, Elad, Ermon & Song, NeurIPS 2022)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._utils import bcast, safe_sqrt
from ..samplers import Samples
from ._common import require_svd, spectral_y
from ._driver import Method, Piece, Sampler, chain, denoise, sample


def ddrm_sample(key, model_fn, sde, op, y, sigma_y=0.0, shape=None, *, eta: float = 0.85,
                eta_b: float = 1.0, **options) -> Samples:
    """DDRM in the spectral space of ``op`` (Kawar et al. 2022, Eqs. 7–8, "efficient" form).

    With ``A = U S Vᵀ``, ``x̄ = Vᵀ(x_t/α_t)`` (the variance-exploding view, noise level
    ``σ̄_t = σ_t/α_t``), ``ȳ_i = (Uᵀy)_i / s_i`` and ``x̄_0 = Vᵀ x̂_0``, each step ``t → s``
    draws every spectral coordinate by one of three rules (Eq. 8):

    * ``s_i = 0`` or ``i ≥ dy`` (unobserved): ``x̄_0 + √(1−η²) σ̄_s ε̄ + η σ̄_s z``
      (``ε̄ = Vᵀε̂``, as the official code);
    * ``s_i σ̄_s < σ_y`` (less noisy than y): ``x̄_0 + √(1−η²) σ̄_s (ȳ_i − x̄_0)/(σ_y/s_i)
      + η σ̄_s z``;
    * ``s_i σ̄_s > σ_y`` (noisier than y): ``η_b ȳ_i + (1 − η_b) x̄_0
      + √(σ̄_s² − η_b² σ_y²/s_i²) z``;

    then ``x_s = α_s V x̄``. ``x_T`` comes from the spectral posterior (Eq. 7):
    ``x̄_T = ȳ + √(σ̄_T² − σ_y²/s²) z`` where ``s σ̄_T > σ_y``, else ``σ̄_T z``; it is scaled
    by ``α_T`` (the official code divides by ``σ̄_T``, which differs from ``α_T`` by
    ``O(α_T³)``). Defaults are the official ones: 20 steps with uniform skip (the "leading"
    respacing of a :class:`~jaxir.sdes.DiscreteVPSDE`), η = 0.85, η_b = 1, no x̂_0 clipping.

    Units: ``sigma_y`` is the noise std of ``y`` in the units of the data. The official code
    doubles its ``--sigma_0`` because it is given for [0, 1] images while the model works in
    [-1, 1]; here pass the std in the data's own units (e.g. 0.1 for σ = 0.05 on [0, 1]
    images). Singular values are used as ``op`` gives them (the official blur truncation at
    3e-2 belongs to the operator).

    Args:
        op: a linear operator with an SVD (``op.has_svd``).
        eta, eta_b: η and η_b of Eq. 8.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default 20; ``x_init``
            replaces the Eq. 7 start).
        others: as :func:`~jaxir.inverse.dps_sample`.

    Returns:
        :class:`~jaxir.samplers.Samples`.
    """
    require_svd(op, "ddrm_sample")

    def build(p):
        uty, s, ybar = spectral_y(op, p.y)
        B, D, dy = p.shape[0], s.shape[0], uty.shape[-1]
        V, V_T = p.batched("V"), p.batched("V_T")
        obs = (jnp.arange(D) < dy) & (s > 0)
        sig_y = jnp.asarray(sigma_y, jnp.float32)
        rho = sig_y / jnp.where(obs, s, 1.0)  # noise std of ȳ_i
        # Uᵀy padded to the x-space spectral size (the "less noisy" residual uses Uᵀy − s x̄0)
        uty_pad = jnp.concatenate([uty, jnp.zeros((B, D - dy), uty.dtype)], -1)

        def vbar(t):
            a, sig = p.sde.marginal_coeffs(t)
            return a, sig / a

        def init(k):  # Eq. 7
            a_T, sb_T = vbar(p.ts[0])
            z = jax.random.normal(k, (B, D))
            big = obs & (s * sb_T > sig_y)
            return a_T * V(jnp.where(big, ybar + safe_sqrt(sb_T**2 - rho**2) * z, sb_T * z))

        def update(st, k):  # Eq. 8
            a_s, sb_s = vbar(st.s)
            x0b, epsb = V_T(st.x0), V_T(st.eps)
            z = jax.random.normal(k, (B, D))
            resid = jnp.where(obs, (uty_pad - s * x0b) / jnp.where(sig_y > 0, sig_y, 1.0), 0.0)
            missing = x0b + safe_sqrt(1.0 - eta**2) * sb_s * epsb + eta * sb_s * z
            after = x0b + safe_sqrt(1.0 - eta**2) * sb_s * resid + eta * sb_s * z
            before = (eta_b * ybar + (1.0 - eta_b) * x0b
                      + safe_sqrt(sb_s**2 - (eta_b * rho) ** 2) * z)
            is_before = obs & (s * sb_s > sig_y)
            is_after = obs & (s * sb_s < sig_y)
            xbar = jnp.where(is_before, before, jnp.where(is_after, after, missing))
            return st._replace(x_next=bcast(a_s, st.x) * V(xbar))

        return Sampler(chain(denoise(p), Piece(update, draws=True)), init=init)

    return sample(Method("ddrm_sample", build, num_steps=20), key, model_fn, sde, op, y,
                  sigma_y, shape, **options)
