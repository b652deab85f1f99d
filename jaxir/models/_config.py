"""Frozen configurations for the networks of `jaxir.models` and their named presets.

A config is a hashable frozen dataclass: it is static structure (it decides which layers
exist), never data. Every config validates itself on construction, so a mistake (a group
count that does not divide a channel count, an attention resolution the network never
reaches) raises a `ValueError` naming the field before any parameter is allocated.

Measured (float32; parameters from `param_count` on `nnx.eval_shape`; forward = one jitted
call after compilation, on the 2-core development CPU, shared, so ±30 %):

=========  ===========================================  ===========  ==========================
preset     what                                         parameters   CPU forward
=========  ===========================================  ===========  ==========================
tiny       U-Net for tests: base 16, mults (1, 2),          164,563  1.3 ms (8×8, batch 2),
           1 block, attention only in the middle                     9.6 ms (32×32, batch 2)
small      U-Net for CPU demos: base 32, (1, 2, 2),       1,624,323  7.7 ms (16×16, batch 2),
           2 blocks, attention at 16, 4 heads                        0.86 s (32×32, batch 64)
base       DDPM CIFAR-10 (Ho et al. 2020): base 128,     35,746,307  84 ms (32×32, batch 1),
           (1, 2, 2, 2), 2 blocks, attention at 16                   0.52 s (32×32, batch 8)
adm64      ADM ImageNet-64, class-conditional           295,900,035  2.3 s (64×64, batch 1)
tiny clf   NoisyClassifier for tests, 10 classes             76,458
small clf  NoisyClassifier for CPU demos, 10 classes        642,218
=========  ===========================================  ===========  ==========================

The published DDPM CIFAR-10 network has 35.7M parameters; `base` has 35,746,307. The
published ADM ImageNet-64 network (~296M) has 6 output channels (it learns the variance);
`adm64` keeps out_channels=3 (ε only) unless overridden (+5,187 parameters for 6).
Compilation of a forward takes ~1–2 s (tiny, small, base) and ~8 s (adm64) on that CPU;
constructing a model takes ~2–4 s eagerly (one random kernel per power-of-two size);
`nnx.jit(lambda: UNet(config, rngs=nnx.Rngs(0)))()` builds it in one compiled call.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_TIME_EMBEDDINGS = ("sinusoidal", "fourier")


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _as_int_tuple(cfg: Any, name: str, allow_empty: bool) -> tuple[int, ...]:
    value = getattr(cfg, name)
    if isinstance(value, int) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a tuple of ints, got {value!r}")
    value = tuple(value)
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for v in value:
        _check_positive_int(f"every entry of {name}", v)
    object.__setattr__(cfg, name, value)  # lists become tuples so the config stays hashable
    return value


def _validate_common(cfg: Any) -> None:
    """Checks shared by the U-Net and the classifier (their down paths are the same)."""
    for name in (
        "in_channels",
        "base_channels",
        "num_res_blocks",
        "num_heads",
        "num_groups",
        "image_size",
    ):
        _check_positive_int(name, getattr(cfg, name))
    mults = _as_int_tuple(cfg, "channel_mults", allow_empty=False)
    attn = _as_int_tuple(cfg, "attention_resolutions", allow_empty=True)
    if cfg.base_channels % 2:
        raise ValueError(f"base_channels must be even (time embedding), got {cfg.base_channels}")
    for m in (1, *mults):
        ch = cfg.base_channels * m
        if ch % cfg.num_groups:
            raise ValueError(
                f"num_groups={cfg.num_groups} must divide every channel count "
                f"base_channels * channel_mults = {ch}"
            )
    factor = 2 ** (len(mults) - 1)
    if cfg.image_size % factor:
        raise ValueError(
            f"image_size={cfg.image_size} must be divisible by 2**(len(channel_mults)-1)={factor}"
        )
    reached = {cfg.image_size // 2**i: i for i in range(len(mults))}
    for r in attn:
        if r not in reached:
            raise ValueError(
                f"attention_resolutions entry {r} is not a resolution of this network; with "
                f"image_size={cfg.image_size} the levels are {sorted(reached, reverse=True)}"
            )
    if cfg.num_head_channels is not None:
        _check_positive_int("num_head_channels", cfg.num_head_channels)
    # Attention runs at the listed levels and always in the middle (deepest level).
    attn_levels = {reached[r] for r in attn} | {len(mults) - 1}
    for level in attn_levels:
        ch = cfg.base_channels * mults[level]
        if cfg.num_head_channels is not None and ch % cfg.num_head_channels:
            raise ValueError(
                f"num_head_channels={cfg.num_head_channels} must divide the attention channels {ch}"
            )
        if cfg.num_head_channels is None and ch % cfg.num_heads:
            raise ValueError(f"num_heads={cfg.num_heads} must divide the attention channels {ch}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.time_embedding not in _TIME_EMBEDDINGS:
        raise ValueError(
            f"time_embedding must be one of {_TIME_EMBEDDINGS}, got {cfg.time_embedding!r}"
        )
    if cfg.time_scale is not None and not cfg.time_scale > 0:
        raise ValueError(f"time_scale must be positive or None, got {cfg.time_scale}")
    if not cfg.fourier_scale > 0:
        raise ValueError(f"fourier_scale must be positive, got {cfg.fourier_scale}")


class _TimeMixin:
    time_embedding: str
    time_scale: float | None

    @property
    def effective_time_scale(self) -> float:
        """`time_scale`, or its default when None: 1000 (sinusoidal), 1 (fourier)."""
        if self.time_scale is not None:
            return float(self.time_scale)
        return 1000.0 if self.time_embedding == "sinusoidal" else 1.0


@dataclasses.dataclass(frozen=True)
class _DownPath(_TimeMixin):
    """The fields the U-Net and the classifier share (their down paths are the same), with
    the U-Net's defaults; `UNetConfig` documents them. A subclass that redeclares a field
    changes its default and keeps its place."""

    in_channels: int = 3
    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    image_size: int = 32
    num_heads: int = 1
    num_head_channels: int | None = None
    dropout: float = 0.0
    num_groups: int = 32
    time_embedding: str = "sinusoidal"
    time_scale: float | None = None
    fourier_scale: float = 16.0
    fourier_seed: int = 0
    resblock_updown: bool = False
    use_scale_shift_norm: bool = False
    scale_skip: bool = False


@dataclasses.dataclass(frozen=True)
class UNetConfig(_DownPath):
    """Structure of a `UNet` (ADM / DDPM++ family).

    Attributes:
      in_channels: channels of the noisy image x.
      out_channels: channels of the prediction (ε, x̂0, v, score, velocity...).
      base_channels: channels of the first level; level i has base_channels * channel_mults[i].
      channel_mults: one multiplier per resolution level; the network downsamples
        len(channel_mults) - 1 times, so H and W must be divisible by 2**(len - 1).
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attention_resolutions: spatial sizes, relative to `image_size`, at which self-attention
        follows each residual block (DDPM convention, e.g. (16,) for 32×32 images). The middle
        block always has attention. The network runs on any divisible size; attention stays
        at the same levels.
      image_size: the training resolution; only used to map `attention_resolutions` to levels.
      num_heads: attention heads (ignored when `num_head_channels` is set).
      num_head_channels: channels per head (ADM); heads = channels // num_head_channels.
      dropout: dropout rate inside the residual blocks (before their second convolution).
      num_groups: GroupNorm groups; must divide every channel count.
      time_embedding: "sinusoidal" (DDPM / ADM positional embedding, max period 10000) or
        "fourier" (Gaussian random Fourier features, Score-SDE NCSN++).
      time_scale: t is multiplied by this before the embedding. None picks 1000 for
        "sinusoidal" (a continuous t in [0, 1] looks like a DDPM index) and 1 for "fourier".
      fourier_scale: standard deviation of the Fourier frequencies (16 in NCSN++).
      fourier_seed: seed of the fixed, non-trainable Fourier frequencies.
      num_classes: None, or the number of classes; the embedding table then has
        num_classes + 1 rows, index num_classes (= `null_label`) being the "no class" token
        of classifier-free guidance.
      cond_channels: channels of an image condition concatenated to x (SR3 / Palette), or 0.
      resblock_updown: BigGAN-style residual up/down blocks (ADM) instead of a strided conv
        (down) and nearest-neighbour + conv (up).
      use_scale_shift_norm: ADM's adaptive GroupNorm h = norm(h)·(1 + s) + b from the
        embedding, instead of adding the embedding to the features.
      scale_skip: divide every residual sum by √2 (DDPM++ `skip_rescale`).
    """

    out_channels: int = 3
    num_classes: int | None = None
    cond_channels: int = 0

    def __post_init__(self) -> None:
        _validate_common(self)
        _check_positive_int("out_channels", self.out_channels)
        if self.num_classes is not None:
            _check_positive_int("num_classes", self.num_classes)
        if not isinstance(self.cond_channels, int) or self.cond_channels < 0:
            raise ValueError(f"cond_channels must be an int >= 0, got {self.cond_channels!r}")

    @property
    def null_label(self) -> int | None:
        """The classifier-free-guidance "no class" index (num_classes), or None."""
        return self.num_classes


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(_DownPath):
    """Structure of a `NoisyClassifier`: the U-Net's down path and middle block, then
    GroupNorm, SiLU, global average pooling and a linear head (ADM's encoder classifier).

    The fields mean what they mean in `UNetConfig`; `num_classes` is required.
    """

    num_classes: int = 10
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = ()
    num_groups: int = 8

    def __post_init__(self) -> None:
        _validate_common(self)
        _check_positive_int("num_classes", self.num_classes)


_UNET_PRESETS: dict[str, UNetConfig] = {
    # Tests: forward on 8×8 … 32×32 in milliseconds once compiled; attention only in the
    # middle block (add attention_resolutions=(8,) for attention at the 8×8 level).
    "tiny": UNetConfig(
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        image_size=16,
        num_groups=8,
    ),
    # CPU demos (~1.7M parameters) on 32×32 (or 28×28 with image_size=28 and 2 levels).
    "small": UNetConfig(
        base_channels=32,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        image_size=32,
        num_heads=4,
        num_groups=8,
    ),
    # The published DDPM CIFAR-10 network (Ho et al. 2020, 35.7M parameters): UNetConfig's
    # defaults (128 channels, mults (1, 2, 2, 2), 2 blocks, attention at 16, 32 px) + dropout.
    "base": UNetConfig(dropout=0.1),
    # ADM ImageNet 64×64, class-conditional (Dhariwal & Nichol 2021, guided-diffusion flags).
    "adm64": UNetConfig(
        base_channels=192,
        channel_mults=(1, 2, 3, 4),
        num_res_blocks=3,
        attention_resolutions=(32, 16, 8),
        image_size=64,
        num_head_channels=64,
        dropout=0.1,
        num_classes=1000,
        resblock_updown=True,
        use_scale_shift_norm=True,
    ),
}

_CLASSIFIER_PRESETS: dict[str, ClassifierConfig] = {
    "tiny": ClassifierConfig(
        num_classes=10,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        image_size=16,
        num_groups=8,
    ),
    # the down path of the "small" U-Net
    "small": ClassifierConfig(num_classes=10, **{
        f.name: getattr(_UNET_PRESETS["small"], f.name) for f in dataclasses.fields(_DownPath)}),
}


def _preset(kind: str, presets: dict[str, Any], name: str, overrides: dict[str, Any]) -> Any:
    if name not in presets:
        raise ValueError(f"unknown {kind} preset {name!r}; choose one of {sorted(presets)}")
    cfg = presets[name]
    fields = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown {type(cfg).__name__} field(s) {unknown}; fields: {sorted(fields)}"
        )
    return dataclasses.replace(cfg, **overrides)


def unet_config(name: str = "tiny", **overrides: Any) -> UNetConfig:
    """A named `UNetConfig` preset with keyword overrides.

    Presets: "tiny" (tests), "small" (CPU demos), "base" (DDPM CIFAR-10, 35.7M),
    "adm64" (ADM ImageNet-64, class-conditional, ~296M). See the module docstring for the
    measured parameter counts.

    >>> unet_config("tiny", in_channels=1, out_channels=1).base_channels
    16
    """
    return _preset("U-Net", _UNET_PRESETS, name, overrides)


def classifier_config(name: str = "tiny", **overrides: Any) -> ClassifierConfig:
    """A named `ClassifierConfig` preset ("tiny" or "small") with keyword overrides.

    >>> classifier_config("tiny", num_classes=3).num_classes
    3
    """
    return _preset("classifier", _CLASSIFIER_PRESETS, name, overrides)
