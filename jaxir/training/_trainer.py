"""`train(config, workdir)`: the whole loop, resumable, on any mesh, on one host or many.

What lands in ``workdir``: ``config.json``, ``checkpoints/STEP/`` (orbax), ``metrics.jsonl``
(one JSON object per logged step: loss, the loss's aux metrics, grad norm, lr, steps/s),
``loss.png`` and, when ``sample_every > 0``, ``samples_STEP.png`` (DDIM with the EMA params).
Running `train` again on the same workdir resumes from the latest checkpoint: same state,
same data stream, so an interrupted run ends where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from ..data import DataLoader, get_source
from ..models import (
    Autoencoder,
    AutoencoderConfig,
    ClassifierConfig,
    NoisyClassifier,
    UNet,
    split_model,
)
from ..operators import make_degradation
from ..samplers import ddim_sample
from ._checkpoint import Checkpointer, CheckpointError, GracefulStop
from ._config import (
    RESTORATION_KINDS,
    ConfigError,
    TrainConfig,
    build_sde,
    config_to_dict,
    validate,
)
from ._losses import make_loss
from ._outputs import plot_metrics, save_image_grid
from ._sharding import batch_sharding, global_batch, make_mesh, replicated, tree_shardings
from ._state import TrainState, init_loss_scale, make_optimizer
from ._step import jit_train_step, make_apply_fn, make_train_step
from ._workdir import format_diffs, load_model_fn, lock_workdir, resume_diffs

__all__ = ["build_loss", "init_train_state", "make_degradation", "train"]


# ---- pieces ----------------------------------------------------------------------------------
def build_loss(config: TrainConfig, sde):
    """The loss function a config names (`jaxir.training.make_loss` with its options)."""
    lc, model = config.loss, config.model
    if lc.kind == "autoencoder":  # latent stage 1: reconstruction
        from ..latent import autoencoder_loss

        return autoencoder_loss(**lc.options)
    if lc.kind == "classifier":
        return make_loss("classifier", sde, time_sampling=lc.time_sampling)
    if lc.kind in RESTORATION_KINDS:  # the process is the loss's own (options), not config.sde
        options = dict(lc.options)
        if lc.kind == "flow" and options.get("teacher") is not None:  # reflow
            options["teacher"] = _reflow_teacher(config, options["teacher"])
        return make_loss(lc.kind, None, degrade_fn=make_degradation(lc.degradation),
                         **options)
    if lc.kind == "latent":  # SRLDM: stage 2 on a frozen, pre-trained autoencoder
        from ..latent import latent_loss, load_autoencoder

        codec = load_autoencoder(lc.options["autoencoder"]).codec()
        return latent_loss(codec, sde, degrade_fn=make_degradation(lc.degradation),
                           prediction=lc.prediction, weighting=lc.weighting,
                           time_sampling=lc.time_sampling, min_snr_gamma=lc.min_snr_gamma,
                           sigma_data=lc.sigma_data, cond_drop_prob=lc.cond_drop_prob)
    label = {}
    if getattr(model, "num_classes", None) is not None:
        label = {"label_key": "label", "null_label": model.num_classes}
    if lc.kind == "dsm":
        ts = "continuous" if lc.time_sampling == "auto" else lc.time_sampling
        return make_loss("dsm", sde, prediction=lc.prediction,
                         likelihood_weighting=lc.likelihood_weighting, time_sampling=ts,
                         cond_drop_prob=lc.cond_drop_prob, **label)
    common = dict(prediction=lc.prediction, weighting=lc.weighting,
                  time_sampling=lc.time_sampling, min_snr_gamma=lc.min_snr_gamma,
                  sigma_data=lc.sigma_data, cond_drop_prob=lc.cond_drop_prob, **label)
    if lc.kind == "conditional":
        return make_loss("conditional", sde, degrade_fn=make_degradation(lc.degradation),
                         **common)
    return make_loss(lc.kind, sde, **common)


def _reflow_teacher(config: TrainConfig, workdir):
    """The EMA velocity of the flow run in ``workdir``, checked against the student's config
    (same degradation and source noise: the reflow pairs start where the teacher's did)."""
    model_fn, _, teacher = load_model_fn(workdir)
    if teacher.loss.kind != "flow":
        raise ValueError(f"loss.options['teacher'] = {str(workdir)!r} holds a "
                         f"{teacher.loss.kind!r} model; reflow needs a flow model")
    mine, theirs = config.loss, teacher.loss
    for what, a, b in [("degradation", mine.degradation, theirs.degradation),
                       ("options['source_noise']", mine.options.get("source_noise", 0.0),
                        theirs.options.get("source_noise", 0.0)),
                       ("options['condition']", mine.options.get("condition", True),
                        theirs.options.get("condition", True))]:
        if a != b:
            raise ValueError(f"reflow: loss.{what} is {a!r} but the teacher "
                             f"{str(workdir)!r} was trained with {b!r}")
    return model_fn


def _model_class(config: TrainConfig):
    if isinstance(config.model, AutoencoderConfig):
        return Autoencoder
    return NoisyClassifier if isinstance(config.model, ClassifierConfig) else UNet


def _apply_fn(config: TrainConfig, graphdef):
    if config.loss.kind == "autoencoder":
        from ..latent import autoencoder_model_fn

        return lambda params, dropout_key=None: autoencoder_model_fn(graphdef, params)
    return make_apply_fn(graphdef, classifier=config.loss.kind == "classifier")


def init_train_state(config: TrainConfig, mesh: Mesh, total_steps: int | None = None):
    """``(graphdef, state, shardings, tx, lr_schedule)``: a fresh state built directly in its
    sharding (the init is jitted with ``out_shardings``, so no host holds a full copy)."""
    total_steps = config.steps if total_steps is None else total_steps
    tx, schedule = make_optimizer(config.optim, total_steps)
    cls = _model_class(config)
    graphdef, _ = split_model(nnx.eval_shape(lambda: cls(config.model, rngs=nnx.Rngs(0))))

    def init():
        params = nnx.state(cls(config.model, rngs=nnx.Rngs(config.seed)), nnx.Param)
        ema = jax.tree.map(lambda p: p + 0.0, params)
        rng = jax.random.key_data(jax.random.fold_in(jax.random.key(config.seed), 1))
        ls = init_loss_scale() if config.optim.loss_scaling else None
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), ema_params=ema, rng=rng, loss_scale=ls)

    abstract = jax.eval_shape(init)
    shardings = tree_shardings(abstract, mesh, config.fsdp_min_size)
    state = jax.jit(init, out_shardings=shardings)()
    return graphdef, state, shardings, tx, schedule


def _sampler(config: TrainConfig, apply_fn, sde, shape, mesh, cond_batch):
    """jit(params, key) -> images: DDIM (η = 0) with x̂0 clipped to [-1, 1]."""
    n = shape[0]
    model = config.model
    cond = None
    if config.loss.kind == "conditional":
        cond = make_degradation(config.loss.degradation)(jax.random.key(1), cond_batch)
    elif getattr(model, "num_classes", None) is not None:
        cond = {"label": jnp.arange(n, dtype=jnp.int32) % model.num_classes}

    def sample(params, key):
        out = ddim_sample(key, apply_fn(params, None), sde, shape,
                          prediction=config.loss.prediction, num_steps=config.sample_steps,
                          clip_x0=True, cond=cond)
        x = jnp.clip(out.x, -1.0, 1.0)
        return x if cond is None or isinstance(cond, dict) else jnp.concatenate(
            [cond, x, cond_batch])

    return jax.jit(sample, out_shardings=replicated(mesh))


# ---- the loop --------------------------------------------------------------------------------
def train(config: TrainConfig, workdir, *, steps: int | None = None, data: str | None = None,
          mesh: Mesh | dict | None = None, progress: bool = True,
          max_steps: int | None = None) -> TrainState:
    """Train (or resume) the run described by ``config`` in ``workdir``; return the final state.

    Args:
      config: a `TrainConfig` (see `load_config`).
      workdir: output folder; an existing checkpoint there is resumed automatically.
      steps: override ``config.steps`` (the total number of optimizer steps).
      data: override ``config.data.source`` (a `jaxir.data.get_source` spec).
      mesh: a `jax.sharding.Mesh` with axes ("data", "fsdp"), or ``{"data": n, "fsdp": m}``
        overriding ``config.mesh``.
      progress: show a tqdm bar (process 0 only).
      max_steps: stop after this many steps in this call (testing / time-boxed jobs); a
        checkpoint is written as at any other stop.

    Stops early (with a checkpoint) on SIGTERM or Ctrl-C, at the next step boundary.
    Raises `CheckpointError` if the checkpoint in ``workdir`` is damaged or was made with a
    different model / SDE / loss config, `ConfigError` for an inconsistent config or a workdir
    in use by another run.
    """
    if steps is not None:
        config = dataclasses.replace(config, steps=int(steps))
    if data is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=data))
    if isinstance(mesh, dict):
        config = dataclasses.replace(config, mesh=dict(mesh))
    try:
        validate(config)
        if not isinstance(mesh, Mesh):
            mesh = make_mesh(**{"data": -1, "fsdp": 1, **config.mesh})
        n_dev = mesh.shape["data"] * mesh.shape["fsdp"]
        if config.data.batch_size % n_dev:
            raise ValueError(f"data.batch_size {config.data.batch_size} must be divisible by "
                             f"the mesh's data x fsdp = {n_dev} devices")
        size_kw = {} if config.data.image_size is None else {"size": config.data.image_size}
        source = get_source(config.data.source, **size_kw, **config.data.source_kwargs)
        probe = np.asarray(source[0]["image"])
        want_ch, what = config.model.in_channels, "model.in_channels"
        if config.loss.kind == "latent":
            want_ch, what = _latent_image_channels(config), "the autoencoder's in_channels"
        if probe.shape[-1] != want_ch:
            raise ValueError(f"data {config.data.source!r} has {probe.shape[-1]} channel(s) "
                             f"but {what} = {want_ch}")
    except ValueError as e:
        raise ConfigError(str(e)) from e
    primary = jax.process_index() == 0
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lock = lock_workdir(workdir) if primary else None
    try:
        return _train(config, workdir, mesh, source, probe, primary, progress, max_steps)
    finally:
        if lock is not None:
            lock.close()


def _latent_image_channels(config: TrainConfig) -> int:
    """Check a latent config against its autoencoder file; return the image channels."""
    from ..latent import load_autoencoder, resolve_autoencoder

    try:
        path = resolve_autoencoder(config.loss.options["autoencoder"])
    except FileNotFoundError as e:
        raise ValueError(f"loss.options['autoencoder']: {e}") from None
    ae = load_autoencoder(path).config
    m = config.model
    if (m.in_channels, m.out_channels, m.cond_channels) != (ae.latent_channels,
                                                             ae.latent_channels, ae.in_channels):
        raise ValueError(f"a latent U-Net for this autoencoder needs (in_channels, out_channels, "
                         f"cond_channels) = ({ae.latent_channels}, {ae.latent_channels}, "
                         f"{ae.in_channels}), got ({m.in_channels}, {m.out_channels}, "
                         f"{m.cond_channels})")
    return ae.in_channels


def _train(config, workdir, mesh, source, probe, primary, progress, max_steps):
    from tqdm.auto import tqdm

    cfg_dict = config_to_dict(config)

    in_ch = config.model.in_channels
    want_labels = (config.loss.kind == "classifier" or config.data.use_labels
                   or getattr(config.model, "num_classes", None) is not None)

    # -- model, optimizer, state -------------------------------------------------------------
    sde = build_sde(config.sde)
    graphdef, state, shardings, tx, schedule = init_train_state(config, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep, async_save=config.async_save)
    data_state = None
    if ckpt.latest_step() is not None:
        saved_cfg = ckpt.read_json("config")
        diffs = resume_diffs(saved_cfg, cfg_dict) if saved_cfg else []
        try:
            state, data_state, _ = ckpt.restore(state)
        except CheckpointError as e:
            if diffs:
                raise CheckpointError(f"{e}. The config differs from the checkpoint's at "
                                      f"{format_diffs(diffs)}") from e
            raise
        if diffs:
            raise CheckpointError(
                f"cannot resume {str(workdir)!r} with a different config: {format_diffs(diffs)}"
                " (use a new workdir)")
        data_state = data_state or None
    if primary:
        (workdir / "config.json").write_text(json.dumps(cfg_dict, indent=1))
        if config.loss.kind == "latent":
            import shutil

            from ..latent import AUTOENCODER_FILE, resolve_autoencoder

            # the copy a latent run keeps of its autoencoder: restoring needs only the workdir
            src = resolve_autoencoder(config.loss.options["autoencoder"])
            dst = workdir / AUTOENCODER_FILE
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)

    apply_fn = _apply_fn(config, graphdef)
    loss_fn = build_loss(config, sde)
    step_fn = make_train_step(
        loss_fn, apply_fn, tx, ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup, compute_dtype=config.optim.compute_dtype,
        lr_schedule=schedule, dropout=getattr(config.model, "dropout", 0.0) > 0)
    bsh = batch_sharding(mesh)
    step_fn = jit_train_step(step_fn, shardings, bsh)

    loader = DataLoader(source, config.data.batch_size, seed=config.seed,
                        random_flip=config.data.random_flip, random_crop=config.data.random_crop,
                        process_index=jax.process_index(), process_count=jax.process_count(),
                        prefetch=config.data.prefetch, state=data_state)

    sampler = None
    if config.sample_every and config.loss.kind != "classifier":
        shape = (config.num_samples, *probe.shape[:2], in_ch)
        if config.data.random_crop:
            shape = (config.num_samples, config.data.random_crop, config.data.random_crop, in_ch)
        cond_batch = None
        if config.loss.kind == "conditional":
            cond_batch = jnp.asarray(np.stack([source[i % len(source)]["image"]
                                               for i in range(config.num_samples)]))
            cond_batch = cond_batch.astype(jnp.float32) / 127.5 - 1.0
        sampler = _sampler(config, apply_fn, sde, shape, mesh, cond_batch)

    def write_samples(s):
        images = jax.device_get(sampler(state.ema_params, jax.random.key(config.seed + 7)))
        if primary:
            save_image_grid(images, workdir / f"samples_{s:06d}.png",
                            ncol=config.num_samples if config.loss.kind == "conditional" else None)

    metrics_path = workdir / "metrics.jsonl"
    start = int(jax.device_get(state.step))
    total = config.steps
    end = total if max_steps is None else min(total, start + max_steps)
    pending, t_last, s_last = [], time.perf_counter(), start

    def flush(s):
        nonlocal pending, t_last, s_last
        if not pending:
            return
        rows = jax.device_get(pending)
        now = time.perf_counter()
        rec = {"step": s}
        for k in rows[0]:
            rec[k] = float(np.mean([float(r[k]) for r in rows]))
        rec["steps_per_sec"] = (s - s_last) / max(now - t_last, 1e-9)
        rec["time"] = time.time()
        pending, t_last, s_last = [], now, s
        if primary:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", sps=f"{rec['steps_per_sec']:.2f}")

    bar = None
    s = start
    try:
        with GracefulStop() as stop:
            bar = tqdm(total=total, initial=start, disable=not (progress and primary),
                       desc="train", dynamic_ncols=True)
            while s < end:
                local = next(loader)
                if not want_labels:
                    local = {"image": local["image"]}
                state, metrics = step_fn(state, global_batch(local, bsh))
                s += 1
                pending.append(metrics)
                bar.update(1)
                if config.log_every and s % config.log_every == 0:
                    flush(s)
                if config.save_every and s % config.save_every == 0:
                    ckpt.save(state, data_state=loader.state, config=cfg_dict)
                if sampler is not None and s % config.sample_every == 0 and s < end:
                    write_samples(s)
                if stop.requested:
                    break
            flush(s)
            ckpt.save(state, data_state=loader.state, config=cfg_dict)
            if sampler is not None:
                write_samples(s)
            if config.loss.kind == "autoencoder" and s >= total:
                from ..latent import AUTOENCODER_FILE, export_autoencoder

                export_autoencoder(config.model, graphdef, state.ema_params, source,
                                   workdir / AUTOENCODER_FILE, primary)
    finally:
        loader.close()
        ckpt.close()
        if bar is not None:
            bar.close()
        if primary and metrics_path.exists():
            plot_metrics(metrics_path, workdir / "loss.png")
    return state
