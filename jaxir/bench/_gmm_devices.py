"""The GMM benchmark's runs mapped over the devices present (`run_gmm_benchmark(mesh=...)`).

Every run of one method has the same compiled shape (problems are padded to the largest ``dy``,
:func:`jaxir.bench.gmm.pad_problem`), so the runs of a method — all its (dy, problem) pairs —
are stacked and handed to :func:`jaxir.distributed.map_examples` with one run per device per
block: ``D`` devices do ``D`` runs at once. Each run keeps the key the serial benchmark gives
it (``fold_in(key(seed + 101 dy), i)``), passed in as an input, so the rows are those of the
serial benchmark (the samples agree to float32 rounding: the mapped program is the same
computation compiled with a batch axis of one). ``seconds`` is then the wall time of a block
divided by the runs in it (compilation excluded).
"""

from __future__ import annotations

import time

import jax
import numpy as np

__all__ = ["run_on_devices"]


def run_on_devices(methods: dict, names, padded: dict, keys: dict, sde, num_samples: int,
                   num_steps: int, eta: float, mesh=None) -> dict:
    """``{(name, dy, i): (x, seconds)}`` for every method ``name`` and problem ``padded[dy, i]``
    (padded to one number of rows: `jaxir.bench.gmm.pad_problem`), each run with
    ``keys[dy, i]`` on one device of ``mesh``."""
    from ..distributed import as_mesh, batch_axes, map_examples

    mesh = as_mesh(mesh)
    n_dev = int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))
    order = list(padded)
    stacked = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]),
                           *[padded[k] for k in order])
    impl = jax.random.key_impl(keys[order[0]])
    inputs = {"key": np.stack([np.asarray(jax.random.key_data(keys[k])) for k in order]),
              "problem": stacked}
    out = {}
    for name in names:
        run = methods[name]

        def fn(_, row, run=run):
            key = jax.random.wrap_key_data(row["key"], impl=impl)
            return run(key, row["problem"], sde, num_samples, num_steps, eta)

        # the first call compiles; the timed one reuses nothing across calls (a fresh jit),
        # so time the blocks of a second, identical call
        map_examples(fn, jax.random.key(0), inputs=jax.tree.map(lambda a: a[:n_dev], inputs),
                     mesh=mesh, per_device=1)
        t0 = time.perf_counter()
        xs = map_examples(fn, jax.random.key(0), inputs=inputs, mesh=mesh, per_device=1)
        secs = (time.perf_counter() - t0) / len(order)
        for j, (dy, i) in enumerate(order):
            out[name, dy, i] = (xs[j], secs)
    return out
