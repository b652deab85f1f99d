"""Where a network becomes a pure function (DESIGN.md, layer 8).

The jaxir model convention, used by every sampler, solver and loss::

    model_fn(x, t, cond) -> prediction

- ``x``: a batch, shape (B, H, W, C) (NHWC float32 in [-1, 1] for images);
- ``t``: continuous time, a scalar or shape (B,);
- ``cond``: one of
    * ``None`` — unconditional (for a class-conditional network: the null class, or the
      ``label`` bound by `make_model_fn`);
    * an array — the image condition (B, H, W, cond_channels), concatenated to x;
    * a dict with the optional keys ``"image"`` (as above) and ``"label"`` (int (B,) or a
      scalar; ``num_classes`` is the classifier-free-guidance null class). A label in the
      dict overrides the one bound by `make_model_fn`.
- the result has x's batch and spatial shape, with the network's ``out_channels``.

A model's only state is its `nnx.Param`s: the networks hold no RNG state (dropout takes an
explicit key), no batch statistics and no buffers (the Fourier time-embedding frequencies
are a constant derived from a seed in the config). `split_model` checks this, so ``params``
is exactly the trainable state and ``nnx.merge(graphdef, params)`` rebuilds the model.
Everything here works under `jax.jit`, `jax.vmap` (over x, t, cond or over a stacked
params pytree) and `jax.grad` (w.r.t. params and x).

>>> import jax, jax.numpy as jnp
>>> from flax import nnx
>>> from jaxir.models import UNet, unet_config, split_model, make_model_fn
>>> graphdef, params = split_model(UNet(unet_config("tiny"), rngs=nnx.Rngs(0)))
>>> model_fn = make_model_fn(graphdef, params)
>>> jax.jit(model_fn)(jnp.zeros((2, 16, 16, 3)), 0.5, None).shape
(2, 16, 16, 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def split_model(model: nnx.Module) -> tuple[Any, nnx.State]:
    """`nnx.split(model, nnx.Param, ...)` → (graphdef, params), checking nothing else exists.

    Raises `ValueError` if the model carries state other than `nnx.Param` (RNG streams,
    batch statistics, ...); such state would be lost by merging with params only. Use
    `nnx.split` directly for those models and handle the rest explicitly.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        kinds = sorted(
            {
                type(v).__name__
                for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable))
            }
        )
        raise ValueError(
            f"split_model expects a model whose only state is nnx.Param; it also has {kinds}. "
            "Use nnx.split(model, nnx.Param, ...) and pass the rest to nnx.merge explicitly."
        )
    return graphdef, params


def param_count(params: Any) -> int:
    """Total number of scalars in a params pytree (arrays or `jax.ShapeDtypeStruct`s,
    so it works on `nnx.eval_shape` results without allocating)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def _unpack_cond(cond: Any, label: Any) -> tuple[Any, Any]:
    if cond is None:
        return None, label
    if isinstance(cond, dict):
        unknown = set(cond) - {"image", "label"}
        if unknown:
            raise ValueError(
                f"cond dict may only have the keys 'image' and 'label', got {sorted(unknown)}"
            )
        return cond.get("image"), cond.get("label", label)
    return cond, label


def cast_floating(tree: Any, dtype) -> Any:
    """Cast the floating-point array leaves of ``tree`` to ``dtype`` (other leaves, Python
    scalars included, unchanged)."""
    return jax.tree.map(
        lambda v: v.astype(dtype) if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating)
        else v, tree)


def _compute_dtype(compute_dtype):
    if compute_dtype is None:
        return None
    try:
        dt = jnp.dtype(compute_dtype)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"compute_dtype must be a floating dtype such as jnp.bfloat16 or "
                         f"'float32', got {compute_dtype!r}")
    return None if dt == jnp.float32 else dt


def make_model_fn(
    graphdef: Any, params: Any, *, label: Any = None, dropout_key: jax.Array | None = None,
    compute_dtype: Any = None,
) -> Callable:
    """The pure `model_fn(x, t, cond=None)` of the jaxir convention (module docstring).

    Args:
      graphdef, params: from `split_model`.
      label: a class label (int (B,) or scalar) used when ``cond`` carries none.
      dropout_key: None (default) runs deterministically (sampling, evaluation); a
        `jax.random` key turns dropout on (training; pass a fresh key every step).
      compute_dtype: None or ``float32`` (default): the network computes in float32.
        ``jnp.bfloat16`` (or ``float16``): mixed precision at the boundary — inside every
        call the float32 ``params``, ``x`` and an image ``cond`` are cast to it, the network's
        activations, matrix products and convolutions run in it (the time embedding's
        features are computed in float32 and cast; GroupNorm takes its statistics in float32,
        as Flax does), and the prediction is cast back to float32 before it is returned. The
        stored ``params`` stay float32 and gradients w.r.t. them are float32. Everything
        outside the network (samplers, operators, exact parts) is unaffected: see
        :mod:`jaxir.precision`. On accelerators bfloat16 is the usual choice for speed; on a
        CPU it is slower and only useful for testing.

    Returns: ``model_fn(x, t, cond=None) -> (B, H, W, out_channels)``, float32 whatever the
    compute dtype; it calls ``nnx.merge(graphdef, params)`` on every call, so it is a pure
    function of its inputs and of the arrays in ``params``.

    Raises: `ValueError` for a ``compute_dtype`` that is not a floating dtype.
    """
    low = _compute_dtype(compute_dtype)

    def model_fn(x, t, cond=None):
        image, lab = _unpack_cond(cond, label)
        p = params
        if low is not None:
            p, x = cast_floating(params, low), cast_floating(jnp.asarray(x), low)
            image = None if image is None else cast_floating(jnp.asarray(image), low)
        model = nnx.merge(graphdef, p)
        kwargs = {} if lab is None else {"label": lab}
        out = model(x, t, image, deterministic=dropout_key is None, rngs=dropout_key, **kwargs)
        return out if low is None else out.astype(jnp.float32)

    return model_fn


def classifier_log_prob_fn(graphdef: Any, params: Any) -> Callable:
    """``fn(x, t, y) -> log p(y | x_t)`` per example, shape (B,), from a `NoisyClassifier`.

    log p(y | x_t) = logits_y − logsumexp(logits). Classifier guidance (Dhariwal & Nichol
    2021, Algorithm 1) adds s·∇_x Σ_b log p(y_b | x_t,b), i.e.
    ``jax.grad(lambda x: fn(x, t, y).sum())(x)``. ``y`` is int (B,) or a scalar.
    """

    def log_prob(x, t, y):
        clf = nnx.merge(graphdef, params)
        k = clf.config.num_classes
        b = jnp.shape(x)[0] if jnp.ndim(x) == 4 else None  # a wrong x is reported by clf
        y = jnp.asarray(y)
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"y must be int class indices, got dtype {y.dtype}")
        if y.ndim == 0 and b is not None:
            y = jnp.broadcast_to(y, (b,))
        elif b is not None and y.shape != (b,):
            raise ValueError(f"y must be a scalar or have shape (B,)=({b},), got {y.shape}")
        if not isinstance(y, jax.core.Tracer) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError(f"y must be class indices in [0, {k}), got {y}")
        logp = jax.nn.log_softmax(clf(x, t), axis=-1)
        return jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]

    return log_prob


def params_from_arrays(abstract: Any, arrays: dict, where: str) -> Any:
    """The parameter pytree of the shape of ``abstract`` (e.g. from ``nnx.eval_shape``) filled
    from a flat ``{jax.tree_util.keystr(path): array}`` dict (an ``.npz`` file's entries), each
    cast to its leaf's dtype. `ValueError` naming ``where`` for a missing parameter, a wrong
    shape, or an entry the structure does not use. ``arrays`` is consumed (entries popped)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values = []
    for p, leaf in leaves:
        k = jax.tree_util.keystr(p)
        if k not in arrays:
            raise ValueError(f"{where} lacks parameter {k} (shape {tuple(leaf.shape)}) "
                             f"that its config needs")
        v = arrays.pop(k)
        if tuple(v.shape) != tuple(leaf.shape):
            raise ValueError(f"{where}: parameter {k} has shape {tuple(v.shape)}, "
                             f"its config needs {tuple(leaf.shape)}")
        values.append(jnp.asarray(v, leaf.dtype))
    if arrays:
        raise ValueError(f"{where} has parameters its config does not use: "
                         f"{sorted(arrays)[:3]}")
    return jax.tree_util.tree_unflatten(treedef, values)
