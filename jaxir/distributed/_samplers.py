"""Unconditional, posterior and learned-restoration samplers over a mesh, keys by global index."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._map import LocalRows, map_examples


def _one(tree):
    """Add a batch axis of one to every array of ``tree``."""
    return jax.tree.map(lambda a: jnp.asarray(a)[None], tree)


def _samples(out, nfe):
    from ..samplers import Samples

    if isinstance(out, LocalRows):
        x, fin, traj = out.values
        return LocalRows(out.indices, Samples(x, traj, nfe, fin, None))
    x, fin, traj = out
    return Samples(x, traj, nfe, np.bool_(np.all(fin)), None)


def _per_example(samples, seen):
    """``(x, finite, trajectory)`` of one example from a batch-of-one `Samples`."""
    seen["nfe"] = samples.nfe
    traj = None if samples.trajectory is None else samples.trajectory[:, 0]
    return samples.x[0], jnp.all(jnp.isfinite(samples.x[0])), traj


def _model(model_fn, params):
    return model_fn if params is None else model_fn(params)


def sample(sampler: Callable, key, model_fn, sde, n: int, shape, *, cond=None, params=None,
           mesh=None, per_device: int | None = None, start: int = 0, gather: bool = True,
           **options):
    """``n`` draws of an unconditional sampler over a mesh, sample ``i`` from
    ``fold_in(key, i)``: the same images on any number of devices and hosts.

    Args:
        sampler: any `jaxir.samplers` function with the signature ``sampler(key, model_fn,
            sde, shape, **options) -> Samples`` (``ddim_sample``, ``ddpm_sample``,
            ``dpm_solver_sample``, ``pc_sample``, ``sde_sample``, ``ode_sample``, …). It is
            called per example with ``shape = (1, *shape)``.
        key: `jax.random` key. model_fn: ``model_fn(x, t, cond)``, or with ``params`` a
            function ``params -> model_fn`` (e.g. ``functools.partial(make_model_fn,
            graphdef)``).
        sde: the sampler's SDE. n: the number of samples. shape: one sample's shape (no batch
            axis), e.g. ``(32, 32, 3)``.
        cond: per-example conditions (a pytree of arrays with leading axis ``n``, e.g.
            ``{"label": labels}``); example ``i`` gets its row with a batch axis of one.
        params: optional arrays ``model_fn`` is made from (see ``model_fn``).
        mesh, per_device, start, gather: as :func:`map_examples`.
        **options: passed to ``sampler`` (``num_steps``, ``prediction``, ``clip_x0``, …).

    Returns:
        `jaxir.samplers.Samples` with numpy ``x`` ``(n, *shape)``, ``trajectory`` ``(n,
        n_saved, *shape)`` with ``save_every`` (else None), ``nfe`` per sample and
        ``finite`` (every sample finite); ``extras`` is dropped (call :func:`map_examples`
        with your own function to keep them). With ``gather=False``: :class:`LocalRows` whose
        ``values`` is such a `Samples` of this process's rows (``finite`` per row).
    """
    shape = tuple(int(s) for s in shape)
    seen: dict = {}

    def fn(k, c):
        f = _model(model_fn, params)
        kw = dict(options)
        if c is not None:
            kw["cond"] = _one(c)
        return _per_example(sampler(k, f, sde, (1, *shape), **kw), seen)

    # params reach fn as closed-over arrays: map_examples passes them as jit arguments
    out = map_examples(fn, key, n, inputs=cond, mesh=mesh,
                       per_device=per_device, start=start, gather=gather)
    return _samples(out, seen.get("nfe"))


def posterior_sample(sampler: Callable, key, model_fn, sde, op, y, sigma_y=None, *,
                     params=None, mesh=None, per_device: int | None = None, start: int = 0,
                     gather: bool = True, **options):
    """One posterior sample per measurement ``y[i]`` over a mesh, from ``fold_in(key, i)``.

    Args:
        sampler: any `jaxir.inverse` sampler with the signature ``sampler(key, model_fn, sde,
            op, y, sigma_y, shape, **options) -> Samples`` (``ddrm_sample``, ``dps_sample``,
            ``pigdm_sample``, ``ddnm_sample``, ``diffpir_sample``, ``mcgdiff_sample``, …). It
            is called per example with ``y[i][None]`` and ``shape = (1, *op.x_shape)``.
        y: ``(n, *op.y_shape)`` measurements (repeat one ``y`` ``K`` times for ``K`` samples
            of its posterior).
        op: the degradation shared by every example (a per-example operator — an inpainting
            mask per image — needs :func:`map_examples` with your own function).
        sigma_y: passed to the sampler as given.
        params, mesh, per_device, start, gather, options: as :func:`sample`.

    Returns:
        as :func:`sample`, ``x`` ``(n, *op.x_shape)``.
    """
    if op.x_shape is None:
        raise ValueError("posterior_sample needs an operator with x_shape")
    x_shape = tuple(op.x_shape)
    y = np.asarray(jax.device_get(y))
    if y.ndim != len(op.y_shape) + 1 or tuple(y.shape[1:]) != tuple(op.y_shape):
        raise ValueError(f"y must be (n, *op.y_shape) = (n, {', '.join(map(str, op.y_shape))})"
                         f", got {y.shape}")
    seen: dict = {}

    def fn(k, yi):
        f = _model(model_fn, params)
        return _per_example(sampler(k, f, sde, op, yi[None], sigma_y, (1, *x_shape),
                                    **options), seen)

    out = map_examples(fn, key, inputs=y, mesh=mesh, per_device=per_device, start=start,
                       gather=gather)
    return _samples(out, seen.get("nfe"))


def restore_learned(model, lq, key, *, steps: int | None = None, mask=None, mesh=None,
                    per_device: int | None = None, start: int = 0, gather: bool = True):
    """`jaxir.restore.restore_learned` over a mesh: image ``i`` from ``fold_in(key, i)``.

    Args:
        model: a `jaxir.restore.LearnedModel` (`jaxir.restore.load_learned`) or a workdir.
        lq: ``(n, H, W, C)`` degraded images in [-1, 1] at the output size (see
            `jaxir.restore.prepare_lq`; an ``sr:F`` model's small images are upsampled first).
        key: `jax.random` key. steps: the family's sampler steps (None: its default).
        mask: for a Palette inpainting / uncropping model, ``(n, H, W, 1)`` observed pixels.
        mesh, per_device, start, gather: as :func:`map_examples`.

    Returns:
        as :func:`sample`, ``x`` ``(n, H, W, C)`` (not clipped).
    """
    from ..restore._learned import _as_model, prepare_lq
    from ..restore._learned import restore_learned as _restore

    m = _as_model(model)
    lq = np.asarray(jax.device_get(prepare_lq(lq, m)))
    inputs = {"lq": lq}
    if mask is not None:
        mk = np.asarray(mask, np.float32)
        if mk.ndim != 4 or mk.shape[0] != lq.shape[0]:
            raise ValueError(f"mask must be (n, H, W, 1|C) with n = {lq.shape[0]}, got "
                             f"{mk.shape}")
        inputs["mask"] = mk
    seen: dict = {}

    def fn(k, row):
        out = _restore(m, row["lq"][None], k, steps=steps,
                       mask=None if "mask" not in row else row["mask"][None])
        return _per_example(out, seen)

    out = map_examples(fn, key, inputs=inputs, mesh=mesh, per_device=per_device, start=start,
                       gather=gather)
    return _samples(out, seen.get("nfe"))


def sample_workdir(key, workdir_or_model, n: int, *, sampler: str = "ddim", steps: int = 50,
                   label: int | None = None, ema: bool = True, mesh=None,
                   per_device: int | None = None, start: int = 0, gather: bool = True):
    """`jaxir.training.sample_workdir` over a mesh: image ``i`` from ``fold_in(key, i)``.

    The same sampler, steps, x̂0 clipping and class labels (``label``, or ``i % num_classes``
    by *global* index ``i`` for a class-conditional model) as the one-batch function, but
    drawn per example, so the images do not depend on the devices, hosts or ``start`` —
    and differ from the one-batch function's, whose key draws the whole batch at once.

    Args:
        key: `jax.random` key. workdir_or_model: a workdir or `load_model_fn`'s triple.
        n, sampler, steps, label, ema: as `jaxir.training.sample_workdir`.
        mesh, per_device, start, gather: as :func:`map_examples`.

    Returns:
        as :func:`sample`: ``x`` ``(n, size, size, channels)``, not clipped.
    """
    from ..training import load_model_fn
    from ..training import sample_workdir as one_batch

    loaded = (workdir_or_model if isinstance(workdir_or_model, tuple)
              else load_model_fn(workdir_or_model, ema=ema))
    classes = getattr(loaded[2].model, "num_classes", None)
    labels = None
    if classes is not None and label is None:
        labels = (np.arange(start, start + n) % classes).astype(np.int32)
    seen: dict = {}

    def fn(k, lab):
        wrap = None
        if lab is not None:  # this example's class instead of the batch-of-one's label 0
            def wrap(f):
                return lambda x, t, c=None: f(x, t, {"label": lab[None]})
        return _per_example(one_batch(k, loaded, 1, sampler=sampler, steps=steps, label=label,
                                      model_fn_wrapper=wrap), seen)

    out = map_examples(fn, key, n, inputs=labels, mesh=mesh, per_device=per_device,
                       start=start, gather=gather)
    return _samples(out, seen.get("nfe"))
