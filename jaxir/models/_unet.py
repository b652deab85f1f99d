"""The diffusion U-Net (ADM / DDPM++ family), NHWC, as a Flax NNX module.

Architecture (Ho et al. 2020, appendix B; Dhariwal & Nichol 2021, "ADM"; Song et al. 2021,
DDPM++): input conv → per level `num_res_blocks` residual blocks (+ attention at
`attention_resolutions`) and a downsampling → middle (residual, attention, residual) →
per level `num_res_blocks + 1` residual blocks on [h, skip] (+ attention) and an
upsampling → GroupNorm, SiLU, zero-initialised 3×3 conv. Time (and class) embeddings
enter every residual block.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._config import UNetConfig
from ._layers import (
    AttentionBlock,
    ResAttn,
    ResBlock,
    begin_network,
    Upsample,
    _conv,
    block_keys,
    build_down_path,
    build_middle,
    check_x_t,
    dropout_key,
)


def _check_label(cfg: UNetConfig, label, b: int):
    """Return the (B,) int32 labels; None → the null class; value range checked."""
    if cfg.num_classes is None:
        if label is not None:
            raise ValueError("label was given but the model has num_classes=None")
        return None
    if label is None:
        return jnp.full((b,), cfg.num_classes, dtype=jnp.int32)
    label = jnp.asarray(label)
    if not jnp.issubdtype(label.dtype, jnp.integer):
        raise ValueError(
            f"label must be an int array of shape (B,)=({b},), got dtype {label.dtype}"
        )
    if label.ndim == 0:
        label = jnp.broadcast_to(label, (b,))
    elif label.shape != (b,):
        raise ValueError(f"label must be a scalar or have shape (B,)=({b},), got {label.shape}")
    msg = (
        f"label out of range: must be in [0, {cfg.num_classes}] "
        f"({cfg.num_classes} is the null class)"
    )
    if isinstance(label, jax.core.Tracer):
        label = eqx.error_if(label, (label < 0) | (label > cfg.num_classes), msg)
    else:
        lab = np.asarray(label)
        if lab.min() < 0 or lab.max() > cfg.num_classes:
            raise ValueError(f"{msg}; got values in [{lab.min()}, {lab.max()}]")
    return label.astype(jnp.int32)


class UNet(nnx.Module):
    """ε / x̂0 / v / score network: `model(x, t, cond=None, *, label=None, deterministic=True)`.

    Args (call):
      x: (B, H, W, in_channels) float32, H and W divisible by 2**(len(channel_mults) - 1).
      t: continuous time, a scalar or (B,); multiplied by `config.effective_time_scale`
        before the embedding.
      cond: None, or (B, H, W, cond_channels) concatenated to x (SR3 / Palette; the caller
        upsamples the low-quality image to x's size). Required iff cond_channels > 0.
      label: None or int (B,) (or a scalar) in [0, num_classes]; None and num_classes both
        mean the null class (classifier-free guidance). Only when num_classes is set.
      deterministic: dropout is applied only when False; it then needs `rngs`.
      rngs: an `nnx.Rngs` or a `jax.random` key for dropout. The module holds no RNG state.

    Returns: (B, H, W, out_channels). At initialisation the output is exactly zero (the last
    conv is zero-initialised).

    >>> from flax import nnx
    >>> from jaxir.models import UNet, unet_config
    >>> model = UNet(unet_config("tiny"), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 16, 16, 3)), 0.5).shape
    (2, 16, 16, 3)
    """

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        cfg, emb_dim = begin_network(self, config, UNetConfig, rngs)
        self.label_embed = (
            nnx.Embed(cfg.num_classes + 1, emb_dim, rngs=rngs)
            if cfg.num_classes is not None
            else None
        )
        self.in_conv = _conv(cfg.in_channels + cfg.cond_channels, cfg.base_channels, 3, rngs)
        self.down, skips, ch = build_down_path(cfg, emb_dim, rngs)
        self.middle = build_middle(ch, emb_dim, cfg, rngs)
        up = []
        res = cfg.image_size // 2 ** (len(cfg.channel_mults) - 1)
        for level in reversed(range(len(cfg.channel_mults))):
            cout = cfg.base_channels * cfg.channel_mults[level]
            for _ in range(cfg.num_res_blocks + 1):
                attn = AttentionBlock(cout, cfg, rngs) if res in cfg.attention_resolutions else None
                up.append(ResAttn(ResBlock(ch + skips.pop(), cout, emb_dim, cfg, rngs), attn))
                ch = cout
            if level:
                up.append(
                    ResBlock(ch, ch, emb_dim, cfg, rngs, updown="up")
                    if cfg.resblock_updown
                    else Upsample(ch, rngs)
                )
                res *= 2
        self.up = nnx.List(up)
        self.out_norm = nnx.GroupNorm(ch, num_groups=cfg.num_groups, rngs=rngs)
        self.out_conv = _conv(ch, cfg.out_channels, 3, rngs, zero=True)

    def __call__(self, x, t, cond=None, *, label=None, deterministic: bool = True, rngs=None):
        cfg = self.config
        x, t = check_x_t(cfg, x, t, cfg.in_channels)
        b, h, w, _ = x.shape
        if isinstance(cond, dict):
            raise ValueError(
                "cond must be None or an array (B, H, W, cond_channels); the dict form "
                "{'image', 'label'} belongs to make_model_fn's model_fn"
            )
        if cfg.cond_channels == 0 and cond is not None:
            raise ValueError("cond was given but the model has cond_channels=0")
        if cfg.cond_channels > 0:
            want = (b, h, w, cfg.cond_channels)
            if cond is None:
                raise ValueError(f"cond is required with shape {want} (cond_channels > 0)")
            cond = jnp.asarray(cond)
            if cond.shape != want:
                raise ValueError(f"cond must have shape {want}, got {cond.shape}")
            x = jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)
        label = _check_label(cfg, label, b)

        emb = self.time_embed(t, x.dtype)  # float32 features, cast to the activations' dtype
        if self.label_embed is not None:
            emb = emb + self.label_embed(label)
        key = dropout_key(rngs, deterministic, cfg.dropout)
        keys = block_keys(key, len(self.down) + len(self.middle) + len(self.up))

        hs = [self.in_conv(x)]
        for blk in self.down:
            hs.append(blk(hs[-1], emb, keys.pop(), deterministic))
        hid = hs[-1]
        for blk in self.middle:
            hid = blk(hid, emb, keys.pop(), deterministic)
        for blk in self.up:
            if isinstance(blk, ResAttn):
                hid = jnp.concatenate([hid, hs.pop()], axis=-1)
            hid = blk(hid, emb, keys.pop(), deterministic)
        return self.out_conv(jax.nn.silu(self.out_norm(hid)))
