"""The autoencoder as one ``.npz`` file (like `jaxir.priors`), and images held in memory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from ..models import Autoencoder, AutoencoderConfig, split_model
from ..models._boundary import params_from_arrays
from ._codec import LatentCodec, autoencoder_codec, latent_scale

__all__ = ["AUTOENCODER_FILE", "AutoencoderFile", "export_autoencoder", "load_autoencoder",
           "load_images", "resolve_autoencoder", "save_autoencoder"]

_CONFIG_KEY = "__config__"

AUTOENCODER_FILE = "autoencoder.npz"
"""The file an autoencoder run of ``jaxir train`` (loss kind "autoencoder") exports into its
workdir, and the name a latent run's copy of its autoencoder has in its own workdir."""


def load_images(source: str = "photos", size: int | None = 32, num_images: int | None = 2048,
                **source_kwargs) -> np.ndarray:
    """Up to ``num_images`` images of a `jaxir.data` source spec as float32 (N, H, W, C) in [-1, 1]."""
    from ..data import get_source, images_to_float

    src = get_source(source, size=size, **source_kwargs)
    n = len(src) if num_images is None else min(int(num_images), len(src))
    if n < 1:
        raise ValueError(f"source {source!r} has no images")
    return images_to_float(np.stack([src[i]["image"] for i in range(n)]))


class AutoencoderFile(NamedTuple):
    """What :func:`load_autoencoder` returns."""

    config: AutoencoderConfig
    graphdef: Any
    params: Any
    latent_scale: float

    def codec(self) -> LatentCodec:
        return autoencoder_codec(self.graphdef, self.params, self.latent_scale)


def _flat(params) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in leaves]


def save_autoencoder(path, config: AutoencoderConfig, params, *, latent_scale: float = 1.0):
    """Write ``params`` (keyed by NNX path) and ``{"config": ..., "latent_scale": ...}`` (JSON
    bytes under ``"__config__"``) to one ``.npz``. Returns the path."""
    path = Path(path)
    arrays = {k: np.asarray(jax.device_get(v), np.float32) for k, v in _flat(params)}
    meta = {"kind": "autoencoder", "config": {k: getattr(config, k) for k in
                                              config.__dataclass_fields__},
            "latent_scale": float(latent_scale)}
    arrays[_CONFIG_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")  # written whole, then renamed: atomic
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def export_autoencoder(config: AutoencoderConfig, graphdef, params, source, path,
                       primary: bool = True, num_scale_images: int = 512) -> Path | None:
    """:func:`save_autoencoder` of a training run's ``params`` (its EMA) with the latent scale
    1/std(E(x)) over the first ``num_scale_images`` images of ``source`` (a `jaxir.data`
    source). Every process of a multi-host run calls it (FSDP-sharded kernels are gathered
    across hosts first: process 0 alone cannot address them); only the ``primary`` one
    writes."""
    from jax.experimental import multihost_utils

    from ..data import images_to_float

    params = multihost_utils.process_allgather(params, tiled=True)
    if not primary:
        return None
    n = min(num_scale_images, len(source))
    images = images_to_float(np.stack([np.asarray(source[i]["image"]) for i in range(n)]))
    scale = latent_scale(graphdef, params, images)
    return save_autoencoder(path, config, params, latent_scale=scale)


def resolve_autoencoder(path) -> Path:
    """``path`` itself, or ``path/autoencoder.npz`` when ``path`` is a directory (the workdir of
    an autoencoder run); `FileNotFoundError` naming what is missing."""
    path = Path(path)
    if path.is_dir():
        if not (path / AUTOENCODER_FILE).is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is a directory without {AUTOENCODER_FILE} (train stage 1 there "
                "with `jaxir train --config autoencoder_photos --workdir DIR`; the file is "
                "written when the run finishes)")
        return path / AUTOENCODER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"autoencoder file {str(path)!r} does not exist (train stage 1 "
                                "with `jaxir train --config autoencoder_photos --workdir DIR`)")
    return path


def load_autoencoder(path) -> AutoencoderFile:
    """Read a :func:`save_autoencoder` file (``np.load(allow_pickle=False)``), or the
    ``autoencoder.npz`` of an autoencoder run's workdir when ``path`` is a directory;
    `ValueError` if it is not one or its arrays do not match its config (naming the parameter)."""
    path = resolve_autoencoder(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if _CONFIG_KEY not in arrays:
        raise ValueError(f"{str(path)!r} has no {_CONFIG_KEY!r} entry: not a jaxir autoencoder")
    meta = json.loads(arrays.pop(_CONFIG_KEY).tobytes().decode())
    if meta.get("kind") != "autoencoder":
        raise ValueError(f"{str(path)!r} is not an autoencoder file (kind={meta.get('kind')!r})")
    cfg = dict(meta["config"])
    if cfg.get("channel_mults") is not None:
        cfg["channel_mults"] = tuple(cfg["channel_mults"])
    config = AutoencoderConfig(**cfg)
    graphdef, abstract = split_model(nnx.eval_shape(lambda: Autoencoder(config,
                                                                         rngs=nnx.Rngs(0))))
    params = params_from_arrays(abstract, arrays, repr(str(path)))
    return AutoencoderFile(config, graphdef, params, float(meta["latent_scale"]))
