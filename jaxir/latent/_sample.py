"""Restoration in latent space: sample z_0 conditioned on the LQ, then decode."""

from __future__ import annotations

import jax.numpy as jnp

from ..samplers import Samples, ddim_sample, ddpm_sample
from ._codec import LatentCodec, to_latent_resolution

__all__ = ["latent_restore"]

_SAMPLERS = ("ddim", "ddpm")


def latent_restore(key, model_fn, codec: LatentCodec, sde, lq, *, image_shape=None,
                   num_steps: int = 50, sampler: str = "ddim", prediction: str = "eps",
                   **sampler_options) -> Samples:
    """Restore ``lq``: sample ``z_0`` with the latent ``model_fn`` conditioned on the LQ at latent
    resolution, then decode.

    Args:
      key: PRNG key.
      model_fn: ``model_fn(z, t, cond)`` on latents (B, h, w, latent_channels), cond
        (B, h, w, C_lq).
      codec: a :class:`LatentCodec`.
      sde: the latent diffusion's SDE.
      lq: (B, H, W, C) — the LQ at the output size (e.g. upsampled) or any size that
        :func:`to_latent_resolution` maps to (h, w).
      image_shape: (H, W) of the output; default lq's spatial size. h = H/f, w = W/f.
      sampler: "ddim" (`jaxir.samplers.ddim_sample`, η from ``sampler_options``) or "ddpm".
      sampler_options: passed on (``eta``, ``spacing``, ``clip_x0`` — off by default, latents
        are not in [-1, 1]).

    Returns a `jaxir.samplers.Samples` whose ``x`` is the decoded image (B, H, W, C_out),
    ``finite`` checks it, and ``extras = {"z": z_0}``.
    """
    if sampler not in _SAMPLERS:
        raise ValueError(f"sampler must be one of {_SAMPLERS}, got {sampler!r}")
    lq = jnp.asarray(lq)
    if lq.ndim != 4:
        raise ValueError(f"lq must have shape (B, H, W, C), got {lq.shape}")
    hh, ww = (lq.shape[1], lq.shape[2]) if image_shape is None else image_shape
    f = codec.factor
    if hh % f or ww % f:
        raise ValueError(f"image size ({hh}, {ww}) must be divisible by the codec's factor {f}")
    shape = (lq.shape[0], hh // f, ww // f, codec.latent_channels)
    cond = to_latent_resolution(lq, shape[1:3])
    run = ddim_sample if sampler == "ddim" else ddpm_sample
    sampler_options.setdefault("clip_x0", False)
    out = run(key, model_fn, sde, shape, prediction=prediction, num_steps=num_steps, cond=cond,
              **sampler_options)
    x = codec.decode(out.x)
    return Samples(x, None, out.nfe, jnp.all(jnp.isfinite(x)), {"z": out.x})
