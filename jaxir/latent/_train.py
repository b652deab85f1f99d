"""Both stages of latent diffusion trained in memory, through the one train step of
`jaxir.training` (`fit`); the stage-2 loss `latent_loss` lives with the latent family
(`jaxir.training.families.latent`) and is re-exported here."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import optax
from flax import nnx

from ..models import Autoencoder, AutoencoderConfig, UNet, UNetConfig, make_model_fn, split_model
from ..training._fit import fit
from ..training.families.latent import latent_loss
from ._codec import LatentCodec, autoencoder_loss, autoencoder_model_fn
from ._file import load_images

__all__ = ["latent_loss", "train_autoencoder", "train_latent_diffusion"]


def _fit(loss_fn, apply_fn, params, images, *, steps: int, key, batch_size: int, lr: float):
    """Adam (cosine-decayed lr, to 0.1×) on batches drawn with replacement from ``images`` on
    the device, by `jaxir.training.fit`. Returns (params, losses (steps,))."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    data = jax.numpy.asarray(images)
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.1))

    def batch_fn(k):
        return {"image": data[jax.random.randint(k, (batch_size,), 0, data.shape[0])]}

    out = fit(loss_fn, apply_fn, params, tx, batch_fn, steps=steps, key=key)
    return out.params, out.losses


def train_autoencoder(source: str = "photos", size: int | None = 32, steps: int = 2000, *,
                      key, config: AutoencoderConfig | None = None, batch_size: int = 32,
                      lr: float = 1e-3, loss: str = "l1", latent_weight: float = 1e-6,
                      images=None, num_images: int | None = 2048, return_losses: bool = False):
    """Train an `Autoencoder` on reconstruction; returns ``(graphdef, params)``.

    Per example: ``mean|D(E(x)) − x|`` (``loss="l1"``, LDM's pixel term) or the MSE, plus
    ``latent_weight · mean(z²)`` (:func:`autoencoder_loss`). Images: ``images`` (N, H, W, C)
    in [-1, 1], else :func:`load_images` ``(source, size, num_images)``. ``config`` defaults
    to ``AutoencoderConfig(in_channels=C)``. Adam with a cosine-decayed learning rate through
    `jaxir.training.fit`. With ``return_losses`` also the per-step losses. For long runs use
    ``jaxir train`` with loss kind "autoencoder" (EMA, checkpoints, sharding).
    """
    loss_fn = autoencoder_loss(loss, latent_weight)
    if images is None:
        images = load_images(source, size, num_images)
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
    config = config or AutoencoderConfig(in_channels=images.shape[-1])
    if config.in_channels != images.shape[-1]:
        raise ValueError(f"config.in_channels={config.in_channels} but the images have "
                         f"{images.shape[-1]} channels")
    k_init, k_fit = jax.random.split(key)
    seed = int(jax.random.randint(k_init, (), 0, 2**31 - 1))
    graphdef, params = split_model(Autoencoder(config, rngs=nnx.Rngs(seed)))
    params, losses = _fit(loss_fn, lambda p, k=None: autoencoder_model_fn(graphdef, p), params,
                          images, steps=steps, key=k_fit, batch_size=batch_size, lr=lr)
    return (graphdef, params, losses) if return_losses else (graphdef, params)


def train_latent_diffusion(codec: LatentCodec, sde, unet: UNetConfig, *, key,
                           degrade_fn: Callable, source: str = "photos", size: int | None = 32,
                           steps: int = 2000, batch_size: int = 32, lr: float = 2e-4,
                           images=None, num_images: int | None = 2048,
                           return_losses: bool = False, **loss_options):
    """Train a conditional latent U-Net with `latent_loss`; returns ``(graphdef, params)``.

    ``unet`` must have ``in_channels = out_channels = codec.latent_channels`` and
    ``cond_channels`` = the image channels. Images and optimizer as in
    :func:`train_autoencoder`. For long runs use ``jaxir train`` with loss kind "latent".
    """
    if images is None:
        images = load_images(source, size, num_images)
    images = np.asarray(images, np.float32)
    c = images.shape[-1]
    want = (codec.latent_channels, codec.latent_channels, c)
    got = (unet.in_channels, unet.out_channels, unet.cond_channels)
    if got != want:
        raise ValueError(f"unet (in_channels, out_channels, cond_channels) must be {want} for "
                         f"this codec and {c}-channel images, got {got}")
    k_init, k_fit = jax.random.split(key)
    seed = int(jax.random.randint(k_init, (), 0, 2**31 - 1))
    graphdef, params = split_model(UNet(unet, rngs=nnx.Rngs(seed)))
    loss_fn = latent_loss(codec, sde, degrade_fn=degrade_fn, **loss_options)
    params, losses = _fit(loss_fn, lambda p, k=None: make_model_fn(graphdef, p), params, images,
                          steps=steps, key=k_fit, batch_size=batch_size, lr=lr)
    return (graphdef, params, losses) if return_losses else (graphdef, params)
