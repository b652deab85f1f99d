"""The autoencoder as a codec, and its training objective (stage 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["LatentCodec", "autoencoder_codec", "autoencoder_loss", "autoencoder_model_fn",
           "latent_scale", "to_latent_resolution"]


class LatentCodec(NamedTuple):
    """``encode((B, H, W, C)) -> (B, H/f, W/f, latent_channels)`` and ``decode`` back.

    Pass a codec to jitted code by closure (its fields are functions, not arrays).
    """

    encode: Callable
    decode: Callable
    factor: int
    latent_channels: int


def autoencoder_codec(graphdef, params, scale: float = 1.0) -> LatentCodec:
    """The codec of an `Autoencoder`: ``encode = s·E(x)``, ``decode = D(z/s)`` (s = ``scale``)."""
    cfg = nnx.merge(graphdef, params).config

    def encode(x):
        return nnx.merge(graphdef, params).encode(x) * scale

    def decode(z):
        return nnx.merge(graphdef, params).decode(z / scale)

    return LatentCodec(encode, decode, cfg.factor, cfg.latent_channels)


def to_latent_resolution(lq, hw: tuple[int, int]):
    """The LQ image (B, H', W', C) brought to the latent size ``hw = (h, w)``.

    Returned as is when already (h, w); f×f block averaged when H' and W' are multiples of
    (h, w) (for an SR input that was block-averaged and nearest-upsampled this recovers the
    raw LQ exactly); otherwise antialiased bicubic resizing (`jax.image.resize`).
    """
    lq = jnp.asarray(lq)
    if lq.ndim != 4:
        raise ValueError(f"lq must have shape (B, H, W, C), got {lq.shape}")
    b, hh, ww, c = lq.shape
    h, w = int(hw[0]), int(hw[1])
    if (hh, ww) == (h, w):
        return lq
    if hh % h == 0 and ww % w == 0:
        fh, fw = hh // h, ww // w
        return lq.reshape(b, h, fh, w, fw, c).mean(axis=(2, 4))
    return jax.image.resize(lq, (b, h, w, c), "cubic", antialias=True)


def autoencoder_model_fn(graphdef, params) -> Callable:
    """``model_fn(x, t=None, cond=None) -> (D(E(x)), E(x))``: an autoencoder in the trainer's
    ``model_fn`` interface (``t`` and ``cond`` are ignored)."""
    def model_fn(x, t=None, cond=None):
        del t, cond
        ae = nnx.merge(graphdef, params)
        z = ae.encode(x)
        return ae.decode(z), z

    return model_fn


def autoencoder_loss(loss: str = "l1", latent_weight: float = 1e-6) -> Callable:
    """Stage-1 loss ``loss_fn(model_fn, batch, key) -> (loss, aux)`` for an
    :func:`autoencoder_model_fn`: ``mean|D(E(x)) − x|`` (``"l1"``, LDM's pixel term) or the
    MSE (``"mse"``) plus ``latent_weight · mean(E(x)²)`` (a small pull of the latents towards 0
    in place of LDM's KL term of weight 1e-6). ``aux``: ``{"reconstruction": ...}``. This is
    loss kind ``"autoencoder"`` of ``jaxir train`` (options ``loss``, ``latent_weight``)."""
    if loss not in ("l1", "mse"):
        raise ValueError(f"loss must be 'l1' or 'mse', got {loss!r}")
    latent_weight = float(latent_weight)
    if not latent_weight >= 0:
        raise ValueError(f"latent_weight must be >= 0, got {latent_weight}")

    def loss_fn(model_fn, batch, key):
        del key
        x = batch["image"]
        recon, z = model_fn(x)
        err = recon - x
        rec = jnp.mean(jnp.abs(err)) if loss == "l1" else jnp.mean(err**2)
        return rec + latent_weight * jnp.mean(z**2), {"reconstruction": rec}

    return loss_fn


def latent_scale(graphdef, params, images, batch_size: int = 256) -> float:
    """LDM's ``scale_factor``: 1 / std of the unscaled latents E(x) over ``images``."""
    enc = jax.jit(lambda x: nnx.merge(graphdef, params).encode(x))
    images = np.asarray(images, np.float32)
    zs = [np.asarray(enc(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return float(1.0 / np.std(np.concatenate(zs)))
