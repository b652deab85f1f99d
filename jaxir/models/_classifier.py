"""Time-conditioned classifier p(y | x_t) for classifier guidance (ADM's encoder U-Net).

Architecture (Dhariwal & Nichol 2021, `EncoderUNetModel` with average pooling): the
U-Net's input conv, down path and middle block, then GroupNorm, SiLU, global average
pooling over H×W and a linear head. ADM zero-initialises the head; here it has the default
initialisation so that ∇_x log p(y | x_t) is not identically zero before training.
"""

from __future__ import annotations

import jax
from flax import nnx

from ._config import ClassifierConfig
from ._layers import (
    begin_network,
    _conv,
    _linear,
    block_keys,
    build_down_path,
    build_middle,
    check_x_t,
    dropout_key,
)


class NoisyClassifier(nnx.Module):
    """Logits of p(y | x_t): `clf(x, t, *, deterministic=True, rngs=None) -> (B, num_classes)`.

    Args (call): x (B, H, W, in_channels) float32 with H, W divisible by
    2**(len(channel_mults) - 1); t a scalar or (B,) continuous time; `deterministic` and
    `rngs` as in `UNet`.

    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> from jaxir.models import NoisyClassifier, classifier_config
    >>> clf = NoisyClassifier(classifier_config("tiny"), rngs=nnx.Rngs(0))
    >>> clf(jnp.zeros((2, 16, 16, 3)), 0.3).shape
    (2, 10)
    """

    def __init__(self, config: ClassifierConfig, *, rngs: nnx.Rngs):
        cfg, emb_dim = begin_network(self, config, ClassifierConfig, rngs)
        self.in_conv = _conv(cfg.in_channels, cfg.base_channels, 3, rngs)
        self.down, _, ch = build_down_path(cfg, emb_dim, rngs)
        self.middle = build_middle(ch, emb_dim, cfg, rngs)
        self.out_norm = nnx.GroupNorm(ch, num_groups=cfg.num_groups, rngs=rngs)
        self.head = _linear(ch, cfg.num_classes, rngs)

    def __call__(self, x, t, *, deterministic: bool = True, rngs=None):
        cfg = self.config
        x, t = check_x_t(cfg, x, t, cfg.in_channels)
        emb = self.time_embed(t, x.dtype)
        key = dropout_key(rngs, deterministic, cfg.dropout)
        keys = block_keys(key, len(self.down) + len(self.middle))
        h = self.in_conv(x)
        for blk in (*self.down, *self.middle):
            h = blk(h, emb, keys.pop(), deterministic)
        h = jax.nn.silu(self.out_norm(h)).mean(axis=(1, 2))
        return self.head(h)
