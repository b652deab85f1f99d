"""Meshes, per-example keys, and moving arrays onto and off a (possibly multi-host) mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

#: Examples per device and block when ``per_device`` is not given (fixed, so that the results do
#: not depend on the device count; see the module docstring).
DEFAULT_PER_DEVICE = 8


# ---- meshes ------------------------------------------------------------------------------------


def as_mesh(mesh=None) -> Mesh:
    """A `jax.sharding.Mesh` from ``mesh``.

    ``None``: every device on the ``"data"`` axis (`jaxir.training.make_mesh`'s ``(data, fsdp)``
    mesh with ``fsdp = 1``); an int ``k``: the first ``k`` devices; a dict such as
    ``{"data": 4, "fsdp": 2}`` (what ``--mesh data=4,fsdp=2`` parses to): `make_mesh(**mesh)`;
    a `Mesh`: itself. Raises `ValueError` for anything else or more devices than there are.
    """
    if isinstance(mesh, Mesh):
        return mesh
    from ..training._sharding import make_mesh

    if mesh is None:
        return make_mesh()
    if isinstance(mesh, (int, np.integer)) and not isinstance(mesh, bool):
        if mesh < 1:
            raise ValueError(f"mesh: need a positive device count, got {mesh}")
        return make_mesh(int(mesh), 1)
    if isinstance(mesh, dict):
        unknown = set(mesh) - {"data", "fsdp"}
        if unknown:
            raise ValueError(f"mesh: unknown axes {sorted(unknown)}; use data= and fsdp=")
        return make_mesh(**mesh)
    raise ValueError(f"mesh must be None, a device count, a dict like {{'data': 8}} or a "
                     f"jax.sharding.Mesh, got {type(mesh).__name__}")


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a batch of examples is split over: ``("data", "fsdp")`` where present
    (both are data axes for sampling, as in `jaxir.training.batch_sharding`), else every axis."""
    axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)
    return axes or tuple(mesh.axis_names)


def example_keys(key, indices):
    """``jax.random.fold_in(key, i)`` for every global example index ``i`` of ``indices``:
    the per-example keys of this module (``(len(indices),)`` keys of ``key``'s kind)."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.asarray(indices, jnp.uint32))


# ---- moving arrays onto a (possibly multi-host) mesh ---------------------------------------------


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _global(x, sharding: NamedSharding):
    """``x`` (the same full value on every process) as a global array with ``sharding``; each
    process reads only the rows of its own devices."""
    if _is_key(x):
        impl = jax.random.key_impl(x)
        data = _global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=impl)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _gathered(x) -> np.ndarray:
    """The full value of a global array on this process (an all-gather across processes)."""
    if jax.process_count() == 1 or x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _local(x) -> tuple[np.ndarray, np.ndarray]:
    """``(first_rows, values)`` of the distinct row blocks of ``x`` held by this process."""
    seen = {}
    for s in x.addressable_shards:
        start = s.index[0].start or 0
        if start not in seen:
            seen[start] = np.asarray(s.data)
    starts = sorted(seen)
    return np.asarray(starts), [seen[s] for s in starts]
