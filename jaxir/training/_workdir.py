"""A training workdir as the library reads it: its config, its trained network, its lock.

``workdir/config.json`` (and the same config inside every checkpoint) says what was trained;
`load_model_fn` turns the latest checkpoint into a ``model_fn`` for any sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._checkpoint import Checkpointer
from ._config import ConfigError, TrainConfig, build_sde, config_diff, config_from_dict, \
    config_to_dict

__all__ = ["load_config_from_workdir", "load_model_fn"]

# Config sections that must not change when resuming (they define what was trained).
_FROZEN_SECTIONS = ("model.", "sde.", "loss.")


def load_config_from_workdir(workdir) -> TrainConfig:
    """The `TrainConfig` a workdir was trained with (``config.json``, else the checkpoint's)."""
    workdir = Path(workdir)
    p = workdir / "config.json"
    if p.exists():
        return config_from_dict(json.loads(p.read_text()))
    ckpt = Checkpointer(workdir / "checkpoints")
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"{str(workdir)!r} has no config.json and no checkpoint")
    return config_from_dict(ckpt.read_json("config"))


def load_model_fn(workdir, ema: bool = True, step: int | None = None, *, compute_dtype=None):
    """``(model_fn, sde, config)`` from a training workdir's latest (or ``step``) checkpoint.

    ``model_fn(x, t, cond)`` follows the jaxir convention (`jaxir.models.make_model_fn`) with
    the EMA params (``ema=True``) or the raw ones, on the default device (``compute_dtype``:
    the network's mixed precision, see `make_model_fn`); ``sde`` is the `jaxir.sdes` object it
    was trained with; ``config`` the `TrainConfig`. Raises `FileNotFoundError` for a workdir
    without a checkpoint, `CheckpointError` for a damaged or mismatched one and `ValueError`
    for an autoencoder run (load it with `jaxir.latent.load_autoencoder`).
    """
    import jax
    from flax import nnx

    from ..models import (
        AutoencoderConfig,
        ClassifierConfig,
        NoisyClassifier,
        UNet,
        make_model_fn,
        split_model,
    )
    from ._step import make_apply_fn

    workdir = Path(workdir)
    config = load_config_from_workdir(workdir)
    ckpt = Checkpointer(workdir / "checkpoints")
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {str(workdir / 'checkpoints')!r}")
    if isinstance(config.model, AutoencoderConfig):
        ckpt.close()
        raise ValueError(f"{str(workdir)!r} holds an autoencoder (latent stage 1), not a "
                         "diffusion model: load it with jaxir.latent.load_autoencoder(workdir)")
    is_clf = isinstance(config.model, ClassifierConfig)
    cls = NoisyClassifier if is_clf else UNet
    graphdef, abstract = split_model(nnx.eval_shape(lambda: cls(config.model,
                                                                 rngs=nnx.Rngs(0))))
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev),
                            abstract)
    try:
        params = ckpt.restore_params(abstract, step, ema=ema)
    finally:
        ckpt.close()
    model_fn = (make_apply_fn(graphdef, classifier=True)(params) if is_clf
                else make_model_fn(graphdef, params, compute_dtype=compute_dtype))
    return model_fn, build_sde(config.sde), config


def resume_diffs(saved: dict, current: dict) -> list[tuple]:
    """The differences in the sections that define what was trained (model, SDE, loss)
    between a checkpoint's config and the current one, both read through `config_from_dict`
    (so an older ``config.json`` whose options omit defaults compares equal)."""
    try:
        saved = config_to_dict(config_from_dict(saved))
    except (ValueError, TypeError):
        pass  # compare as stored: the differences will name what does not fit
    return [d for d in config_diff(saved, current) if d[0].startswith(_FROZEN_SECTIONS)]


def format_diffs(diffs) -> str:
    return "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, a, b in diffs)


def lock_workdir(workdir: Path):
    """An exclusive advisory lock on ``workdir/.lock`` (two runs must not share a workdir)."""
    import fcntl

    f = open(workdir / ".lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ConfigError(f"another training process is using {str(workdir)!r} "
                          "(it holds workdir/.lock)") from None
    return f
