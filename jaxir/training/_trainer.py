"""`train(config, workdir)`: the whole loop, resumable, on any mesh, on one host or many.

What lands in ``workdir``: ``config.json``, ``checkpoints/STEP/`` (orbax), ``metrics.jsonl``
(one JSON object per logged step: loss, the loss's aux metrics, grad norm, lr, steps/s),
``loss.png`` and, when ``sample_every > 0``, ``samples_STEP.png`` (DDIM with the EMA params).
Running `train` again on the same workdir resumes from the latest checkpoint: same state,
same data stream, so an interrupted run ends where an uninterrupted one does.

The step runs on the flat layout (`jaxir.training.FlatLayout`: parameters, AdamW moments and
EMA as single vectors) unless the mesh shards parameters over "fsdp"; checkpoints and the
returned state are in the tree layout either way. Metrics stay on the device between logging
steps: the loop synchronises with the host only to log, save and preview.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ..data import DataLoader, get_source
from ._build import apply_fn_of, build_loss, family_of, init_train_state, preview_sampler
from ._checkpoint import Checkpointer, CheckpointError, GracefulStop
from ._config import ConfigError, TrainConfig, build_sde, config_to_dict
from ._layout import step_layout
from ._outputs import plot_metrics, save_image_grid
from ._sharding import batch_sharding, global_batch, make_mesh
from ._step import jit_train_step, make_train_step
from ._validate import validate
from ._workdir import format_diffs, lock_workdir, resume_diffs

__all__ = ["train"]


def train(config: TrainConfig, workdir, *, steps: int | None = None, data: str | None = None,
          mesh: Mesh | dict | None = None, progress: bool = True,
          max_steps: int | None = None) -> "TrainState":  # noqa: F821
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

    Returns the final `TrainState` (tree layout). Stops early (with a checkpoint) on SIGTERM or
    Ctrl-C, at the next step boundary. Raises `CheckpointError` if the checkpoint in
    ``workdir`` is damaged or was made with a different model / SDE / loss config,
    `ConfigError` for an inconsistent config or a workdir in use by another run.
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
        family = family_of(config)
        want_ch, what = config.model.in_channels, "model.in_channels"
        if family is not None:
            options = family.parse_options(config.loss.options)
            if family.check_files is not None:
                family.check_files(config, options)
            want_ch = family.image_channels(config)
            what = f"the {family.name} model's image channels"
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


def _restore(ckpt: Checkpointer, state, cfg_dict):
    """The latest checkpoint into ``state``'s structure and shardings (or ``state`` itself
    and no data position when there is none)."""
    if ckpt.latest_step() is None:
        return state, None
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
        raise CheckpointError(f"cannot resume {str(ckpt.directory.parent)!r} with a different "
                              f"config: {format_diffs(diffs)} (use a new workdir)")
    return state, data_state or None


def _train(config, workdir, mesh, source, probe, primary, progress, max_steps):
    from tqdm.auto import tqdm

    cfg_dict = config_to_dict(config)
    family = family_of(config)
    in_ch = config.model.in_channels
    want_labels = (config.loss.kind == "classifier" or config.data.use_labels
                   or getattr(config.model, "num_classes", None) is not None)

    # -- model, optimizer, state (tree layout: the checkpoint's) ---------------------------
    sde = build_sde(config.sde)
    graphdef, state, tree_sh, tx, schedule = init_train_state(config, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep, async_save=config.async_save)
    state, data_state = _restore(ckpt, state, cfg_dict)
    if primary:
        (workdir / "config.json").write_text(json.dumps(cfg_dict, indent=1))
        if family is not None and family.prepare_workdir is not None:
            family.prepare_workdir(config, family.parse_options(config.loss.options), workdir)

    # -- the step, on the flat layout unless parameters are sharded over "fsdp" -------------
    state, shardings, layout = step_layout(state, tx, mesh, config.fsdp_min_size)
    to_tree = None if layout is None else jax.jit(layout.to_tree, out_shardings=tree_sh)
    apply_fn = apply_fn_of(config, graphdef)
    step_fn = make_train_step(
        build_loss(config, sde), apply_fn, tx, ema_decay=config.optim.ema_decay,
        ema_warmup=config.optim.ema_warmup, compute_dtype=config.optim.compute_dtype,
        lr_schedule=schedule, dropout=getattr(config.model, "dropout", 0.0) > 0, layout=layout)
    bsh = batch_sharding(mesh)
    step_fn = jit_train_step(step_fn, shardings, bsh)

    def tree_state(s):
        return s if to_tree is None else to_tree(s)

    def ema_tree(s):
        return s.ema_params if layout is None else layout.unravel(s.ema_params)

    loader = DataLoader(source, config.data.batch_size, seed=config.seed,
                        random_flip=config.data.random_flip, random_crop=config.data.random_crop,
                        process_index=jax.process_index(), process_count=jax.process_count(),
                        prefetch=config.data.prefetch, state=data_state)

    sampler, paired_grid = None, family is not None and family.preview
    if config.sample_every and config.loss.kind != "classifier":
        shape = (config.num_samples, *probe.shape[:2], in_ch)
        if config.data.random_crop:
            shape = (config.num_samples, config.data.random_crop, config.data.random_crop, in_ch)
        cond_batch = None
        if paired_grid:
            cond_batch = jnp.asarray(np.stack([source[i % len(source)]["image"]
                                               for i in range(config.num_samples)]))
            cond_batch = cond_batch.astype(jnp.float32) / 127.5 - 1.0
        sampler = preview_sampler(config, apply_fn, sde, shape, mesh, cond_batch)

    def write_samples(s):
        images = jax.device_get(sampler(ema_tree(state), jax.random.key(config.seed + 7)))
        if primary:
            save_image_grid(images, workdir / f"samples_{s:06d}.png",
                            ncol=config.num_samples if paired_grid else None)

    def save():
        ckpt.save(tree_state(state), data_state=loader.state, config=cfg_dict)

    metrics_path = workdir / "metrics.jsonl"
    start = int(jax.device_get(state.step))
    total = config.steps
    end = total if max_steps is None else min(total, start + max_steps)
    pending, t_last, s_last = [], time.perf_counter(), start

    def flush(s):
        nonlocal pending, t_last, s_last
        if not pending:
            return
        rows = jax.device_get(pending)  # the one host synchronisation per logging interval
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
                    save()
                if sampler is not None and s % config.sample_every == 0 and s < end:
                    write_samples(s)
                if stop.requested:
                    break
            flush(s)
            save()
            if sampler is not None:
                write_samples(s)
            if config.loss.kind == "autoencoder" and s >= total:
                from ..latent import export_autoencoder

                export_autoencoder(config.model, graphdef, ema_tree(state), source,
                                   workdir / "autoencoder.npz", primary)
    finally:
        loader.close()
        ckpt.close()
        if bar is not None:
            bar.close()
        if primary and metrics_path.exists():
            plot_metrics(metrics_path, workdir / "loss.png")
    return tree_state(state)
