"""Meshes, sharding rules and multi-host setup.

- A 2-D mesh with axes ``("data", "fsdp")`` (`make_mesh`). Batches are split over both axes
  (the fsdp axis is also a data axis, as in ZeRO-3 / FSDP): `batch_sharding`.
- Parameters, optimizer state and EMA follow one shape rule (`param_spec`): an array with at
  least ``min_size`` elements is split over "fsdp" along its largest dimension divisible by
  the fsdp size; everything else is replicated. The rule depends on the shape only, so
  AdamW's moments and the EMA get exactly the parameters' sharding.
- Multi-host: `initialize_distributed` wraps `jax.distributed.initialize`; each host loads
  its own rows of every global batch (`jaxir.data.DataLoader` with ``process_index`` /
  ``process_count``) and `global_batch` assembles them with
  `jax.make_array_from_process_local_data`.

Both mesh axes are `AxisType.Auto` (``jax.make_mesh`` defaults to Explicit axes on this jax,
whose sharding-in-types would make every convolution with an fsdp-split kernel name its output
sharding); XLA's partitioner propagates shardings from the jit boundary.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "batch_sharding",
    "global_batch",
    "initialize_distributed",
    "make_mesh",
    "param_spec",
    "replicated",
    "tree_shardings",
]

AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, *, devices=None) -> Mesh:
    """A ``(data, fsdp)`` mesh over ``devices`` (default all of ``jax.devices()``).

    ``data=-1`` uses every device left: ``len(devices) // fsdp``. With fewer than all devices
    requested, the first ``data * fsdp`` are used.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if not isinstance(fsdp, int) or fsdp < 1:
        raise ValueError(f"fsdp must be a positive int, got {fsdp!r}")
    if data == -1:
        if n % fsdp:
            raise ValueError(f"fsdp={fsdp} does not divide the {n} devices")
        data = n // fsdp
    if not isinstance(data, int) or data < 1:
        raise ValueError(f"data must be a positive int or -1, got {data!r}")
    if data * fsdp > n:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} needs {data * fsdp} devices, "
                         f"only {n} {'is' if n == 1 else 'are'} available")
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((data, fsdp), AXES, axis_types=(auto, auto),
                         devices=devices[: data * fsdp])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ("data", "fsdp"); other axes replicated."""
    return NamedSharding(mesh, P(AXES))


def param_spec(shape, fsdp_size: int, min_size: int = 2**16) -> P:
    """The shape rule: shard the largest dimension divisible by ``fsdp_size`` over "fsdp"
    for arrays with at least ``min_size`` elements; replicate the rest (``P()``)."""
    shape = tuple(shape)
    if fsdp_size <= 1 or math.prod(shape) < min_size:
        return P()
    best = None
    for i, d in enumerate(shape):
        if d % fsdp_size == 0 and (best is None or d >= shape[best]):
            best = i
    if best is None:
        return P()
    return P(*([None] * best + ["fsdp"]))


def tree_shardings(tree: Any, mesh: Mesh, min_size: int = 2**16) -> Any:
    """A tree of `NamedSharding`s for ``tree`` (arrays or ShapeDtypeStructs) by `param_spec`.

    Apply it to a whole `TrainState`: the step, key and loss scale are tiny and end up
    replicated, params / optimizer moments / EMA are sharded alike."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(np.shape(x), fsdp, min_size)),
                        tree)


def global_batch(local_batch: Any, sharding: NamedSharding) -> Any:
    """Assemble each host's rows into global `jax.Array`s split by ``sharding``.

    ``local_batch`` holds this process's rows (``DataLoader(process_index=jax.process_index(),
    process_count=jax.process_count())``); with one process it is the whole batch.
    """
    n_shards = math.prod(sharding.mesh.shape[a] for a in AXES)

    def one(x):
        x = np.asarray(x)
        global_rows = x.shape[0] * jax.process_count()
        if global_rows % n_shards:
            raise ValueError(f"the global batch ({global_rows} rows) must be divisible by the "
                             f"mesh's data x fsdp = {n_shards} devices")
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(one, local_batch)


_ENV = ("JAXIR_COORDINATOR", "JAXIR_NUM_PROCESSES", "JAXIR_PROCESS_ID")


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, **kwargs) -> bool:
    """Start multi-host JAX (`jax.distributed.initialize`) from arguments or the environment.

    Missing arguments are read from ``JAXIR_COORDINATOR`` ("host:port"),
    ``JAXIR_NUM_PROCESSES`` and ``JAXIR_PROCESS_ID``. If none is set this is a single-process
    run and nothing happens (returns False). ``coordinator="auto"`` lets JAX detect the
    cluster (Cloud TPU pods, SLURM, GKE) with no other argument. Must run before anything
    touches a device.
    ``kwargs`` go to `jax.distributed.initialize` (e.g. ``local_device_ids``). On CPU the
    collectives use gloo (``jax_cpu_collectives_implementation``, the default on this jax).
    """
    env = [os.environ.get(k) for k in _ENV]
    coordinator = coordinator if coordinator is not None else env[0]
    if coordinator == "auto":  # TPU pods / SLURM / GKE: JAX detects the cluster itself
        jax.distributed.initialize(**kwargs)
        return True
    num_processes = num_processes if num_processes is not None else env[1]
    process_id = process_id if process_id is not None else env[2]
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if not any(given):
        return False
    if not all(given):
        raise ValueError("multi-host needs all of coordinator, num_processes and process_id "
                         f"(flags or {', '.join(_ENV)}); got coordinator={coordinator!r}, "
                         f"num_processes={num_processes!r}, process_id={process_id!r}")
    num_processes, process_id = int(num_processes), int(process_id)
    if not 0 <= process_id < num_processes:
        raise ValueError(f"need 0 <= process_id < num_processes, got {process_id}, "
                         f"{num_processes}")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, **kwargs)
    return True
