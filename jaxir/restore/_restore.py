"""``restore_images``: patch-wise restoration of images of any size with a fixed-size prior."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._methods import Method, default_settings, get_method
from ._patches import Tiling
from ._progress import StepBar, with_step_callback
from ._tasks import Task, get_task

_COMPILED: dict = {}


def _as_task(task) -> Task:
    return task if isinstance(task, Task) else get_task(task)


def _as_method(method, task: Task) -> Method:
    if isinstance(method, Method):
        if task.name not in method.tasks:
            raise ValueError(f"method {method.name!r} does not support task {task.name!r}")
        return method
    return get_method(method, task.name)


def _split_output(out):
    """``(x, nfe)`` from what a method's ``run`` returns: `Samples` (nfe known) or an array."""
    x = getattr(out, "x", out)
    nfe = getattr(out, "nfe", None)
    return x, (int(nfe) if isinstance(nfe, (int, np.integer)) else None)


def _patch_runner(prior, method: Method, task: Task, steps: int, chunk: int, patch: int,
                  channels: int, masked: bool, samples: int = 1, progress: bool = False,
                  keep: bool = False):
    """A jitted ``run(params, key, y_chunk, mask_chunk) -> x_chunk`` (cached per setting) and a
    dict whose ``"nfe"`` is the sampler's network evaluations per sample (known once traced).

    With ``progress`` the network runs through :func:`with_step_callback`, which calls
    ``info["tick"]()`` on the host once per network evaluation (set it before each call; the
    compiled function is cached separately from the one without progress). With ``keep`` the
    ``samples`` restorations come back unaveraged, ``(samples, chunk, ...)``.

    With ``samples = K > 1`` every window is restored ``K`` times with independent keys (one
    ``vmap`` over the keys) and the ``K`` restorations are averaged: a Monte-Carlo estimate of
    the posterior mean, which is what PSNR rewards (one posterior sample has twice the MSE of
    the mean to the truth; the mean of K has ``(1 + 1/K)`` times it).
    """
    cache_key = (id(prior), method.name, task, steps, chunk, patch, channels, masked, samples,
                 progress, keep)
    hit = _COMPILED.get(cache_key)
    if hit is not None and hit[0] is prior:
        return hit[1], hit[2]
    x_shape = (patch, patch, channels)
    info: dict = {"nfe": None, "tick": None}

    def tick():
        if info["tick"] is not None:
            info["tick"]()

    def with_params(params):
        pr = prior
        if getattr(prior, "graphdef", None) is not None:
            from ..models import make_model_fn

            pr = prior._replace(model_fn=make_model_fn(prior.graphdef, params))
        if progress:
            pr = pr._replace(model_fn=with_step_callback(pr.model_fn, tick))
        return pr

    def draw(pr, key, y, mask):
        if not masked:
            op = task.make_operator(x_shape, None)
            x, info["nfe"] = _split_output(method.run(key, pr, op, y, task.sigma_y, task, steps))
            return x

        def one(k, yi, mi):  # one operator per patch (its own mask): vmap the sampler
            op = task.make_operator(x_shape, mi)
            x, info["nfe"] = _split_output(method.run(k, pr, op, yi[None], task.sigma_y, task,
                                                      steps))
            return x[0]

        return jax.vmap(one)(jax.random.split(key, y.shape[0]), y, mask)

    def run(params, key, y, mask):
        pr = with_params(params)
        if samples == 1:  # the same key as without averaging: samples=1 is the plain sampler
            x = draw(pr, key, y, mask)
            return x[None] if keep else x
        xs = jax.vmap(lambda k: draw(pr, k, y, mask))(jax.random.split(key, samples))
        return xs if keep else jnp.mean(xs, axis=0)

    fn = jax.jit(run)
    _COMPILED[cache_key] = (prior, fn, info)
    return fn, info


def restore_images(y, task, method, *, prior=None, mask=None, steps: int | None = None,
                   seed: int = 0, stride: int | None = None, batch_size: int = 16,
                   channels: int = 3, progress: bool = False, samples: int | None = None,
                   info: dict | None = None, return_samples: bool = False):
    """Restore a batch of same-size measurements ``y`` ``(N, h, w, c_y)`` in [-1, 1].

    Diffusion methods (``method.kind == "diffusion"``) restore **patch-wise** with the
    ``prior.image_size``-square prior (64 px for ``photos64``): the high-resolution canvas
    ``(h·f, w·f)`` (``f = task.factor``) is covered by overlapping windows of the prior's size
    with step ``stride`` (default ¾ of the patch, a multiple of ``f``; see ``_patches``); the
    measurement of each window is the matching crop of ``y`` (for 4× SR the corresponding
    16×16 block of the low-resolution image, exact for block averaging because windows start on
    multiples of 4; for inpainting the crop of ``mask`` gives each window its own operator;
    for blur the window's operator uses replicated edges, which differs from the crop of the
    blurred image only within a few pixels of the window border, where the blending weight is
    small). All windows of all images go through the sampler in batches of ``batch_size``
    (one compiled call per batch). The restored windows are blended with a separable raised-
    cosine weight normalised to sum to one, so there are no seams. Images smaller than a window
    are padded by reflection and cropped back. Limitation: windows are restored independently
    (each is its own posterior sample), so structure larger than a window is not coordinated
    and a hole bigger than a window is filled without context; overlaps average two samples,
    which slightly smooths fine detail there.

    ``samples = K > 1`` (diffusion methods) restores every window ``K`` times with independent
    keys and averages them: a Monte-Carlo posterior mean. PSNR and SSIM reward the posterior
    mean (the MMSE estimate), and a single posterior sample has about twice its squared error,
    so averaging trades ``K``× the compute for a smoother, more accurate (less detailed) image.

    Classical methods run on each whole image (``samples`` is ignored: they are deterministic).

    Args:
      y: ``(N, h, w, c_y)`` measurements (``task.y_shape`` of the images wanted).
      task: a task name or `Task`. method: a method name or `Method`.
      prior: a :class:`jaxir.priors.Prior` (diffusion methods only).
      mask: ``(N, H, W, 1)`` observation masks for inpainting tasks.
      steps: sampling steps (None: the task's default for the method,
        :func:`~jaxir.restore.default_settings`: the official number unless the held-out
        evaluation showed another better).
      seed: the PRNG seed (the same seed gives the same result).
      stride: window step in output pixels. batch_size: sampler draws per call (windows ×
        ``samples``).
      channels: channels of the output (the prior's for diffusion methods).
      progress: show a tqdm bar that moves at every sampler step (a host callback per network
        evaluation, :mod:`._progress`), with the batch of patches and an ETA.
      samples: restorations averaged per window (diffusion methods; 1 = one posterior sample;
        None: the task's default, e.g. 8 for DDRM on ``sr4``); a call restores
        ``batch_size // samples`` windows (at least one) ``samples`` times each.
      info: if a dict, filled with ``nfe`` (network evaluations per image window and sample, or
        None if the sampler does not report it), ``windows`` (total), ``samples``, ``steps``.
      return_samples: also return the ``samples`` restorations themselves (diffusion methods),
        for posterior standard deviations (:func:`jaxir.plot.posterior_maps`).

    Returns:
      ``(N, H, W, channels)`` float32 in [-1, 1]; with ``return_samples`` the pair
      ``(mean, samples)``, ``samples`` ``(samples, N, H, W, channels)`` (each blended and
      clipped; ``mean`` is their average, clipped).
    """
    task = _as_task(task)
    method = _as_method(method, task)
    y = np.asarray(y, np.float32)
    if y.ndim != 4:
        raise ValueError(f"y must be (N, h, w, c), got shape {y.shape}")
    if task.make_mask is not None and mask is None:
        raise ValueError(f"task {task.name!r} needs a mask (N, H, W, 1)")
    default_steps, default_samples = default_settings(task.name, method)
    samples = default_samples if samples is None else int(samples)
    if samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples}")
    n, h, w, _ = y.shape
    f = task.factor
    H, W = h * f, w * f
    if mask is not None:
        mask = np.asarray(mask, np.float32).reshape(n, H, W, 1)
    if method.kind == "classical":
        out = [method.run(y[i], task, None if mask is None else mask[i]) for i in range(n)]
        if info is not None:
            info.update(nfe=0, windows=n, samples=1, steps=None)
        out = np.stack(out).astype(np.float32)
        return (out, out[None]) if return_samples else out
    if prior is None:
        raise ValueError(f"method {method.name!r} needs a prior")
    p, channels = int(prior.image_size), int(prior.channels)
    steps = default_steps if steps is None else int(steps)
    tiling = Tiling(y, mask, p, f, stride, channels)
    y_p, m_p = tiling.y_patches, tiling.mask_patches
    total = y_p.shape[0]
    chunk = max(1, min(int(batch_size) // samples, total))
    run, run_info = _patch_runner(prior, method, task, steps, chunk, p, channels,
                                  mask is not None, samples, bool(progress),
                                  bool(return_samples))
    params = getattr(prior, "params", None)
    key = jax.random.key(seed)
    n_batches = math.ceil(total / chunk)
    bar = None
    if progress:
        what = f"{total} patches of {p}px" + (f" x {samples} samples" if samples > 1 else "")
        bar = StepBar(f"{method.name} {task.name} ({what})")
        # one tick per call of the network: a particle method counts its particles in the NFE
        calls = lambda: run_info["nfe"] // method.particles * n_batches  # noqa: E731
        if run_info["nfe"] is not None:  # known from an earlier trace of this runner
            bar.set_total(calls())

        def tick():  # first tick of a fresh runner: tracing has told the NFE by now
            if bar.total is None and run_info["nfe"] is not None:
                bar.set_total(calls())
            bar()

        run_info["tick"] = tick
    outs = []
    try:
        for b in range(n_batches):
            if bar is not None:
                bar.set_postfix(f"batch {b + 1}/{n_batches}")
            idx = np.arange(b * chunk, (b + 1) * chunk) % total  # the last batch wraps around
            mb = jnp.zeros((chunk, 1, 1, 1)) if m_p is None else jnp.asarray(m_p[idx])
            x = run(params, jax.random.fold_in(key, b), jnp.asarray(y_p[idx]), mb)
            outs.append(np.asarray(jax.device_get(x)))
    finally:
        if bar is not None:
            jax.effects_barrier()  # every tick delivered before the bar closes
            run_info["tick"] = None
            bar.close()
    if info is not None:
        info.update(nfe=run_info["nfe"], windows=total, samples=samples, steps=steps)

    assemble = tiling.assemble

    if return_samples:
        xs = np.concatenate(outs, axis=1)  # (samples, windows, ...)
        each = np.stack([assemble(x) for x in xs])
        return np.clip(each.mean(0), -1.0, 1.0), each
    return assemble(np.concatenate(outs))


def restore_image(y, task, method, *, mask=None, **kwargs) -> np.ndarray:
    """:func:`restore_images` for one measurement ``y`` ``(h, w, c_y)`` (mask ``(H, W, 1)``)."""
    y = np.asarray(y, np.float32)
    if y.ndim != 3:
        raise ValueError(f"y must be (h, w, c), got shape {y.shape}")
    m = None if mask is None else np.asarray(mask)[None]
    out = restore_images(y[None], task, method, mask=m, **kwargs)
    if kwargs.get("return_samples"):
        return out[0][0], out[1][:, 0]
    return out[0]
