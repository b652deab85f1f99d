"""``jaxir train`` and ``jaxir sample``: parser builders (the library functions they call,
`load_model_fn` and `load_config_from_workdir`, live in ``jaxir.training._workdir``).

`jaxir.cli` calls ``add_train_parser(subparsers)`` and ``add_sample_parser(subparsers)``;
each sets ``func`` on its sub-parser, which returns an exit code. User mistakes (a missing
config, a bad ``--mesh``, a damaged checkpoint) raise `jaxir.cli.UsageError` (one line, exit
code 2). Heavy imports happen inside the commands, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import positive_int as _positive_int
from ._workdir import load_model_fn

SAMPLERS = ("ddim", "ddpm", "dpm", "ode")


def _usage_error(msg: str) -> Exception:
    from jaxir.cli import UsageError  # lazy: jaxir.cli imports this module

    return UsageError(msg)


def parse_mesh(spec: str) -> dict:
    """``"data=8,fsdp=1"`` -> ``{"data": 8, "fsdp": 1}`` (``data=-1``: all devices left)."""
    out = {}
    for part in spec.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key not in ("data", "fsdp") or key in out:
            raise ValueError(f"--mesh must look like data=8,fsdp=1, got {spec!r}")
        try:
            out[key] = int(val)
        except ValueError:
            raise ValueError(f"--mesh values must be integers, got {spec!r}") from None
        if out[key] < 1 and not (key == "data" and out[key] == -1):
            raise ValueError(f"--mesh sizes must be positive (data may be -1), got {spec!r}")
    return out


# ---- train -----------------------------------------------------------------------------------
def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to an ``argparse`` sub-parser set (``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "train", help="train a diffusion model from a config (resumes from WORKDIR)",
        description="Train a model from a config file; rerun the same command to resume.")
    p.add_argument("--config", required=True,
                   help="a config .py file with get_config(), or a name in experiments/configs")
    p.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, PNGs)")
    p.add_argument("--data", default=None, help="data source spec, e.g. digits, folder:PATH")
    p.add_argument("--steps", type=_positive_int, default=None, help="total optimizer steps")
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=8,fsdp=1")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config field, e.g. optim.lr=1e-3")
    p.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port, or auto (TPU pods, SLURM)")
    p.add_argument("--num-processes", type=_positive_int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return p


def _cmd_train(args) -> int:
    from ._checkpoint import CheckpointError
    from ._config import ConfigError, load_config, override
    from ._sharding import initialize_distributed

    try:
        mesh = parse_mesh(args.mesh) if args.mesh else None
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
        config = load_config(args.config)
        if args.overrides:
            config = override(config, args.overrides)
    except (ValueError, FileNotFoundError) as e:
        raise _usage_error(str(e)) from None
    from ._trainer import train

    try:
        state = train(config, args.workdir, steps=args.steps, data=args.data, mesh=mesh,
                      progress=not args.no_progress)
    except (CheckpointError, ConfigError, FileNotFoundError) as e:
        raise _usage_error(str(e)) from None
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
    p.add_argument("--workdir", required=True)
    p.add_argument("--lq", default=None, metavar="INPUT.png",
                   help="restore this degraded image (learned restoration models only); for "
                        "an sr:F model it may also be the small LR image")
    p.add_argument("--mask", default=None, metavar="MASK.png",
                   help="with --lq and a Palette inpainting / uncropping model: the observed "
                        "pixels (white = observed); they are kept and the holes generated")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="unconditional sampler (default ddim; not with --lq)")
    p.add_argument("--n", type=_positive_int, default=None,
                   help="number of samples (default 16; with --lq: 1)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="sampler steps (default 50; with --lq the family's default)")
    p.add_argument("--output", required=True, help="PNG file for the grid / the restoration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, default=None, help="class label (class-conditional)")
    p.add_argument("--no-ema", action="store_true", help="use the raw params, not the EMA")
    p.set_defaults(func=_cmd_sample)
    return p


def _cmd_restore_lq(args) -> int:
    """``jaxir sample --lq``: one image through `jaxir.restore.restore_learned`."""
    import time

    import jax
    import jax.numpy as jnp

    from ..restore._io import load_image, load_mask, save_image
    from ..restore._learned import load_learned, prepare_lq, restore_learned
    from ._checkpoint import CheckpointError

    if args.sampler is not None or args.label is not None or args.n is not None:
        raise _usage_error("--sampler, --label and --n are for unconditional sampling; with --lq "
                           "the workdir's loss kind picks the sampler (use --steps, --seed)")
    try:
        model = load_learned(args.workdir, ema=not args.no_ema)
        lq = prepare_lq(load_image(args.lq, model.channels), model)
        mask = None
        if args.mask is not None:
            mask = load_mask(args.mask)
        run = jax.jit(lambda y, k, m: restore_learned(model, y, k, steps=args.steps, mask=m))
        t0 = time.perf_counter()
        out = run(lq, jax.random.key(args.seed), mask)
        x = jax.device_get(jnp.clip(out.x, -1.0, 1.0))
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        raise _usage_error(str(e)) from None
    if not bool(out.finite):
        print("jaxir: warning: the restoration is not finite")
    path = save_image(args.output, x[0])
    print(f"restored {args.lq} with the {model.kind} model of {args.workdir} "
          f"(NFE {int(out.nfe)}, {time.perf_counter() - t0:.1f} s incl. compilation) -> {path}")
    return 0


def _cmd_sample(args) -> int:
    import jax
    import jax.numpy as jnp

    from .. import samplers
    from ._checkpoint import CheckpointError
    from ._config import LEARNED_RESTORATION_KINDS
    from ._outputs import save_image_grid
    from ._workdir import load_config_from_workdir

    try:
        config = load_config_from_workdir(args.workdir)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        raise _usage_error(str(e)) from None
    kind = config.loss.kind
    if args.lq is not None:
        if kind not in LEARNED_RESTORATION_KINDS:
            raise _usage_error(f"--lq needs a learned restoration model; {args.workdir!r} holds "
                               f"a {kind!r} model (an unconditional prior: restore with "
                               "jaxir restore, or drop --lq to sample from it)")
        return _cmd_restore_lq(args)
    if args.mask is not None:
        raise _usage_error("--mask goes with --lq (a Palette inpainting / uncropping model)")
    if kind in LEARNED_RESTORATION_KINDS:
        raise _usage_error(f"{args.workdir!r} holds a {kind!r} restoration model: give the "
                           "degraded image with --lq INPUT.png")
    if kind == "classifier":
        raise _usage_error(f"jaxir sample draws unconditional / class-conditional samples; "
                           f"{args.workdir!r} holds a classifier")
    args.sampler = args.sampler or "ddim"
    args.n = args.n or 16
    args.steps = args.steps or 50
    try:
        model_fn, sde, config = load_model_fn(args.workdir, ema=not args.no_ema)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        raise _usage_error(str(e)) from None
    m = config.model
    size = config.data.random_crop or config.data.image_size or m.image_size
    shape = (args.n, size, size, m.in_channels)
    cond = None
    if getattr(m, "num_classes", None) is not None:
        labels = (jnp.full((args.n,), args.label, jnp.int32) if args.label is not None
                  else jnp.arange(args.n, dtype=jnp.int32) % m.num_classes)
        cond = {"label": labels}
    elif args.label is not None:
        raise _usage_error("--label needs a class-conditional model (model.num_classes)")
    kw = dict(prediction=config.loss.prediction, num_steps=args.steps, cond=cond)
    key = jax.random.key(args.seed)
    fns = {
        "ddim": lambda: samplers.ddim_sample(key, model_fn, sde, shape, clip_x0=True, **kw),
        "ddpm": lambda: samplers.ddpm_sample(key, model_fn, sde, shape, clip_x0=True, **kw),
        "dpm": lambda: samplers.dpm_solver_sample(key, model_fn, sde, shape, clip_x0=True, **kw),
        "ode": lambda: samplers.ode_sample(key, model_fn, sde, shape, denoise=True, **kw),
    }
    out = jax.jit(fns[args.sampler])()
    if not bool(out.finite):
        print("jaxir: warning: some samples are not finite")
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(jnp.clip(out.x, -1, 1), out_path)
    print(f"wrote {args.n} {args.sampler} samples ({args.steps} steps) to {out_path}")
    return 0
