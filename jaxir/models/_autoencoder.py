"""A small convolutional autoencoder for latent diffusion (Rombach et al. 2022, Sec. 3.1), NNX.

Encoder: 3×3 conv → per level ``num_res_blocks`` residual blocks (GroupNorm, SiLU, conv) and a
stride-2 3×3 conv (log2(factor) times) → residual block → GroupNorm, SiLU, 3×3 conv to
``latent_channels``. The decoder mirrors it with nearest-neighbour ×2 upsampling followed by a
3×3 conv. No attention, no time embedding. The latent is deterministic: ``encode(x)`` is the
code itself (LDM's "KL-reg" autoencoder with its tiny KL weight is, in practice, a plain
autoencoder with a weak pull of the latents towards 0; `jaxir.latent.train_autoencoder` uses an
L2 penalty on z for that pull).

Shapes: ``encode``: (B, H, W, in_channels) → (B, H/f, W/f, latent_channels);
``decode``: the reverse. H and W must be divisible by f = ``factor``.

>>> from flax import nnx
>>> import jax.numpy as jnp
>>> ae = Autoencoder(AutoencoderConfig(in_channels=1, base_channels=8, factor=2,
...                                    latent_channels=2, num_groups=4), rngs=nnx.Rngs(0))
>>> ae.encode(jnp.zeros((3, 8, 8, 1))).shape
(3, 4, 4, 2)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from ._config import _check_positive_int
from ._layers import _conv

_FACTORS = (2, 4)


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Structure of an `Autoencoder`.

    Attributes:
      in_channels: image channels (3 RGB, 1 grey).
      base_channels: channels of the full-resolution level.
      factor: spatial downsampling f of the latent, 2 or 4 (LDM's f; SRLDM uses f = 4).
      latent_channels: channels of the latent z (LDM: 3 or 4).
      channel_mults: one multiplier per level, log2(factor) + 1 entries; None means
        (1, 2) for f = 2 and (1, 2, 2) for f = 4.
      num_res_blocks: residual blocks per level, in the encoder and in the decoder.
      num_groups: GroupNorm groups; must divide every channel count.
    """

    in_channels: int = 3
    base_channels: int = 32
    factor: int = 4
    latent_channels: int = 4
    channel_mults: tuple[int, ...] | None = None
    num_res_blocks: int = 1
    num_groups: int = 8

    def __post_init__(self) -> None:
        for name in ("in_channels", "base_channels", "latent_channels", "num_res_blocks",
                     "num_groups"):
            _check_positive_int(name, getattr(self, name))
        if self.factor not in _FACTORS:
            raise ValueError(f"factor must be one of {_FACTORS}, got {self.factor!r}")
        if self.channel_mults is not None:
            mults = tuple(self.channel_mults)
            for m in mults:
                _check_positive_int("every entry of channel_mults", m)
            if len(mults) != self.num_levels + 1:
                raise ValueError(f"channel_mults needs log2(factor) + 1 = {self.num_levels + 1} "
                                 f"entries for factor={self.factor}, got {mults}")
            object.__setattr__(self, "channel_mults", mults)
        for ch in self.channels:
            if ch % self.num_groups:
                raise ValueError(f"num_groups={self.num_groups} must divide every channel count "
                                 f"base_channels * channel_mults = {ch}")

    @property
    def num_levels(self) -> int:
        """Number of ×2 downsamplings, log2(factor)."""
        return int(round(math.log2(self.factor)))

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels per level, full resolution first."""
        mults = self.channel_mults or (1, 2, 2)[: self.num_levels + 1]
        return tuple(self.base_channels * m for m in mults)


class _Res(nnx.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))), with a 1×1 skip when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(cin, num_groups=groups, rngs=rngs)
        self.conv1 = _conv(cin, cout, 3, rngs)
        self.norm2 = nnx.GroupNorm(cout, num_groups=groups, rngs=rngs)
        self.conv2 = _conv(cout, cout, 3, rngs, zero=True)
        self.skip = _conv(cin, cout, 1, rngs) if cin != cout else None

    def __call__(self, x):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class _Up(nnx.Module):
    def __init__(self, ch: int, rngs: nnx.Rngs):
        self.conv = _conv(ch, ch, 3, rngs)

    def __call__(self, x):
        return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class Autoencoder(nnx.Module):
    """``encode(x) -> z``, ``decode(z) -> x̂``, ``__call__(x) = decode(encode(x))``.

    See the module docstring for the architecture and shapes. Its only state is `nnx.Param`s,
    so `jaxir.models.split_model` applies.
    """

    def __init__(self, config: AutoencoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, g, chs = config, config.num_groups, config.channels
        self.enc_in = _conv(c.in_channels, chs[0], 3, rngs)
        enc, ch = [], chs[0]
        for level, width in enumerate(chs):
            for _ in range(c.num_res_blocks):
                enc.append(_Res(ch, width, g, rngs))
                ch = width
            if level < c.num_levels:
                enc.append(_conv(ch, ch, 3, rngs, stride=2))
        enc.append(_Res(ch, ch, g, rngs))
        self.enc = nnx.List(enc)
        self.enc_norm = nnx.GroupNorm(ch, num_groups=g, rngs=rngs)
        self.enc_out = _conv(ch, c.latent_channels, 3, rngs)

        self.dec_in = _conv(c.latent_channels, ch, 3, rngs)
        dec = [_Res(ch, ch, g, rngs)]
        for level in reversed(range(len(chs))):
            for _ in range(c.num_res_blocks):
                dec.append(_Res(ch, chs[level], g, rngs))
                ch = chs[level]
            if level > 0:
                dec.append(_Up(ch, rngs))
        self.dec = nnx.List(dec)
        self.dec_norm = nnx.GroupNorm(ch, num_groups=g, rngs=rngs)
        self.dec_out = _conv(ch, c.in_channels, 3, rngs)

    def _check(self, x, channels: int, name: str, divisible: int):
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ValueError(f"{name} must have shape (B, H, W, {channels}), got {x.shape}")
        if x.shape[1] % divisible or x.shape[2] % divisible:
            raise ValueError(f"{name}: H and W must be divisible by factor={divisible}, "
                             f"got {x.shape}")

    def encode(self, x):
        """(B, H, W, in_channels) → z (B, H/f, W/f, latent_channels)."""
        self._check(x, self.config.in_channels, "x", self.config.factor)
        h = self.enc_in(x)
        for layer in self.enc:
            h = layer(h)
        return self.enc_out(jax.nn.silu(self.enc_norm(h)))

    def decode(self, z):
        """z (B, h, w, latent_channels) → (B, h·f, w·f, in_channels)."""
        self._check(z, self.config.latent_channels, "z", 1)
        h = self.dec_in(z)
        for layer in self.dec:
            h = layer(h)
        return self.dec_out(jax.nn.silu(self.dec_norm(h)))

    def __call__(self, x):
        return self.decode(self.encode(x))
