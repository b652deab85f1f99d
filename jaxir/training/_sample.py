"""Unconditional / class-conditional samples from a training workdir (what ``jaxir sample``
runs without ``--lq``)."""

from __future__ import annotations

__all__ = ["SAMPLERS", "sample_workdir"]

#: the samplers ``sample_workdir`` runs, by name
SAMPLERS = ("ddim", "ddpm", "dpm", "ode")


def sample_workdir(key, workdir_or_model, n: int = 16, *, sampler: str = "ddim",
                   steps: int = 50, label: int | None = None, ema: bool = True,
                   model_fn_wrapper=None):
    """Draw ``n`` images from the model of a training workdir.

    Args:
      key: a `jax.random` key.
      workdir_or_model: a workdir path, or `load_model_fn`'s ``(model_fn, sde, config)``.
      n: number of images. steps: sampler steps.
      sampler: ``"ddim"`` (η = 0), ``"ddpm"`` (ancestral), ``"dpm"`` (DPM-Solver++ 2M) — each
        with x̂0 clipped to [-1, 1] — or ``"ode"`` (the probability-flow ODE, last step
        denoised).
      label: for a class-conditional model (``config.model.num_classes``) every image gets this
        class; None cycles through the classes (``i % num_classes``).
      ema: the EMA parameters (default) or the raw ones (workdir only).
      model_fn_wrapper: optional ``model_fn -> model_fn`` applied before sampling (e.g.
        `jaxir.restore.with_step_callback` for a progress bar).

    Returns:
      the sampler's `jaxir.samplers.Samples`; ``x`` is ``(n, size, size, channels)``, not
      clipped. Call it under ``jax.jit`` (with ``workdir_or_model`` loaded outside) to compile
      the whole loop once.

    Raises `ValueError` for an unknown sampler, a ``label`` without a class-conditional model
    or out of range, and a workdir that holds a restoration model or a classifier.
    """
    import jax.numpy as jnp

    from .. import samplers as _samplers
    from ._workdir import load_model_fn
    from ._registry import FAMILIES as LEARNED_RESTORATION_KINDS

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if isinstance(workdir_or_model, tuple):
        model_fn, sde, config = workdir_or_model
    else:
        model_fn, sde, config = load_model_fn(workdir_or_model, ema=ema)
    kind = config.loss.kind
    if kind in LEARNED_RESTORATION_KINDS or kind == "classifier":
        raise ValueError(f"sample_workdir draws from an unconditional or class-conditional "
                         f"model; this one is a {kind!r} model")
    m = config.model
    classes = getattr(m, "num_classes", None)
    if label is not None and (classes is None or not 0 <= label < classes):
        raise ValueError(f"label {label}: the model has "
                         f"{'no classes' if classes is None else f'{classes} classes'}")
    if model_fn_wrapper is not None:
        model_fn = model_fn_wrapper(model_fn)
    size = config.data.random_crop or config.data.image_size or m.image_size
    shape = (n, size, size, m.in_channels)
    cond = None
    if classes is not None:
        labels = (jnp.full((n,), label, jnp.int32) if label is not None
                  else jnp.arange(n, dtype=jnp.int32) % classes)
        cond = {"label": labels}
    kw = dict(prediction=config.loss.prediction, num_steps=steps, cond=cond)
    if sampler == "ode":
        return _samplers.ode_sample(key, model_fn, sde, shape, denoise=True, **kw)
    fn = {"ddim": _samplers.ddim_sample, "ddpm": _samplers.ddpm_sample,
          "dpm": _samplers.dpm_solver_sample}[sampler]
    return fn(key, model_fn, sde, shape, clip_x0=True, **kw)
