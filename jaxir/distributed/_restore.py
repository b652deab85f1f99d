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
    from ..restore._patches import Tiling
    from ..restore._restore import _as_method, _as_task, _split_output
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
    if mask is not None:
        mask = np.asarray(mask, np.float32).reshape(n, h * f, w * f, 1)
    tiling = Tiling(y, mask, p, f, stride, channels)
    inputs = {"y": np.asarray(tiling.y_patches)}
    if mask is not None:
        inputs["mask"] = np.asarray(tiling.mask_patches)
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
    return tiling.assemble(x_p)
