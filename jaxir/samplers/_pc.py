"""Predictor-corrector sampling (Song et al. 2021, Alg. 2–3 and the Score-SDE code).

Predictors (one step ``t → s`` of the reverse process):

* ``"reverse_diffusion"`` — the discretisation of the Score-SDE code: with the forward
  transition ``x_t = a x_s + √v z`` written as ``f = (a − 1) x``, ``G = √v``,
  ``x_s = x − f + G² ∇log p_t(x) + G z``. For VP this is exactly the official
  ``ReverseDiffusionPredictor`` (``a = √(1 − β_i)``, ``v = β_i``), for VE
  (``a = 1``, ``v = σ_i² − σ_{i−1}²``) too.
* ``"euler_maruyama"`` — Euler–Maruyama on the reverse SDE.

Corrector ``"langevin"``: ``n_corrector_steps`` of Langevin dynamics with the Score-SDE
step-size rule ``ε = 2 α (snr ‖z‖ / ‖∇log p‖)²`` and noise ``√(2ε) z``, where the norms are
per-sample and then averaged over the batch (as the official code), and ``α = a²`` for VP
(``1 − β_i``), 1 otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import predictions
from .._utils import bcast
from ..sdes import VPSDE, DiscreteVPSDE
from ._common import Samples, all_finite, check_shape, scan_steps, time_grid

PREDICTORS = ("reverse_diffusion", "euler_maruyama", "none")
CORRECTORS = ("langevin", "none")


def _batch_norm_mean(x):
    return jnp.mean(jnp.linalg.norm(x.reshape(x.shape[0], -1), axis=-1))


def langevin_correct(key, score_fn, x, t, cond, snr, n_steps, alpha):
    """``n_steps`` Langevin corrector steps at fixed ``t`` (Score-SDE ``LangevinCorrector``)."""

    def body(i, x):
        k = jax.random.fold_in(key, i)
        g = score_fn(x, t, cond)
        z = jax.random.normal(k, x.shape, x.dtype)
        step = (snr * _batch_norm_mean(z) / _batch_norm_mean(g)) ** 2 * 2.0 * alpha
        return x + step * g + jnp.sqrt(2.0 * step) * z

    return jax.lax.fori_loop(0, n_steps, body, x)


def pc_sample(
    key,
    model_fn,
    sde,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    denoise: bool = True,
    cond=None,
    x_init=None,
    save_every: int | None = None,
    checkpoint: bool | str = False,
) -> Samples:
    """Predictor-corrector sampler; Score-SDE defaults (reverse-diffusion + Langevin, snr 0.16,
    one corrector step, ``N = 1000``, final denoising).

    The Langevin corrector is unadjusted and its step is set by ``snr``, not by ``N``, so
    it leaves a bias of order ``snr²`` that more steps do not remove: on a 4-D Gaussian
    with covariance eigenvalues 0.34…3.6 the largest covariance error was 0.032 at snr 0.16,
    0.012 at 0.08 and 0.007 at 0.04 (measured, 100,000 samples). The update itself is pinned
    draw for draw against a transcription of the Score-SDE code
    (``tests/test_oracle_samplers.py``).

    The grid runs from ``T`` to ``t_min`` and a last predictor step goes to ``t = 0`` (for a
    :class:`~jaxir.sdes.DiscreteVPSDE` the integer grid, ending at index 0 → data).
    ``denoise=True`` drops the noise of that final predictor step (Score-SDE returns
    ``x_mean``), otherwise it is sampled as every other step.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}, got {corrector!r}")
    shape = check_shape(shape, x_init)
    score_fn = predictions.score_fn_from_model(model_fn, sde, prediction)
    ts, ts_next = time_grid(sde, num_steps)  # ends with a step t_min -> 0
    k_init, k_steps = jax.random.split(key)
    x = sde.prior_sample(k_init, shape) if x_init is None else x_init
    keys = jax.random.split(k_steps, len(ts))
    vp_like = isinstance(sde, (VPSDE, DiscreteVPSDE))
    n = len(ts)

    def step(carry, inp):
        (x,) = carry
        i, t, s, k = inp
        kc, kp = jax.random.split(k)
        a, std = sde.transition_coeffs(s, t)
        if corrector == "langevin":
            alpha = a**2 if vp_like else jnp.ones_like(a)
            x = langevin_correct(kc, score_fn, x, t, cond, snr, n_corrector_steps, alpha)
        if predictor == "reverse_diffusion":
            mean = bcast(2.0 - a, x) * x + bcast(std**2, x) * score_fn(x, t, cond)
            noise_scale = std
        elif predictor == "euler_maruyama":
            dt = t - s
            g = sde.diffusion(t)
            rev_drift = sde.drift(x, t) - bcast(g**2, x) * score_fn(x, t, cond)
            mean = x - rev_drift * dt
            noise_scale = g * jnp.sqrt(dt)
        else:
            return (x,)
        if denoise:  # Score-SDE's noise_removal: no noise on the final predictor step
            noise_scale = jnp.where(i == n - 1, 0.0, noise_scale)
        z = jax.random.normal(kp, x.shape, x.dtype)
        return (mean + bcast(noise_scale, x) * z,)

    xs = (jnp.arange(n), jnp.asarray(ts, jnp.float32), jnp.asarray(ts_next, jnp.float32), keys)
    (x,), traj = scan_steps(step, (x,), xs, save_every=save_every, checkpoint=checkpoint)
    per_step = int(predictor != "none") + int(corrector != "none") * n_corrector_steps
    return Samples(x, traj, per_step * n, all_finite(x))
