"""DDPM (ancestral) and DDIM samplers for any linear SDE, as ``lax.scan`` loops.

Both move from ``t`` to an earlier ``s`` through the Gaussian posterior
``q(x_s | x_t, x_0)`` of the forward process with ``x_0`` replaced by the model's ``x̂_0``.
Writing the transition ``x_t | x_s`` as scale ``a = α_t/α_s`` and variance
``v = σ_t² − a² σ_s²``, the posterior is (Ho et al. 2020, Eq. 7, in general form)::

    mean = (α_s v / σ_t²) x̂_0 + (a σ_s² / σ_t²) (x_t − m_t) + m_s,
    var  = τ² = σ_s² v / σ_t²    (β̃ for DDPM: "fixed small")

and DDIM (Song et al. 2021, Eq. 12) is ``x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z + m_s``
with ``c = η τ``; DDIM with η = 1 is DDPM with the fixed-small variance. The steps are
public (:func:`ddpm_step`, :func:`ddim_step`) so that posterior samplers reuse them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import predictions
from .._utils import bcast, safe_sqrt
from ._common import Samples, all_finite, check_shape, scan_steps, time_grid

VARIANCES = ("fixed_small", "fixed_large")


def _posterior_terms(sde, x, t, s):
    a_t, sig_t = sde.marginal_coeffs(t)
    a_s, sig_s = sde.marginal_coeffs(s)
    a = a_t / a_s
    v = jnp.maximum(sig_t**2 - a**2 * sig_s**2, 0.0)
    return a_t, sig_t, a_s, sig_s, a, v


def ddpm_step(sde, key, x, t, s, x0, variance: str = "fixed_small"):
    """One ancestral step ``x_t → x_s`` given ``x̂_0`` (``s < t``; ``s = 0`` returns the mean)."""
    a_t, sig_t, a_s, sig_s, a, v = _posterior_terms(sde, x, t, s)
    m_t, m_s = sde.marginal_offset(t, x), sde.marginal_offset(s, x)
    c0 = a_s * v / sig_t**2
    ct = a * sig_s**2 / sig_t**2
    mean = bcast(c0, x) * x0 + bcast(ct, x) * (x - m_t) + m_s
    tau2 = sig_s**2 * v / sig_t**2
    if variance == "fixed_large":
        # β_t instead of β̃_t, except on the last step (improved-DDPM keeps β̃ there).
        tau2 = jnp.where(sig_s > 0, v, tau2)
    elif variance != "fixed_small":
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    z = jax.random.normal(key, x.shape, x.dtype)
    return mean + bcast(safe_sqrt(tau2), x) * z


def ddim_step(sde, key, x, t, s, x0, eps, eta: float = 0.0):
    """One DDIM step ``x_t → x_s`` given ``(x̂_0, ε̂)`` (Song et al. 2021, Eq. 12)."""
    _, sig_t, a_s, sig_s, _, v = _posterior_terms(sde, x, t, s)
    c = eta * safe_sqrt(sig_s**2 * v / sig_t**2)
    dir_coef = safe_sqrt(sig_s**2 - c**2)
    out = bcast(a_s, x) * x0 + bcast(dir_coef, x) * eps + sde.marginal_offset(s, x)
    if isinstance(eta, (int, float)) and eta == 0:
        # deterministic DDIM: adding 0·z changes nothing, and drawing z (threefry) cost
        # ~3 ms per step at 64×32×32×3 on one CPU core, more than a small network
        return out
    z = jax.random.normal(key, x.shape, x.dtype)
    return out + bcast(c, x) * z


def _clip(x0, clip_x0):
    if clip_x0 is False or clip_x0 is None:
        return x0
    lo, hi = (-1.0, 1.0) if clip_x0 is True else clip_x0
    return jnp.clip(x0, lo, hi)


def _check_known(known, shape):
    """``known = (values, mask)`` broadcast to ``shape`` (mask 1 = observed), or None."""
    if known is None:
        return None
    if not (isinstance(known, (tuple, list)) and len(known) == 2):
        raise ValueError("known must be a (values, mask) pair, mask 1 where the value is known")
    values, mask = (jnp.asarray(a, jnp.float32) for a in known)
    try:
        return jnp.broadcast_to(values, shape), jnp.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"known values {values.shape} and mask {mask.shape} must broadcast to "
                         f"the sample shape {tuple(shape)}") from None


def _run(update, key, model_fn, sde, shape, prediction, num_steps, spacing, cond, x_init,
         clip_x0, save_every, checkpoint, known=None, timesteps=None):
    shape = check_shape(shape, x_init)
    known = _check_known(known, shape)
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    ts, ts_next = time_grid(sde, num_steps, spacing, timesteps=timesteps)
    k_init, k_steps = jax.random.split(key)
    x = sde.prior_sample(k_init, shape) if x_init is None else x_init
    keys = jax.random.split(k_steps, len(ts))

    def step(carry, inp):
        (x,) = carry
        t, s, k, i = inp
        x0, eps = denoise(x, t, cond)
        x0c = _clip(x0, clip_x0)
        if x0c is not x0:  # keep (x̂0, ε̂) consistent after clipping
            eps = predictions.convert(x0c, x, t, sde, "x0", "eps")
        x = update(k, x, t, s, x0c, eps, i)
        if known is not None:  # Palette: paste the clean known pixels after every step
            x = known[1] * known[0] + (1.0 - known[1]) * x
        return (x,)

    xs = (jnp.asarray(ts, jnp.float32), jnp.asarray(ts_next, jnp.float32), keys,
          jnp.arange(len(ts)))
    (x,), traj = scan_steps(step, (x,), xs, save_every=save_every, checkpoint=checkpoint)
    return Samples(x, traj, len(ts), all_finite(x))


def ddpm_sample(
    key,
    model_fn,
    sde,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int | None = None,
    spacing: str | None = None,
    variance: str = "fixed_small",
    clip_x0=True,
    cond=None,
    x_init=None,
    save_every: int | None = None,
    checkpoint: bool | str = False,
    known=None,
    timesteps=None,
) -> Samples:
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2), respaced as in improved-DDPM.

    Args:
        key: PRNG key (initial noise and every step's noise are split from it).
        model_fn: ``model_fn(x, t, cond)`` with ``x`` of shape ``shape`` and scalar ``t``.
        sde: a :class:`~jaxir.sdes.LinearSDE`; a :class:`~jaxir.sdes.DiscreteVPSDE` gives
            the original discrete chain.
        shape: ``(B, ...)`` of the samples (or give ``x_init``).
        prediction: what ``model_fn`` predicts (see :mod:`jaxir.predictions`).
        num_steps: number of steps; default all ``N`` of a discrete SDE, else 1000.
        spacing: the grid's respacing (:func:`~jaxir.samplers.time_grid`).
        variance: ``"fixed_small"`` (β̃, official default) or ``"fixed_large"`` (β).
        clip_x0: clip x̂_0 to [-1, 1] (the official default, ``True``), to a ``(lo, hi)``
            pair, or not at all (``False``; use this for non-image data).
        x_init: start here instead of drawing from the SDE's prior.
        save_every: also return every k-th state.
        checkpoint: what ``jax.grad`` stores (:func:`~jaxir.samplers.scan_steps`): ``False``
            every step's intermediates, ``True`` one state per step (each step
            rematerialised), ``"sqrt"`` ~2√N states (two-level: blocks of ⌈√N⌉ steps).
        known: ``(values, mask)`` broadcastable to the sample shape (mask 1 = known): after
            every step the state takes ``values`` where the mask is 1, so the output equals
            them there. This is Palette's inference for inpainting / uncropping (the official
            code pastes the *clean* known pixels, not noised ones, at every step); for
            Score-SDE's noised replacement use `jaxir.inverse` projection instead.
        timesteps: an explicit descending grid ``(K,)`` in ``[t_min, T]`` instead of
            ``num_steps``/``spacing`` (:func:`~jaxir.samplers.time_grid`; e.g. a learned one,
            :func:`~jaxir.samplers.load_schedule`); the output is differentiable w.r.t. it.
            Each step is the posterior ``q(x_s | x_t, x̂_0)`` between consecutive times, the
            last one to ``t = 0``.

    Returns:
        :class:`~jaxir.samplers.Samples`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxir import exact, samplers, schedules, sdes
        >>> sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
        >>> prior = exact.Gaussian(jnp.zeros(2), jnp.eye(2))
        >>> out = samplers.ddpm_sample(jax.random.key(0), prior.model_fn(sde), sde, (8, 2),
        ...                            num_steps=100, clip_x0=False)
        >>> out.x.shape
        (8, 2)
    """
    if num_steps is None and timesteps is None:
        num_steps = getattr(sde, "num_steps", 1000)

    def update(k, x, t, s, x0, eps, i):
        return ddpm_step(sde, k, x, t, s, x0, variance)

    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    return _run(update, key, model_fn, sde, shape, prediction, num_steps, spacing, cond,
                x_init, clip_x0, save_every, checkpoint, known, timesteps)


def ddim_sample(
    key,
    model_fn,
    sde,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int | None = None,
    eta: float = 0.0,
    spacing: str | None = None,
    clip_x0=False,
    cond=None,
    x_init=None,
    save_every: int | None = None,
    checkpoint: bool | str = False,
    known=None,
    timesteps=None,
) -> Samples:
    """DDIM sampling (Song, Meng & Ermon 2021, Eq. 12), deterministic for ``eta = 0``.

    Defaults follow the official DDIM code: 50 steps, η = 0, "leading" ("uniform") respacing
    for a discrete SDE, no x̂_0 clipping. With ``eta = 0`` the map from ``x_init`` to the
    output is deterministic and differentiable (``jax.grad`` through it works; use
    ``checkpoint="sqrt"`` for long chains), also with respect to ``timesteps`` (an explicit
    grid instead of ``num_steps``/``spacing``, e.g. a learned few-step schedule) and ``eta``
    (a scalar, or one η per step, shape ``(num_steps,)``). Arguments as :func:`ddpm_sample`;
    ``num_steps`` defaults to 50.
    """
    if num_steps is None and timesteps is None:
        num_steps = 50
    per_step = not isinstance(eta, (int, float)) and np.ndim(eta) > 0
    if per_step:
        k = num_steps if timesteps is None else int(np.shape(timesteps)[0])
        if np.shape(eta) != (k,):
            raise ValueError(f"eta must be a scalar or have shape (num_steps,) = ({k},), got "
                             f"shape {np.shape(eta)}")

    def update(k, x, t, s, x0, eps, i):
        return ddim_step(sde, k, x, t, s, x0, eps, jnp.asarray(eta)[i] if per_step else eta)

    return _run(update, key, model_fn, sde, shape, prediction, num_steps, spacing, cond,
                x_init, clip_x0, save_every, checkpoint, known, timesteps)
