"""Patch-wise restoration with a diffusion prior over a mesh: every window of every image is one
example, with its own key from its global window index."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._map import map_examples


def restore_images(y, task, method, *, prior=None, mask=None, steps: int | None = None,
                   samples: int | None = None, seed: int = 0, key=None,
                   stride: int | None = None, mesh=None, per_device: int | None = None,
                   info: dict | None = None):
    """`jaxir.restore.restore_images` with the windows spread over a mesh's devices.

    The same windows, operators, padding and blending as `jaxir.restore.restore_images`
    (``prior.image_size``-square windows at ``stride``, raised-cosine blending, reflection
    padding), but window ``w`` (counted over all images, in the order ``extract_patches``
    gives them) is restored from ``fold_in(key(seed), w)`` on a batch of one, so the images do
    not depend on the devices, the hosts or ``per_device`` — and differ from the one-device
    function's, whose key draws a whole batch of windows at once. ``samples = K > 1``: the
    window is restored ``K`` times from ``split(fold_in(key(seed), w), K)`` and averaged (a
    Monte-Carlo posterior mean). Classical methods run on each whole image, on every process
    (they are deterministic and cheap).

    Args:
        y: ``(N, h, w, c_y)`` measurements in [-1, 1]. task, method: names or objects.
        prior: a `jaxir.priors.Prior` (diffusion methods). mask: ``(N, H, W, 1)`` for the
            inpainting tasks.
        steps, samples: None: the task's defaults (`jaxir.restore.default_settings`).
        seed: the key is ``jax.random.key(seed)``, unless ``key`` is given (e.g.
            ``fold_in(key(seed), j)`` for the ``j``-th file of a folder).
        stride: window step (default ¾ window).
        mesh, per_device: as :func:`map_examples` (every process passes the same ``y``).
        info: if a dict, filled with ``nfe`` (per window and sample), ``windows``,
            ``samples``, ``steps`` (as the one-device function).

    Returns:
        ``(N, H, W, channels)`` float32 in [-1, 1], the same on every process.
    """
    from ..restore._methods import default_settings
    from ..restore._patches import blend_patches, extract_patches, patch_positions
    from ..restore._restore import _as_method, _as_task, _pad_amount, _split_output
    from ..restore._restore import restore_images as one_device

    task = _as_task(task)
    method = _as_method(method, task)
    if method.kind != "diffusion":
        return one_device(y, task, method, mask=mask, info=info)
    y = np.asarray(y, np.float32)
    if y.ndim != 4:
        raise ValueError(f"y must be (N, h, w, c), got shape {y.shape}")
    if task.make_mask is not None and mask is None:
        raise ValueError(f"task {task.name!r} needs a mask (N, H, W, 1)")
    if prior is None:
        raise ValueError(f"method {method.name!r} needs a prior")
    default_steps, default_samples = default_settings(task.name, method)
    steps = default_steps if steps is None else int(steps)
    samples = default_samples if samples is None else int(samples)
    if samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples}")
    n, h, w, _ = y.shape
    f, p, channels = task.factor, int(prior.image_size), int(prior.channels)
    if p % f:
        raise ValueError(f"the prior's size {p} is not a multiple of the task factor {f}")
    if mask is not None:
        mask = np.asarray(mask, np.float32).reshape(n, h * f, w * f, 1)
    ph, pw = _pad_amount(h, p // f), _pad_amount(w, p // f)
    if ph != (0, 0) or pw != (0, 0):
        y = np.pad(y, ((0, 0), ph, pw, (0, 0)), mode="symmetric")
        if mask is not None:
            mask = np.pad(mask, ((0, 0), (ph[0] * f, ph[1] * f), (pw[0] * f, pw[1] * f), (0, 0)),
                          mode="symmetric")
    Hp, Wp = y.shape[1] * f, y.shape[2] * f
    if stride is None:
        stride = max(f, (3 * p // 4) // f * f)
    if stride % f or not 0 < stride <= p:
        raise ValueError(f"stride must be a multiple of {f} in (0, {p}], got {stride}")
    tops, lefts = patch_positions(Hp, p, stride, f), patch_positions(Wp, p, stride, f)
    inputs = {"y": np.asarray(extract_patches(y, tops // f, lefts // f, p // f))}
    if mask is not None:
        inputs["mask"] = np.asarray(extract_patches(mask, tops, lefts, p))
    x_shape = (p, p, channels)
    seen: dict = {}

    def fn(k, row):
        op = task.make_operator(x_shape, row.get("mask"))

        def draw(kk):
            x, seen["nfe"] = _split_output(method.run(kk, prior, op, row["y"][None],
                                                      task.sigma_y, task, steps))
            return x[0]

        if samples == 1:
            return draw(k)
        return jnp.mean(jax.vmap(draw)(jax.random.split(k, samples)), axis=0)

    key = jax.random.key(seed) if key is None else key
    x_p = map_examples(fn, key, inputs=inputs, mesh=mesh,
                       per_device=per_device)
    if info is not None:
        info.update(nfe=seen.get("nfe"), windows=len(x_p), samples=samples, steps=steps)
    out = blend_patches(np.asarray(x_p), (n, Hp, Wp, channels), tops, lefts)
    return np.clip(out[:, ph[0] * f:Hp - ph[1] * f, pw[0] * f:Wp - pw[1] * f], -1.0, 1.0)
