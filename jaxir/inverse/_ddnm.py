"""Denoising diffusion null-space models (DDNM / DDNM+; Wang, Yu & Zhang, ICLR 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._utils import bcast, safe_sqrt
from ..samplers import Samples
from ._common import spectral_y
from ._driver import Method, Piece, Sampler, chain, denoise, sample


def time_travel_schedule(num_steps: int, travel_length: int = 1, travel_repeat: int = 1):
    """The grid-index path of DDNM's time travel (RePaint's jump schedule).

    Starts at ``num_steps − 1`` and ends at ``−1`` (the data); each move changes the index
    by one. Descending every index once, at every ``travel_length``-th index ``j`` below
    ``num_steps − travel_length`` the path climbs back up ``travel_length`` indices and
    descends again, ``travel_repeat − 1`` times in all. With ``travel_repeat = 1`` (the
    official default, with ``travel_length = 1``) there is no travel.

    Returns:
        ``int`` numpy array of grid indices, length ``num_steps + 1 + 2·l·(r−1)·#jumps``.
    """
    if travel_length < 1 or travel_repeat < 1:
        raise ValueError(f"travel_length and travel_repeat must be >= 1, got {travel_length}, {travel_repeat}")
    left = {j: travel_repeat - 1 for j in range(0, num_steps - travel_length, travel_length)}
    path, t = [], num_steps
    while t >= 1:
        t -= 1
        path.append(t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            for _ in range(travel_length):
                t += 1
                path.append(t)
    path.append(-1)
    return np.asarray(path, np.int64)


def ddnm_sample(key, model_fn, sde, op, y, sigma_y=0.0, shape=None, *, eta: float = 0.85,
                travel_length: int = 1, travel_repeat: int = 1, **options) -> Samples:
    """DDNM (noiseless) and DDNM+ (noisy ``y``) with time travel, as one ``lax.scan``.

    DDNM (Wang et al. 2023, Eqs. 12–13) corrects the range-space part of the prediction,
    ``x̂_0 ← x̂_0 − A⁺(A x̂_0 − y)``, then steps as the official code (DDIM with DDNM's η:
    ``x_s = √ᾱ_s x̂_0 + √(1−ᾱ_s)(η z + √(1−η²) ε̂)``). This form, selected by a Python
    ``sigma_y == 0``, needs only ``op.A`` and ``op.A_pinv``.

    DDNM+ (``sigma_y > 0``; Eqs. 17–19 in the per-singular-value form of the official SVD
    code, ``Lambda`` / ``Lambda_noise``) works in the SVD basis with ``ρ_i = σ_y/s_i``,
    ``a = √ᾱ_s`` and ``σ_s = √(1−ᾱ_s)``: the correction of coordinate ``i`` is scaled by
    ``λ_i = 1`` if ``σ_s ≥ a ρ_i``, else ``λ_i = √(1−η²) σ_s/(a ρ_i)``; the fresh noise is
    ``σ_s(η z + √(1−η²) ε̂)`` on unobserved coordinates, ``√(σ_s² − a²ρ_i²) z`` where
    ``σ_s > a ρ_i`` and ``η σ_s z`` where ``σ_s < a ρ_i`` (γ_t of the paper), so every
    coordinate of ``x_s`` carries total noise variance ``σ_s²``. It needs ``op.has_svd``.

    Time travel (Sec. 3.4) is a precomputed path over the respaced grid
    (:func:`time_travel_schedule`): a downward move is a DDNM step; an upward move re-noises
    the last (uncorrected) ``x̂_0`` to the new time, ``x = √ᾱ x̂_0 + √(1−ᾱ) z``, as the
    official code. Defaults: 100 steps (uniform skip), η = 0.85, l = r = 1 (no travel).

    Args:
        sigma_y: measurement noise std in the units of ``y``.
        eta: DDNM's η. travel_length, travel_repeat: :func:`time_travel_schedule`'s l, r.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default 100).
        others: as :func:`~jaxir.inverse.dps_sample`.

    Returns:
        :class:`~jaxir.samplers.Samples` (``nfe`` = number of downward moves).
    """
    plus = not (isinstance(sigma_y, (int, float)) and sigma_y == 0)
    if plus and not getattr(op, "has_svd", False):
        raise ValueError(
            f"ddnm_sample: DDNM+ (sigma_y > 0) needs an operator with an SVD (op.has_svd); "
            f"{type(op).__name__} has none. Use sigma_y=0 for plain DDNM."
        )
    c_eta = float(np.sqrt(1.0 - eta**2))

    def build(p):
        A, A_pinv = p.batched("A"), p.batched("A_pinv")
        if plus:
            V, V_T = p.batched("V"), p.batched("V_T")
            uty, s, ybar = spectral_y(op, p.y)
            obs = (jnp.arange(s.shape[0]) < uty.shape[-1]) & (s > 0)
            rho = jnp.asarray(sigma_y, jnp.float32) / jnp.where(obs, s, 1.0)

        def down(st, k):  # a DDNM step from x_t; the state keeps the uncorrected x̂_0
            x, x0, eps = st.x, st.x0, st.eps
            a_s, sig_s = p.sde.marginal_coeffs(st.s)
            z = jax.random.normal(k, x.shape, x.dtype)
            if not plus:
                x0h = x0 - A_pinv(A(x0) - p.y)
                noise = bcast(sig_s, x) * (eta * z + c_eta * eps)
                return st._replace(x_next=bcast(a_s, x) * x0h + noise, state=x0)
            x0b, epsb, zb = V_T(x0), V_T(eps), V_T(z)
            noisy = obs & (sig_s < a_s * rho)  # y noisier than the step's budget
            quiet = obs & (sig_s > a_s * rho)
            lam = jnp.where(noisy, c_eta * sig_s / (a_s * rho), 1.0)
            x0hb = x0b - jnp.where(obs, lam * (x0b - ybar), 0.0)
            nz = jnp.where(quiet, safe_sqrt(sig_s**2 - (a_s * rho) ** 2) * zb, sig_s * eta * zb)
            nz = nz + jnp.where(noisy | quiet, 0.0, sig_s * c_eta * epsb)
            return st._replace(x_next=V(a_s * x0hb + nz), state=x0)

        def travel(st, k):  # up: re-noise the last x̂_0 to the new time
            x, (a, sig) = st.x, p.sde.marginal_coeffs(st.s)
            z = jax.random.normal(k, x.shape, x.dtype)
            return st._replace(x_next=bcast(a, x) * st.state + bcast(sig, x) * z)

        return Sampler(chain(denoise(p), Piece(down, draws=True)), up=Piece(travel, draws=True),
                       state=lambda k, x: jnp.zeros_like(x))

    walk = lambda n: time_travel_schedule(n, travel_length, travel_repeat)  # noqa: E731
    return sample(Method("ddnm_sample", build, num_steps=100, walk=walk), key, model_fn, sde, op,
                  y, sigma_y, shape, **options)
