"""The "FID Inception": InceptionV3 as used for FID/KID, as a Flax NNX module (NHWC).

This is the network of pytorch-fid (``pytorch_fid/inception.py``, ``fid_inception_v3``), a port
of TensorFlow's 2015-12-05 Inception graph that the original TTUR FID code uses. It has
torchvision's ``Inception3`` layout (Szegedy et al., CVPR 2016, "Rethinking the Inception
Architecture"), except for TensorFlow's pooling in the pool branches of the mixed blocks:

- Mixed_5b/5c/5d (type A), Mixed_6b–6e (type C) and Mixed_7b (type E) average-pool their pool
  branch over 3×3 windows, stride 1, padding 1, *excluding* the padded zeros from the count;
- Mixed_7c (type E) max-pools its pool branch (3×3, stride 1, padding 1) instead.

Every convolution is a ``BasicConv2d``: conv without bias → BatchNorm (ε = 0.001, running
statistics, i.e. inference mode) → ReLU. Only the pool3 path is built (no auxiliary head,
dropout or classifier): :class:`InceptionV3` maps images (N, H, W, 3) in [-1, 1] to the
(N, 2048) global average of Mixed_7c, after a bilinear resize to 299×299 (half-pixel centres
without antialiasing, which is torch's ``F.interpolate(..., align_corners=False)``).

Weights: no PyPI package ships them. :func:`load_inception` reads an ``.npz`` keyed by the
state-dict names of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torch layouts,
e.g. ``Conv2d_1a_3x3.conv.weight`` (O, I, kh, kw), ``Mixed_5b.branch1x1.bn.running_mean``),
written once by ``experiments/tools/convert_inception_weights.py`` in an environment with torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..precision import hconv_general_dilated

INPUT_SIZE = 299  # pytorch-fid resizes every image to 299×299 before the network
FEATURE_DIM = 2048
WEIGHTS_ENV = "JAXIR_INCEPTION_WEIGHTS"
_CONVERTER = "experiments/tools/convert_inception_weights.py"
_BN_EPS = 1e-3


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nnx.Module):
    """Conv (no bias) → inference BatchNorm (ε = 0.001) → ReLU; padding is symmetric."""

    def __init__(self, c_in, c_out, kernel, stride=1, padding=0, *, rngs: nnx.Rngs):
        (ph, pw), kernel = _pair(padding), _pair(kernel)
        self.conv = nnx.Conv(
            c_in,
            c_out,
            kernel,
            strides=stride,
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            # exact (jaxir.precision): the features must match the float32 reference on
            # every backend, where the default would be TF32 / one bf16 pass
            conv_general_dilated=hconv_general_dilated,
            kernel_init=nnx.initializers.variance_scaling(2.0, "fan_in", "normal"),
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(c_out, use_running_average=True, epsilon=_BN_EPS, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x):
    """3×3, stride 1, padding 1, the mean over the pixels inside the image only (TF style)."""
    return nnx.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x):
    """3×3, stride 1, padding 1 (padding never wins a max)."""
    return nnx.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _reduce_pool(x):
    """3×3, stride 2, no padding: halves H and W (rounding down after removing 2)."""
    return nnx.max_pool(x, (3, 3), (2, 2), "VALID")


class _MixedA(nnx.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1(pool_features)."""

    def __init__(self, c_in, pool_features, *, rngs):
        self.branch1x1 = BasicConv2d(c_in, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return jnp.concatenate([self.branch1x1(x), b5, b3, bp], axis=-1)


class _MixedB(nnx.Module):
    """35→17 reduction: 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2."""

    def __init__(self, c_in, *, rngs):
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch3x3(x), b3, _reduce_pool(x)], axis=-1)


class _MixedC(nnx.Module):
    """17×17 block with factorised 7×7 convolutions (c7 channels inside); outputs 4 × 192."""

    def __init__(self, c_in, c7, *, rngs):
        row = {"kernel": (1, 7), "padding": (0, 3)}
        col = {"kernel": (7, 1), "padding": (3, 0)}
        self.branch1x1 = BasicConv2d(c_in, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row, rngs=rngs)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col, rngs=rngs)
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col, rngs=rngs)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row, rngs=rngs)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col, rngs=rngs)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row, rngs=rngs)
        self.branch_pool = BasicConv2d(c_in, 192, 1, rngs=rngs)

    def __call__(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):  # fmt: skip
            d = conv(d)
        bp = self.branch_pool(_avg_pool_3x3(x))
        return jnp.concatenate([self.branch1x1(x), b7, d, bp], axis=-1)


class _MixedD(nnx.Module):
    """17→8 reduction: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2."""

    def __init__(self, c_in, *, rngs):
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
        return jnp.concatenate([b3, b7, _reduce_pool(x)], axis=-1)


class _MixedE(nnx.Module):
    """8×8 block with split 1×3 / 3×1 heads; outputs 320 + 768 + 768 + 192 = 2048 channels.

    ``pool="avg"`` (Mixed_7b) or ``"max"`` (Mixed_7c, the FID graph's quirk) in the pool branch.
    """

    def __init__(self, c_in, pool, *, rngs):
        self.pool = pool
        self.branch1x1 = BasicConv2d(c_in, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv2d(c_in, 192, 1, rngs=rngs)

    def __call__(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _max_pool_3x3(x) if self.pool == "max" else _avg_pool_3x3(x)
        return jnp.concatenate(
            [
                self.branch1x1(x),
                self.branch3x3_2a(s),
                self.branch3x3_2b(s),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(pooled),
            ],
            axis=-1,
        )


class InceptionV3(nnx.Module):
    """FID InceptionV3 up to the pool3 features. NHWC input in [-1, 1], any H, W ≥ 1.

    ``model(x)`` resizes ``x`` (N, H, W, 3) bilinearly to 299×299 (skipped if already that
    size) and returns the (N, 2048) pool3 features (means of ReLU outputs, so ≥ 0). Attribute
    names follow torchvision's ``Inception3`` so that pytorch-fid's state-dict names map 1:1
    (see :func:`load_inception`). ``InceptionV3(rngs=nnx.Rngs(0))`` has random He-normal
    convolutions and identity BatchNorms (about 20 s to initialise on a CPU); use
    :func:`load_inception` for FID.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
        self.Mixed_5b = _MixedA(192, 32, rngs=rngs)
        self.Mixed_5c = _MixedA(256, 64, rngs=rngs)
        self.Mixed_5d = _MixedA(288, 64, rngs=rngs)
        self.Mixed_6a = _MixedB(288, rngs=rngs)
        self.Mixed_6b = _MixedC(768, 128, rngs=rngs)
        self.Mixed_6c = _MixedC(768, 160, rngs=rngs)
        self.Mixed_6d = _MixedC(768, 160, rngs=rngs)
        self.Mixed_6e = _MixedC(768, 192, rngs=rngs)
        self.Mixed_7a = _MixedD(768, rngs=rngs)
        self.Mixed_7b = _MixedE(1280, "avg", rngs=rngs)
        self.Mixed_7c = _MixedE(2048, "max", rngs=rngs)

    def __call__(self, x):
        x = jnp.asarray(x, jnp.float32)
        n, h, w, c = x.shape
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            # half-pixel centres, edge samples clamped, no antialiasing when shrinking: this
            # is torch's bilinear F.interpolate(align_corners=False, antialias=False).
            x = jax.image.resize(x, (n, INPUT_SIZE, INPUT_SIZE, c), "bilinear", antialias=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _reduce_pool(x)
        x = _reduce_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):  # fmt: skip
            x = block(x)
        return jnp.mean(x, axis=(1, 2))


# --- torch state-dict names ↔ NNX variables -----------------------------------------------

# suffix in the torch state dict -> (sub-module, NNX variable name)
_TORCH_SUFFIXES = {
    "conv.weight": ("conv", "kernel"),
    "bn.weight": ("bn", "scale"),
    "bn.bias": ("bn", "bias"),
    "bn.running_mean": ("bn", "mean"),
    "bn.running_var": ("bn", "var"),
}


def _torch_named_variables(model: InceptionV3):
    """(torch name, NNX Variable) for every weight, e.g. ``Mixed_5b.branch1x1.conv.weight``."""
    out = []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, BasicConv2d):
            prefix = ".".join(str(p) for p in path)
            for suffix, (sub, attr) in _TORCH_SUFFIXES.items():
                out.append((f"{prefix}.{suffix}", getattr(getattr(node, sub), attr)))
    return sorted(out, key=lambda item: item[0])


def _to_torch_layout(name, value):
    """HWIO kernels → OIHW (torch); vectors unchanged."""
    return np.transpose(value, (3, 2, 0, 1)) if name.endswith("conv.weight") else value


def _torch_shape(name, shape):
    return (shape[3], shape[2], shape[0], shape[1]) if name.endswith("conv.weight") else shape


def _from_torch_layout(name, value):
    return np.transpose(value, (2, 3, 1, 0)) if name.endswith("conv.weight") else value


def torch_state_dict(model: InceptionV3) -> dict[str, np.ndarray]:
    """The weights of ``model`` as float32 numpy arrays under pytorch-fid's names and layouts.

    ``np.savez(path, **torch_state_dict(model))`` writes a file :func:`load_inception` reads.
    """
    return {
        name: np.asarray(_to_torch_layout(name, np.asarray(var.get_value())), np.float32)
        for name, var in _torch_named_variables(model)
    }


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """``weights``, else ``$JAXIR_INCEPTION_WEIGHTS``; FileNotFoundError if that is no file."""
    if weights is None:
        env = os.environ.get(WEIGHTS_ENV)
        if not env:
            raise FileNotFoundError(_missing_message(None))
        weights = env
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(_missing_message(path))
    return path


def _missing_message(path: Path | None) -> str:
    where = f"not found at {path}" if path is not None else f"not given and ${WEIGHTS_ENV} unset"
    return (
        f"FID InceptionV3 weights {where}. No PyPI package ships them: convert pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth once, where torch is installed, with\n"
        f"  python {_CONVERTER} pt_inception-2015-12-05-6726825d.pth inception_fid.npz\n"
        f"then pass weights='inception_fid.npz' or set {WEIGHTS_ENV}=/path/to/inception_fid.npz."
    )


def _first(items, k=5):
    return ", ".join(items[:k]) + (f", ... ({len(items)} in all)" if len(items) > k else "")


def load_inception(path: str | os.PathLike) -> InceptionV3:
    """Build :class:`InceptionV3` from a converted ``.npz`` (pytorch-fid names, torch layouts).

    Conv weights (O, I, kh, kw) are transposed to HWIO here; BatchNorm ``weight``/``bias``/
    ``running_mean``/``running_var`` become ``scale``/``bias``/``mean``/``var``. The file is read
    with ``allow_pickle=False``; every key must be present with its exact shape.

    Raises:
      FileNotFoundError: no file at ``path`` (the message says how to make one).
      ValueError: missing or unexpected keys, or arrays of the wrong shape.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(_missing_message(path))
    model = nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))
    named = _torch_named_variables(model)
    expected = {name: _torch_shape(name, var.get_value().shape) for name, var in named}
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    wrong = [
        f"{k} {arrays[k].shape} (expected {expected[k]})"
        for k in sorted(expected)
        if k in arrays and arrays[k].shape != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_first(extra)}")
    if wrong:
        problems.append(f"wrong shapes: {_first(wrong)}")
    if problems:
        raise ValueError(
            f"{path} is not an FID InceptionV3 weight file ({'; '.join(problems)}). Write it "
            f"with {_CONVERTER} from pt_inception-2015-12-05-6726825d.pth."
        )
    for name, var in named:
        var.set_value(jnp.asarray(_from_torch_layout(name, arrays[name]), jnp.float32))
    return model
