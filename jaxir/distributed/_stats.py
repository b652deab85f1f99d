"""Statistics across hosts: FID feature moments over a mesh, metric rows gathered on one process."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from ._map import map_examples


def feature_moments(features_fn: Callable, images, *, mesh=None,
                    per_device: int | None = None):
    """FID statistics of ``images`` computed over a mesh: the features of each image on the
    device that holds it, accumulated in float64 by each host for its own rows and merged
    across hosts (`jaxir.metrics.FeatureMoments`, `jaxir.metrics.allreduce_feature_moments`).

    Args:
        features_fn: a traceable ``(B, H, W, C) -> (B, F)`` (e.g. ``lambda x:
            nnx.merge(graphdef, state)(x)`` of the Inception network); run per image.
        images: ``(N, H, W, C)``, the same on every process (each reads only its rows).
        mesh, per_device: as :func:`map_examples`.

    Returns:
        `jaxir.metrics.FeatureMoments` of all ``N`` feature rows, the same on every process;
        ``.stats()`` equals `jaxir.metrics.feature_stats` of all the features to float64
        rounding, whatever the mesh.
    """
    from ..metrics import FeatureMoments, allreduce_feature_moments

    out = map_examples(lambda k, x: features_fn(x[None])[0], jax.random.key(0), inputs=images,
                       mesh=mesh, per_device=per_device, gather=False)
    return allreduce_feature_moments(FeatureMoments.of(out.values))


def gather_rows(rows: list[dict], root: int = 0) -> list[dict] | None:
    """Every process's list of per-image metric rows (dicts of str / int / float / None),
    concatenated in process order on process ``root``; other processes get None. One
    process: ``rows``. All processes must call it (a collective)."""
    if jax.process_count() == 1:
        return list(rows)
    import json

    from jax.experimental import multihost_utils

    blob = np.frombuffer(json.dumps(rows).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([blob.size], np.int64)))
    width = int(sizes.max())
    padded = np.zeros(width, np.uint8)
    padded[:blob.size] = blob
    every = np.asarray(multihost_utils.process_allgather(padded))
    if jax.process_index() != root:
        return None
    out = []
    for p in range(jax.process_count()):
        out += json.loads(every[p, :int(sizes.reshape(-1)[p])].tobytes().decode())
    return out
