"""Latent diffusion for restoration (SRLDM; Rombach et al. 2022, Sec. 4.4 and appendix).

Two stages. (1) A convolutional autoencoder (`jaxir.models.Autoencoder`, factor f ∈ {2, 4})
trained on reconstruction alone (:func:`train_autoencoder`; L1 or MSE plus a tiny L2 pull of
z towards 0, the role of LDM's KL weight 1e-6). (2) A conditional ε-network on its latents:
``z_0 = s·E(x_0)`` (s = :func:`latent_scale`, LDM's ``scale_factor`` = 1/std(z), so the latent
has unit variance like the diffusion prior), ``z_t = α z_0 + σ ε``, and the network sees
``concat[z_t, c]`` where ``c`` is **the LQ image resized to the latent resolution**
(H/f × W/f, by f×f block averaging; it is not encoded). This is SRLDM's conditioning: the
low-resolution image is concatenated to the U-Net's input (their τ_θ is the identity); with
4× SR and f = 4 it is the raw LQ image itself. Restoration (:func:`latent_restore`) runs any
core sampler in latent space with that condition and decodes: ``x̂ = D(z_0 / s)``.

Pieces:

- :class:`LatentCodec` — ``encode``/``decode`` as pure functions plus the factor and latent
  channels; :func:`autoencoder_codec` builds one from ``(graphdef, params)``. Any pair of
  functions works (tests use a linear codec with known matrices).
- :func:`latent_loss` — ``loss_fn(model_fn, batch, key)`` of the `jaxir.training` contract
  (encodes ``batch["image"]``, makes the LQ with ``degrade_fn`` unless the batch has it, and
  applies `jaxir.training.denoising_loss` to the latents).
- :func:`autoencoder_loss` / :func:`autoencoder_model_fn` — stage 1 in the same contract, so
  ``jaxir train --config autoencoder_photos --workdir runs/ae`` trains the autoencoder like any
  other model (loss kind ``"autoencoder"``; checkpoints, resume, sharding) and writes
  ``runs/ae/autoencoder.npz`` (EMA params and latent scale) when it finishes; a latent run's
  ``loss.options["autoencoder"]`` may name that file or the workdir.
- :func:`train_autoencoder`, :func:`train_latent_diffusion` — small training loops on images
  held in memory (one jitted optax step per iteration), for tests and CPU demos.
- :func:`save_autoencoder` / :func:`load_autoencoder` — one ``.npz`` (arrays keyed by NNX path,
  the config and the latent scale as JSON bytes under ``"__config__"``; read with
  ``allow_pickle=False``), like `jaxir.priors`.

Why a latent prior does not plug into DDRM / ΠGDM
-------------------------------------------------
Training-free solvers for linear inverse problems (DDRM, DDNM, ΠGDM; `jaxir.inverse`) rely on
the measurement being a *linear* function of the variable being diffused, ``y = A x + n``:
DDRM runs its diffusion in the spectral basis of A's SVD and treats each singular direction in
closed form, and ΠGDM's guidance is a Gaussian likelihood whose covariance
``r² A Aᵀ + σ_y² I`` needs A to be a matrix. With a latent prior the diffused variable is z,
and the measurement is ``y = A(D(z)) + n`` with D the decoder, a deep nonlinear network.
``A∘D`` has no SVD, its Jacobian changes from point to point, and the linear-Gaussian
structure that makes those updates exact (or nearly so) is gone. Working around it in pixel
space — decode ``ẑ_0``, apply DDRM's / DDNM's projection onto ``{x : A x = y}``, re-encode —
does not fix this: the projected image generally leaves the decoder's range, ``E∘D`` is not a
projection, and the encode/decode round trip undoes part of the correction at every step, so
the iterates are neither consistent with y nor on the learned manifold. This is why the
literature reports that latent priors do not transfer to these solvers as they are, and why
latent-space posterior samplers change the algorithm instead: PSLD (Rout et al. 2023) adds to
a DPS-style gradient (taken through D) a "gluing" term that keeps ``D(ẑ_0)`` a fixed point of
encode∘decode, and ReSample (Song et al. 2024) enforces data consistency by an optimisation
over z through D at selected steps and then re-noises the result back onto the diffusion
trajectory (stochastic resampling). The supervised route of this module (SRLDM) sidesteps the
question: the LQ image is an input of the latent network, and no operator is ever inverted.

Example (tiny, runs in seconds):

>>> import jax
>>> from jaxir import latent, sdes
>>> from jaxir.models import AutoencoderConfig
>>> cfg = AutoencoderConfig(in_channels=1, base_channels=8, factor=2, latent_channels=2,
...                         num_groups=4)
>>> graphdef, params = latent.train_autoencoder("digits", size=8, steps=2, batch_size=4,
...                                             config=cfg, key=jax.random.key(0))
>>> codec = latent.autoencoder_codec(graphdef, params)
>>> codec.encode(jax.numpy.zeros((1, 8, 8, 1))).shape
(1, 4, 4, 2)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .models import Autoencoder, AutoencoderConfig, UNet, UNetConfig, make_model_fn, split_model
from .samplers import Samples, ddim_sample, ddpm_sample

__all__ = [
    "AUTOENCODER_FILE",
    "AutoencoderFile",
    "LatentCodec",
    "autoencoder_codec",
    "autoencoder_loss",
    "autoencoder_model_fn",
    "latent_loss",
    "latent_restore",
    "latent_scale",
    "load_autoencoder",
    "load_images",
    "resolve_autoencoder",
    "save_autoencoder",
    "to_latent_resolution",
    "train_autoencoder",
    "train_latent_diffusion",
]

_CONFIG_KEY = "__config__"
_SAMPLERS = ("ddim", "ddpm")


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


# ---- data and a generic in-memory training loop ------------------------------------------------
def load_images(source: str = "photos", size: int | None = 32, num_images: int | None = 2048,
                **source_kwargs) -> np.ndarray:
    """Up to ``num_images`` images of a `jaxir.data` source spec as float32 (N, H, W, C) in [-1, 1]."""
    from .data import get_source, images_to_float

    src = get_source(source, size=size, **source_kwargs)
    n = len(src) if num_images is None else min(int(num_images), len(src))
    if n < 1:
        raise ValueError(f"source {source!r} has no images")
    return images_to_float(np.stack([src[i]["image"] for i in range(n)]))


def _fit(objective, params, images, *, steps: int, key, batch_size: int, lr: float):
    """Adam (cosine-decayed lr) on ``objective(params, batch, key) -> (loss, aux)`` for ``steps``
    steps; batches are drawn with replacement from ``images`` on the device. One jitted step per
    iteration (a ``lax.scan`` over convolution steps runs ~20× slower on XLA:CPU). Deterministic
    given ``key``. Returns (params, losses (steps,))."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    data = jnp.asarray(images)
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.1))

    @jax.jit
    def step(p, opt, k):
        k_idx, k_loss = jax.random.split(k)
        batch = data[jax.random.randint(k_idx, (batch_size,), 0, data.shape[0])]
        (loss, _), grads = jax.value_and_grad(objective, has_aux=True)(p, batch, k_loss)
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, loss

    opt, losses = tx.init(params), []
    for k in jax.random.split(key, steps):
        params, opt, loss = step(params, opt, k)
        losses.append(loss)
    return params, jnp.stack(losses)


# ---- stage 1: the autoencoder ------------------------------------------------------------------
def train_autoencoder(source: str = "photos", size: int | None = 32, steps: int = 2000, *,
                      key, config: AutoencoderConfig | None = None, batch_size: int = 32,
                      lr: float = 1e-3, loss: str = "l1", latent_weight: float = 1e-6,
                      images=None, num_images: int | None = 2048, return_losses: bool = False):
    """Train an `Autoencoder` on reconstruction; returns ``(graphdef, params)``.

    Per example: ``mean|D(E(x)) − x|`` (``loss="l1"``, LDM's pixel term) or the MSE, plus
    ``latent_weight · mean(z²)``. Images: ``images`` (N, H, W, C) in [-1, 1], else
    :func:`load_images` ``(source, size, num_images)``. ``config`` defaults to
    ``AutoencoderConfig(in_channels=C)``. With ``return_losses`` also the per-step losses.
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

    def objective(p, x, key):
        value, aux = loss_fn(autoencoder_model_fn(graphdef, p), {"image": x}, key)
        return value, aux["reconstruction"]

    params, losses = _fit(objective, params, images, steps=steps, key=k_fit,
                          batch_size=batch_size, lr=lr)
    return (graphdef, params, losses) if return_losses else (graphdef, params)


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


class AutoencoderFile(NamedTuple):
    """What :func:`load_autoencoder` returns."""

    config: AutoencoderConfig
    graphdef: Any
    params: Any
    latent_scale: float

    def codec(self) -> LatentCodec:
        return autoencoder_codec(self.graphdef, self.params, self.latent_scale)


def _flat(params) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in leaves]


def save_autoencoder(path, config: AutoencoderConfig, params, *, latent_scale: float = 1.0):
    """Write ``params`` (keyed by NNX path) and ``{"config": ..., "latent_scale": ...}`` (JSON
    bytes under ``"__config__"``) to one ``.npz``. Returns the path."""
    path = Path(path)
    arrays = {k: np.asarray(jax.device_get(v), np.float32) for k, v in _flat(params)}
    meta = {"kind": "autoencoder", "config": {k: getattr(config, k) for k in
                                              config.__dataclass_fields__},
            "latent_scale": float(latent_scale)}
    arrays[_CONFIG_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")  # written whole, then renamed: atomic
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


AUTOENCODER_FILE = "autoencoder.npz"
"""The file an autoencoder run of ``jaxir train`` (loss kind "autoencoder") exports into its
workdir, and the name a latent run's copy of its autoencoder has in its own workdir."""


def resolve_autoencoder(path) -> Path:
    """``path`` itself, or ``path/autoencoder.npz`` when ``path`` is a directory (the workdir of
    an autoencoder run); `FileNotFoundError` naming what is missing."""
    path = Path(path)
    if path.is_dir():
        if not (path / AUTOENCODER_FILE).is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is a directory without {AUTOENCODER_FILE} (train stage 1 there "
                "with `jaxir train --config autoencoder_photos --workdir DIR`; the file is "
                "written when the run finishes)")
        return path / AUTOENCODER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"autoencoder file {str(path)!r} does not exist (train stage 1 "
                                "with `jaxir train --config autoencoder_photos --workdir DIR`)")
    return path


def load_autoencoder(path) -> AutoencoderFile:
    """Read a :func:`save_autoencoder` file (``np.load(allow_pickle=False)``), or the
    ``autoencoder.npz`` of an autoencoder run's workdir when ``path`` is a directory;
    `ValueError` if it is not one or its arrays do not match its config (naming the parameter)."""
    path = resolve_autoencoder(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if _CONFIG_KEY not in arrays:
        raise ValueError(f"{str(path)!r} has no {_CONFIG_KEY!r} entry: not a jaxir autoencoder")
    meta = json.loads(arrays.pop(_CONFIG_KEY).tobytes().decode())
    if meta.get("kind") != "autoencoder":
        raise ValueError(f"{str(path)!r} is not an autoencoder file (kind={meta.get('kind')!r})")
    cfg = dict(meta["config"])
    if cfg.get("channel_mults") is not None:
        cfg["channel_mults"] = tuple(cfg["channel_mults"])
    config = AutoencoderConfig(**cfg)
    graphdef, abstract = split_model(nnx.eval_shape(lambda: Autoencoder(config,
                                                                         rngs=nnx.Rngs(0))))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values = []
    for p, leaf in leaves:
        k = jax.tree_util.keystr(p)
        v = arrays.pop(k, None)
        if v is None or tuple(v.shape) != tuple(leaf.shape):
            got = "missing" if v is None else f"shape {tuple(v.shape)}"
            raise ValueError(f"{str(path)!r}: parameter {k} is {got}, its config needs "
                             f"{tuple(leaf.shape)}")
        values.append(jnp.asarray(v, leaf.dtype))
    if arrays:
        raise ValueError(f"{str(path)!r} has parameters its config does not use: "
                         f"{sorted(arrays)[:3]}")
    params = jax.tree_util.tree_unflatten(treedef, values)
    return AutoencoderFile(config, graphdef, params, float(meta["latent_scale"]))


# ---- stage 2: conditional diffusion on the latents ---------------------------------------------
def latent_loss(codec: LatentCodec, sde, *, degrade_fn: Callable | None = None,
                cond_key: str = "lq", **options) -> Callable:
    """SRLDM's loss: `jaxir.training.denoising_loss` on ``z_0 = encode(x_0)`` with the LQ at the
    latent resolution (:func:`to_latent_resolution`) as the image condition.

    ``batch``: ``{"image": x_0 (B, H, W, C), cond_key?: LQ}``; without the LQ entry it is
    ``degrade_fn(key, x_0)``. ``options`` (``prediction``, ``weighting``, ``cond_drop_prob``,
    ...) go to `denoising_loss`. The encoder is frozen (``stop_gradient``). Returns
    ``loss_fn(model_fn, batch, key) -> (loss, aux)``; ``model_fn`` acts on latents with
    ``cond_channels`` = the image channels.
    """
    from .training import denoising_loss
    from .training._losses import _x0

    inner = denoising_loss(sde, image_cond_key="lq", **options)

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_loss = jax.random.split(key)
        if isinstance(batch, dict) and cond_key in batch:
            lq = jnp.asarray(batch[cond_key], x0.dtype)
        elif degrade_fn is not None:
            lq = degrade_fn(k_lq, x0)
        else:
            raise ValueError(f"batch has no {cond_key!r} entry (the LQ image) and no degrade_fn "
                             "was given to make it")
        z0 = jax.lax.stop_gradient(codec.encode(x0))
        c = to_latent_resolution(lq, z0.shape[1:3])
        return inner(model_fn, {"image": z0, "lq": c}, k_loss)

    return loss_fn


def train_latent_diffusion(codec: LatentCodec, sde, unet: UNetConfig, *, key,
                           degrade_fn: Callable, source: str = "photos", size: int | None = 32,
                           steps: int = 2000, batch_size: int = 32, lr: float = 2e-4,
                           images=None, num_images: int | None = 2048,
                           return_losses: bool = False, **loss_options):
    """Train a conditional latent U-Net with :func:`latent_loss`; returns ``(graphdef, params)``.

    ``unet`` must have ``in_channels = out_channels = codec.latent_channels`` and
    ``cond_channels`` = the image channels. Images as in :func:`train_autoencoder`. For long
    runs use the `jaxir.training` loop with :func:`latent_loss` instead (EMA, checkpoints).
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

    def objective(p, x, k):
        return loss_fn(make_model_fn(graphdef, p), {"image": x}, k)

    params, losses = _fit(objective, params, images, steps=steps, key=k_fit,
                          batch_size=batch_size, lr=lr)
    return (graphdef, params, losses) if return_losses else (graphdef, params)


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
