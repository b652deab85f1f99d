"""Building blocks shared by the U-Net and the classifier (NHWC throughout).

Initialisation follows the official JAX/TF DDPM and Score-SDE code: variance scaling
(scale 1, fan_avg, uniform) for convolutions and dense layers, and zero for the last
layer of every residual branch (second convolution of a residual block, attention output
projection), so each block starts as the identity (Ho et al. 2020, appendix B; ADM's
`zero_module`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_zeros = nnx.initializers.zeros_init()


def _default_init(key, shape, dtype=jnp.float32):
    """Variance scaling (scale 1, fan_avg, uniform): U(−a, a), a = √(3 / ((fan_in + fan_out)/2)).

    Same distribution as `nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")`
    (fan_in / fan_out from the kernel's last two axes times the receptive field). The
    uniforms are drawn as a flat vector whose length is rounded up to a power of two, so
    eager construction compiles one random kernel per size class instead of one per shape.
    """
    receptive = math.prod(shape[:-2])
    fan_avg = 0.5 * receptive * (shape[-2] + shape[-1])
    limit = math.sqrt(3.0 / fan_avg)
    n = math.prod(shape)
    flat = jax.random.uniform(key, (1 << max(n - 1, 1).bit_length(),), dtype, -limit, limit)
    return flat[:n].reshape(shape)


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs, *, stride: int = 1, zero: bool = False):
    pad = k // 2
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        kernel_init=_zeros if zero else _default_init,
        rngs=rngs,
    )


def _linear(cin: int, cout: int, rngs: nnx.Rngs, *, zero: bool = False):
    return nnx.Linear(cin, cout, kernel_init=_zeros if zero else _default_init, rngs=rngs)


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """DDPM / ADM positional embedding: [cos(t·ω_k), sin(t·ω_k)], ω_k = P^(−k/(dim/2)).

    Args: t (B,) float; dim even. Returns (B, dim). (ADM `timestep_embedding`.)
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


@functools.lru_cache(maxsize=32)
def _fourier_frequencies(half: int, scale: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(half) * scale).astype(np.float32)


def fourier_embedding(t: jax.Array, dim: int, scale: float = 16.0, seed: int = 0) -> jax.Array:
    """Gaussian random Fourier features [sin(2π t W), cos(2π t W)], W ~ N(0, scale²).

    Score-SDE's `GaussianFourierProjection` (Song et al. 2021, NCSN++; Tancik et al. 2020).
    There W is a parameter behind `stop_gradient`; here it is a constant fixed by `seed`,
    so it is not trainable state (no optimiser or weight decay can touch it).
    Args: t (B,) float; dim even. Returns (B, dim).
    """
    w = jnp.asarray(_fourier_frequencies(dim // 2, float(scale), int(seed)))
    args = 2.0 * jnp.pi * t[:, None] * w[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class TimeEmbedding(nnx.Module):
    """t → embed(t · time_scale) → Linear(4c) → SiLU → Linear(4c); output (B, 4·base).

    The sinusoidal / Fourier features are computed in float32 (t · ω reaches ~10³ with the
    default time scale: bfloat16's 8-bit mantissa would scramble their phases) and then cast
    to ``dtype``, the compute dtype of the activations, before the MLP, so a bfloat16 network
    stays bfloat16 (an embedding left in float32 would promote every residual block back to
    float32). ``dtype=None`` (or a dtype of 32 bits or more) keeps float32.
    """

    def __init__(self, cfg, rngs: nnx.Rngs):
        c = cfg.base_channels
        self.kind = cfg.time_embedding
        self.dim = c
        self.scale = cfg.effective_time_scale
        self.fourier_scale = float(cfg.fourier_scale)
        self.fourier_seed = int(cfg.fourier_seed)
        self.dense1 = _linear(c, 4 * c, rngs)
        self.dense2 = _linear(4 * c, 4 * c, rngs)

    def __call__(self, t: jax.Array, dtype=None) -> jax.Array:
        t = jnp.asarray(t, jnp.float32) * self.scale
        if self.kind == "sinusoidal":
            e = sinusoidal_embedding(t, self.dim)
        else:
            e = fourier_embedding(t, self.dim, self.fourier_scale, self.fourier_seed)
        if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
            e = e.astype(dtype)  # a low-precision compute dtype (bfloat16, float16)
        return self.dense2(jax.nn.silu(self.dense1(e)))


def _downsample(x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _upsample(x: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ResBlock(nnx.Module):
    """Residual block with an embedding (ADM `ResBlock`, DDPM `ResnetBlock`).

    h = conv1(resample(SiLU(GN(x)))); h = h + W e (or GN(h)(1 + s) + b with scale-shift norm);
    h = conv2(dropout(SiLU(GN(h)))) (zero-initialised); out = skip(resample(x)) + h, divided
    by √2 when `scale_skip`. `updown` in {None, "up", "down"} resamples inside the block
    (BigGAN / ADM `resblock_updown`: nearest-neighbour up, 2×2 average down).
    """

    def __init__(
        self, cin: int, cout: int, emb_dim: int, cfg, rngs: nnx.Rngs, *, updown: str | None = None
    ):
        self.updown = updown
        self.scale_shift = bool(cfg.use_scale_shift_norm)
        self.scale_skip = bool(cfg.scale_skip)
        self.norm1 = nnx.GroupNorm(cin, num_groups=cfg.num_groups, rngs=rngs)
        self.conv1 = _conv(cin, cout, 3, rngs)
        self.emb = _linear(emb_dim, 2 * cout if self.scale_shift else cout, rngs)
        self.norm2 = nnx.GroupNorm(cout, num_groups=cfg.num_groups, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout)
        self.conv2 = _conv(cout, cout, 3, rngs, zero=True)
        self.skip = _conv(cin, cout, 1, rngs) if cin != cout else None

    def __call__(self, x, emb, key=None, deterministic=True):
        h = jax.nn.silu(self.norm1(x))
        if self.updown == "up":
            h, x = _upsample(h), _upsample(x)
        elif self.updown == "down":
            h, x = _downsample(h), _downsample(x)
        h = self.conv1(h)
        e = self.emb(jax.nn.silu(emb))[:, None, None, :]
        if self.scale_shift:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = self.norm2(h) * (1.0 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = jax.nn.silu(h)
        if not deterministic:
            h = self.dropout(h, deterministic=False, rngs=key)
        h = self.conv2(h)
        out = (x if self.skip is None else self.skip(x)) + h
        return out / math.sqrt(2.0) if self.scale_skip else out


class AttentionBlock(nnx.Module):
    """Multi-head self-attention over the H·W positions, with a residual connection.

    out = x + proj(softmax(q kᵀ / √d) v), q, k, v = Linear(GN(x)) (DDPM `AttnBlock`,
    ADM `AttentionBlock`); `proj` is zero-initialised.
    """

    def __init__(self, ch: int, cfg, rngs: nnx.Rngs):
        heads = ch // cfg.num_head_channels if cfg.num_head_channels else cfg.num_heads
        self.heads = heads
        self.scale_skip = bool(cfg.scale_skip)
        self.norm = nnx.GroupNorm(ch, num_groups=cfg.num_groups, rngs=rngs)
        self.qkv = _linear(ch, 3 * ch, rngs)
        self.proj = _linear(ch, ch, rngs, zero=True)

    def __call__(self, x, emb=None, key=None, deterministic=True):
        b, h, w, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        a = jax.nn.dot_product_attention(q, k, v).reshape(b, h, w, c)
        out = x + self.proj(a)
        return out / math.sqrt(2.0) if self.scale_skip else out


class ResAttn(nnx.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None):
        self.res = res
        self.attn = attn

    def __call__(self, x, emb, key=None, deterministic=True):
        x = self.res(x, emb, key, deterministic)
        return x if self.attn is None else self.attn(x)


class Downsample(nnx.Module):
    """3×3 convolution with stride 2 (padding 1, as ADM / PyTorch)."""

    def __init__(self, ch: int, rngs: nnx.Rngs):
        self.conv = _conv(ch, ch, 3, rngs, stride=2)

    def __call__(self, x, emb=None, key=None, deterministic=True):
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour ×2 followed by a 3×3 convolution."""

    def __init__(self, ch: int, rngs: nnx.Rngs):
        self.conv = _conv(ch, ch, 3, rngs)

    def __call__(self, x, emb=None, key=None, deterministic=True):
        return self.conv(_upsample(x))


def begin_network(module, config, config_type, rngs: nnx.Rngs) -> tuple[object, int]:
    """The start every time-conditioned network shares: check ``config`` is a ``config_type``,
    store it and the `TimeEmbedding` on ``module``; returns ``(config, emb_dim)`` with
    ``emb_dim = 4 · base_channels`` (ADM)."""
    if not isinstance(config, config_type):
        raise ValueError(f"config must be a {config_type.__name__}, got {type(config).__name__}")
    module.config = config
    module.time_embed = TimeEmbedding(config, rngs)
    return config, 4 * config.base_channels


def build_down_path(cfg, emb_dim: int, rngs: nnx.Rngs):
    """The encoder shared by `UNet` and `NoisyClassifier`.

    Returns (blocks, skip_channels, channels): an `nnx.List` of blocks (each called as
    block(x, emb, key, deterministic) and each producing one skip tensor), the channels of
    every skip (input conv first), and the channels at the bottom.
    """
    ch = cfg.base_channels
    skips = [ch]
    blocks = []
    res = cfg.image_size
    last = len(cfg.channel_mults) - 1
    for level, mult in enumerate(cfg.channel_mults):
        for _ in range(cfg.num_res_blocks):
            cout = cfg.base_channels * mult
            attn = AttentionBlock(cout, cfg, rngs) if res in cfg.attention_resolutions else None
            blocks.append(ResAttn(ResBlock(ch, cout, emb_dim, cfg, rngs), attn))
            ch = cout
            skips.append(ch)
        if level != last:
            if cfg.resblock_updown:
                blocks.append(ResBlock(ch, ch, emb_dim, cfg, rngs, updown="down"))
            else:
                blocks.append(Downsample(ch, rngs))
            skips.append(ch)
            res //= 2
    return nnx.List(blocks), skips, ch


def build_middle(ch: int, emb_dim: int, cfg, rngs: nnx.Rngs):
    """ResBlock → attention → ResBlock at the lowest resolution."""
    return nnx.List(
        [
            ResBlock(ch, ch, emb_dim, cfg, rngs),
            AttentionBlock(ch, cfg, rngs),
            ResBlock(ch, ch, emb_dim, cfg, rngs),
        ]
    )


def block_keys(key, n: int):
    """One dropout key per block (None when `key` is None)."""
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


def dropout_key(rngs, deterministic: bool, rate: float):
    """The key for this call's dropout: None when dropout is off, else from `rngs`.

    `rngs` is an `nnx.Rngs` (its "dropout" stream, or its default stream) or a JAX key.
    The model itself holds no RNG state, so its only state is its parameters.
    """
    if deterministic or rate == 0.0:
        return None
    if rngs is None:
        raise ValueError(
            "deterministic=False with dropout > 0 needs rngs= (an nnx.Rngs or a jax.random key)"
        )
    if isinstance(rngs, nnx.Rngs):
        return rngs.dropout()
    return rngs


def check_x_t(cfg, x, t, x_channels: int):
    """Validate x (B, H, W, x_channels) and t (scalar or (B,)); return (x, t as (B,) f32)."""
    x = jnp.asarray(x)
    depth = 2 ** (len(cfg.channel_mults) - 1)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, H, W, {x_channels}) (NHWC), got shape {x.shape}")
    b, h, w, c = x.shape
    if c != x_channels:
        raise ValueError(f"x must have {x_channels} channels (in_channels), got shape {x.shape}")
    if h % depth or w % depth:
        raise ValueError(
            f"x's H and W must be divisible by 2**(len(channel_mults)-1)={depth}, "
            f"got shape {x.shape}"
        )
    t = jnp.asarray(t, dtype=jnp.float32)
    if t.ndim == 0:
        t = jnp.broadcast_to(t, (b,))
    elif t.shape != (b,):
        raise ValueError(f"t must be a scalar or have shape (B,)=({b},), got shape {t.shape}")
    return x, t
