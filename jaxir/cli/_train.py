"""``jaxir train`` and ``jaxir sample``: parsers, checks and entry points.

The library does the work (`jaxir.training.train`, `jaxir.training.load_model_fn`,
`jaxir.restore.restore_learned`); this module turns user mistakes (a missing or broken config, a
bad ``--set`` or ``--mesh``, a workdir that is a file or holds no run, an output that exists or
cannot be written) into one-line `UsageError`s before anything is computed or written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    UsageError,
    check_input_file,
    check_output_dir,
    check_output_file,
    nonnegative_int,
    positive_int,
)
from ._devices import parse_mesh, wants_devices
from ._sample import _save_grid, add_sample_device_options

#: `jaxir.training.SAMPLERS` (a test checks they are equal; kept here so --help needs no jax)
SAMPLERS = ("ddim", "ddpm", "dpm", "ode")


def _load_config(spec: str):
    """`jaxir.training.load_config` with every failure of the user's file as a `UsageError`."""
    from ..training import load_config

    try:
        return load_config(spec)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except SyntaxError as e:
        raise UsageError(f"config {spec!r} has a syntax error at line {e.lineno}: {e.msg}") \
            from None
    except Exception as e:  # the config is user code: any error in it is the user's to fix
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UsageError(f"config {spec!r} failed: {type(e).__name__}: {msg}") from None


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a dict"
    return type(v).__name__


def _apply_overrides(config, assignments):
    """`jaxir.training.override`, after checking each value against the field's current type
    (``optim.lr=abc`` is refused here instead of failing deep inside the optimizer)."""
    from ..training import config_to_dict, override

    d = config_to_dict(config)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set must look like section.field=value, got {item!r}")
        node = d
        for p in key.strip().split(".")[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        old = node.get(key.strip().split(".")[-1]) if isinstance(node, dict) else None
        try:
            new = override(config, [item])
        except (ValueError, TypeError, KeyError) as e:
            raise UsageError(f"--set {item!r}: {e}") from None
        if old is not None:
            parts = key.strip().split(".")
            val = config_to_dict(new)
            for p in parts:
                val = val[p]
            if val is not None and _kind(val) != _kind(old) and not (
                    isinstance(old, (int, float)) and isinstance(val, (int, float))
                    and not isinstance(old, bool) and not isinstance(val, bool)):
                raise UsageError(f"--set {item!r}: {key.strip()} is {_kind(old)} (now "
                                 f"{old!r}), got {_kind(val)}")
    try:
        return override(config, assignments)
    except (ValueError, TypeError, KeyError) as e:
        raise UsageError(f"--set: {e}") from None


# ---- train -----------------------------------------------------------------------------------
def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to an ``argparse`` sub-parser set (``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "train", help="train a diffusion model from a config (resumes from WORKDIR)",
        description="Train a model from a config file; rerun the same command to resume.")
    p.add_argument("--config", required=True,
                   help="a config .py file with get_config(), or a shipped config name "
                        "(digits_small, photos64, sr3_photos, ...)")
    p.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, PNGs); "
                   "an existing run there is resumed")
    p.add_argument("--data", default=None, help="data source spec, e.g. digits, photos, "
                   "folder:PATH, tfds:NAME (default: the config's)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="total optimizer steps (default: the config's)")
    p.add_argument("--mesh", default=None,
                   help="device mesh, e.g. data=8,fsdp=1 (default: data over all devices)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config field, e.g. optim.lr=1e-3 "
                   "(repeatable)")
    p.add_argument("--coordinator", default=None,
                   help="multi-host: coordinator host:port, or auto (TPU pods, SLURM)")
    p.add_argument("--num-processes", type=positive_int, default=None,
                   help="multi-host: number of processes (with --coordinator HOST:PORT)")
    p.add_argument("--process-id", type=nonnegative_int, default=None,
                   help="multi-host: this process's index (with --coordinator HOST:PORT)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return p


def _cmd_train(args) -> int:
    try:
        mesh = parse_mesh(args.mesh) if args.mesh else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_output_dir(args.workdir, what="--workdir")
    config = _load_config(args.config)
    if args.overrides:
        config = _apply_overrides(config, args.overrides)

    from ..training import CheckpointError, ConfigError, initialize_distributed, train

    try:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    try:
        state = train(config, args.workdir, steps=args.steps, data=args.data, mesh=mesh,
                      progress=not args.no_progress)
    except (CheckpointError, ConfigError, FileNotFoundError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    import jax

    if jax.process_index() == 0:
        print(f"trained to step {int(jax.device_get(state.step))}; outputs in {args.workdir}")
    return 0


# ---- sample ----------------------------------------------------------------------------------
def add_sample_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``sample`` to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser(
        "sample", help="draw samples from a trained workdir into a PNG grid, or restore an "
                       "image with a learned restoration model (--lq)",
        description="Sample from the latest checkpoint of a training workdir. With --lq, restore "
                    "that degraded image with a learned restoration model (SR3, IR-SDE, GOUB, "
                    "I2SB, DDBM, flow, ResShift, latent, regression), its sampler chosen by "
                    "the workdir's loss kind.")
    p.add_argument("--workdir", required=True, help="a jaxir train output folder")
    p.add_argument("--lq", default=None, metavar="INPUT.png",
                   help="restore this degraded image (learned restoration models only); for "
                        "an sr:F model it may also be the small LR image")
    p.add_argument("--mask", default=None, metavar="MASK.png",
                   help="with --lq and a Palette inpainting / uncropping model: the observed "
                        "pixels (white = observed); they are kept and the holes generated")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="unconditional sampler (default ddim; not with --lq)")
    p.add_argument("--n", type=positive_int, default=None,
                   help="number of samples (default 16; with --lq: 1)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="sampler steps (default 50; with --lq the family's default)")
    p.add_argument("--output", default=None,
                   help="PNG file for the grid / the restoration (or give --out-dir)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--label", type=nonnegative_int, default=None,
                   help="class label (class-conditional models)")
    p.add_argument("--no-ema", action="store_true", help="use the raw params, not the EMA")
    add_sample_device_options(p)
    p.set_defaults(func=_cmd_sample)
    return p


def _check_workdir(workdir) -> Path:
    """A folder that holds a run (``config.json`` or a non-empty ``checkpoints/``), checked
    without touching it (opening the checkpoint manager would create ``checkpoints/``)."""
    wd = Path(workdir)
    if wd.exists() and not wd.is_dir():
        raise UsageError(f"--workdir {str(wd)!r} is a file, not a training folder")
    ck = wd / "checkpoints"
    if not (wd / "config.json").is_file() and not (ck.is_dir() and any(ck.iterdir())):
        why = "" if wd.exists() else " (the folder does not exist)"
        raise UsageError(f"--workdir {str(wd)!r} holds no training run: no config.json and no "
                         f"checkpoint{why}; train first with jaxir train --config C "
                         f"--workdir {str(wd)}")
    return wd


def _cmd_restore_lq(args, out: Path) -> int:
    """``jaxir sample --lq``: one image through `jaxir.restore.restore_learned`."""
    import time

    import jax
    import jax.numpy as jnp

    from ..restore._io import load_image, load_mask, save_image
    from ..restore._learned import load_learned, prepare_lq, restore_learned
    from ..restore._progress import StepBar, with_step_callback
    from ..training import CheckpointError

    if args.sampler is not None or args.label is not None or args.n is not None:
        raise UsageError("--sampler, --label and --n are for unconditional sampling; with --lq "
                         "the workdir's loss kind picks the sampler (use --steps, --seed)")
    check_input_file(args.lq, "--lq")
    if args.mask is not None:
        check_input_file(args.mask, "--mask")
    try:
        model = load_learned(args.workdir, ema=not args.no_ema)
        lq = prepare_lq(load_image(args.lq, model.channels, max_side=4096), model)
        mask = None
        if args.mask is not None:
            mask = load_mask(args.mask, max_side=4096)
        bar = StepBar(f"{model.kind} restoration")
        shown = model._replace(model_fn=with_step_callback(model.model_fn, bar))
        t0 = time.perf_counter()
        res = _run_with_total(
            lambda y, k, m: restore_learned(shown, y, k, steps=args.steps, mask=m), bar,
            lq, jax.random.key(args.seed), mask)
        x = jax.device_get(jnp.clip(res.x, -1.0, 1.0))
    except (FileNotFoundError, IsADirectoryError, CheckpointError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if not bool(res.finite):
        print("jaxir: warning: the restoration is not finite")
    path = save_image(out, x[0])
    print(f"restored {args.lq} with the {model.kind} model of {args.workdir} "
          f"(NFE {int(res.nfe)}, {time.perf_counter() - t0:.1f} s incl. compilation) -> {path}")
    return 0


def _cmd_sample(args) -> int:
    _check_workdir(args.workdir)
    sharded = args.out_dir is not None or wants_devices(args)
    if sharded and (args.lq is not None or args.mask is not None):
        raise UsageError("--lq / --mask restore one image; --out-dir, --mesh and --coordinator "
                         "are for drawing samples")
    if sharded:
        if (args.out_dir is None) == (args.output is None):
            raise UsageError("give exactly one of --out-dir DIR (shards) and --output GRID.png")
        out = None
    elif args.output is None:
        raise UsageError("give --output GRID.png (or --out-dir DIR to write samples by shard)")
    else:
        out = check_output_file(args.output, overwrite=args.overwrite,
                                inputs=(args.lq, args.mask))
    import jax
    import jax.numpy as jnp

    from ..training import (
        LEARNED_RESTORATION_KINDS,
        CheckpointError,
        load_config_from_workdir,
        load_model_fn,
        sample_workdir,
        save_image_grid,
    )

    try:
        config = load_config_from_workdir(args.workdir)
    except (FileNotFoundError, CheckpointError, ValueError, KeyError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    kind = config.loss.kind
    if args.lq is not None:
        if kind not in LEARNED_RESTORATION_KINDS:
            raise UsageError(f"--lq needs a learned restoration model; {args.workdir!r} holds "
                             f"a {kind!r} model (an unconditional prior: restore with "
                             "jaxir restore, or drop --lq to sample from it)")
        return _cmd_restore_lq(args, out)
    if args.mask is not None:
        raise UsageError("--mask goes with --lq (a Palette inpainting / uncropping model)")
    if kind in LEARNED_RESTORATION_KINDS:
        raise UsageError(f"{args.workdir!r} holds a {kind!r} restoration model: give the "
                         "degraded image with --lq INPUT.png")
    if kind == "classifier":
        raise UsageError(f"jaxir sample draws unconditional / class-conditional samples; "
                         f"{args.workdir!r} holds a classifier")
    m = config.model
    if args.label is not None:
        if getattr(m, "num_classes", None) is None:
            raise UsageError("--label needs a class-conditional model (model.num_classes)")
        if args.label >= m.num_classes:
            raise UsageError(f"--label {args.label}: the model has {m.num_classes} classes")
    if sharded:  # over a mesh / several hosts: jaxir.cli._sample
        from ._sample import cmd_sample_sharded

        return cmd_sample_sharded(args)
    sampler = args.sampler or "ddim"
    n = args.n or 16
    steps = args.steps or 50
    try:
        loaded = load_model_fn(args.workdir, ema=not args.no_ema)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    from ..restore._progress import StepBar, with_step_callback

    bar = StepBar(f"{sampler} sampling ({n} images)")
    key = jax.random.key(args.seed)
    res = _run_with_total(
        lambda k: sample_workdir(k, loaded, n, sampler=sampler, steps=steps, label=args.label,
                                 model_fn_wrapper=lambda f: with_step_callback(f, bar)),
        bar, key)
    if not bool(res.finite):
        print("jaxir: warning: some samples are not finite")
    _save_grid(save_image_grid, jnp.clip(res.x, -1, 1), out)
    print(f"wrote {n} {sampler} samples ({steps} steps) to {out}")
    return 0


def _run_with_total(fn, bar, *args):
    """``jax.jit(fn)(*args)`` compiled ahead, so that the sampler's NFE (a Python int once
    traced) sets the progress bar's total before the first step runs; the bar is closed."""
    import jax

    seen = {}

    def traced(*a):
        out = fn(*a)
        seen["nfe"] = getattr(out, "nfe", None)
        return out

    try:
        compiled = jax.jit(traced).lower(*args).compile()
        if isinstance(seen.get("nfe"), int):
            bar.set_total(seen["nfe"])
        out = compiled(*args)
        jax.block_until_ready(out)
        jax.effects_barrier()
        return out
    finally:
        bar.close()
