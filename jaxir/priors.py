"""Trained priors as single ``.npz`` files: export from a training run, load as a ``model_fn``.

A prior file holds the EMA parameters of a U-Net (one array per parameter, keyed by its path in
the NNX state) and, under the key ``"__config__"``, the run's `TrainConfig` as UTF-8 JSON bytes.
It is read with ``np.load(..., allow_pickle=False)``: nothing is unpickled.

The package ships ``photos64`` (``jaxir/assets/photos64.npz``): an unconditional VP prior on
64×64 RGB crops of the offline ``photos`` training split, trained with
``experiments/configs/photos64.py`` (see ``experiments/priors/README.md`` for the command, the
log and the time it took).

    >>> prior = load_prior("photos64")                                   # doctest: +SKIP
    >>> x0 = jaxir.ddim_sample(prior.model_fn, prior.sde, key, (4, 64, 64, 3),
    ...                        prediction=prior.prediction).x           # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["Prior", "export_prior", "load_prior", "SHIPPED", "prior_path"]

_ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED = ("photos64",)
_CONFIG_KEY = "__config__"


class Prior(NamedTuple):
    """A loaded prior: ``model_fn(x, t, cond=None)`` with its SDE and prediction type."""

    model_fn: Any
    sde: Any
    prediction: str
    image_size: int
    channels: int
    config: Any  # TrainConfig
    graphdef: Any
    params: Any


def prior_path(name_or_path) -> Path:
    """The file of a shipped prior name (``"photos64"``) or an explicit path."""
    s = str(name_or_path)
    if s in SHIPPED:
        return _ASSETS / f"{s}.npz"
    p = Path(s)
    if p.suffix != ".npz" and not p.exists():
        raise FileNotFoundError(f"no prior {s!r}: give a path to a .npz prior file or one of the "
                                f"shipped names {list(SHIPPED)}")
    return p


def _flat_keys(params) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]


def export_prior(workdir, out_path, *, ema: bool = True, step: int | None = None,
                 dtype: str = "float32") -> Path:
    """Write a training run's (EMA) parameters and config to one ``.npz`` prior file.

    ``dtype`` "float16" halves the file (values are cast back to float32 on load; the relative
    rounding of 5e-4 is far below the network's own error).
    """
    from .training import config_to_dict
    from .training._checkpoint import Checkpointer
    from .training import load_config_from_workdir

    workdir, out_path = Path(workdir), Path(out_path)
    config = load_config_from_workdir(workdir)
    graphdef, abstract = _abstract_unet(config)
    ckpt = Checkpointer(workdir / "checkpoints")
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {str(workdir / 'checkpoints')!r}")
        dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev),
                                abstract)
        params = ckpt.restore_params(abstract, step, ema=ema)
    finally:
        ckpt.close()
    arrays = {k: np.asarray(jax.device_get(v)).astype(dtype) for k, v in _flat_keys(params)}
    meta = json.dumps(config_to_dict(config)).encode()
    arrays[_CONFIG_KEY] = np.frombuffer(meta, np.uint8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out_path)
    return out_path


def _abstract_unet(config):
    from flax import nnx

    from .models import UNet, UNetConfig, split_model

    if not isinstance(config.model, UNetConfig):
        raise ValueError(f"a prior must be a U-Net, got {type(config.model).__name__}")
    return split_model(nnx.eval_shape(lambda: UNet(config.model, rngs=nnx.Rngs(0))))


def load_prior(name_or_path="photos64", *, compute_dtype=None) -> Prior:
    """Load a prior file (or a shipped name) as a `Prior`.

    ``compute_dtype`` (e.g. ``jnp.bfloat16`` on an accelerator) runs the network in that dtype,
    with float32 parameters and a float32 output (`jaxir.models.make_model_fn`); the default
    runs it in float32.

    Raises `FileNotFoundError` (missing file, with the shipped names), `ValueError` for a file
    that is not a jaxir prior or whose arrays do not match its own config (naming the first
    parameter that differs).
    """
    from .models._boundary import make_model_fn, params_from_arrays
    from .training import build_sde, config_from_dict

    path = prior_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"prior file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile / format errors: report them as one line
        raise ValueError(f"{str(path)!r} is not a readable .npz prior file "
                         f"({type(e).__name__}: {e})") from None
    if _CONFIG_KEY not in arrays:
        raise ValueError(f"{str(path)!r} has no {_CONFIG_KEY!r} entry: not a jaxir prior file "
                         f"(write one with jaxir.priors.export_prior)")
    config = config_from_dict(json.loads(arrays.pop(_CONFIG_KEY).tobytes().decode()))
    graphdef, abstract = _abstract_unet(config)
    params = params_from_arrays(abstract, arrays, repr(str(path)))
    model_fn = make_model_fn(graphdef, params, compute_dtype=compute_dtype)
    return Prior(model_fn=model_fn, sde=build_sde(config.sde), prediction=config.loss.prediction,
                 image_size=int(config.data.image_size or config.model.image_size),
                 channels=int(config.model.in_channels), config=config, graphdef=graphdef,
                 params=params)
