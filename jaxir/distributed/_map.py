"""`map_examples`: the one mapping of examples over a mesh that every other function uses."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._mesh import DEFAULT_PER_DEVICE, _gathered, _global, _is_key, _local, as_mesh, batch_axes


class LocalRows(NamedTuple):
    """What ``gather=False`` returns: this process's rows of the result.

    Attributes:
        indices: ``(m,)`` global example indices, ascending.
        values: the outputs of those examples (a pytree of numpy arrays, leading axis ``m``).
    """

    indices: np.ndarray
    values: Any


def _hoist(fn, example_args):
    """``(jaxpr, consts, treedef)``: ``fn`` traced on ``example_args``; its closed-over arrays
    (network parameters, schedules) are ``consts``, which :func:`_runner` passes to the
    compiled block as (replicated) arguments instead of baking them into the program."""
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*example_args)
    return closed.jaxpr, list(closed.consts), jax.tree.structure(out_shape)


#: Compiled blocks, most recent last: ``(program text, mesh, per_device) -> jitted block``. The
#: key is the traced per-example program itself (its printed jaxpr, which names every shape,
#: primitive and parameter, but not the values of the hoisted arrays), so the same sampler with
#: other parameters or another key reuses the compiled block, and a job that maps many shards
#: compiles once.
_COMPILED: OrderedDict = OrderedDict()
_MAX_COMPILED = 16


def _runner(jaxpr, treedef, mesh: Mesh, axes, per_device: int, has_inputs: bool):
    from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

    cache_key = (str(jaxpr), str(treedef), tuple(mesh.device_ids.flat), mesh.axis_names,
                 tuple(mesh.shape.items()), axes, per_device, has_inputs)
    hit = _COMPILED.get(cache_key)
    if hit is not None:
        _COMPILED.move_to_end(cache_key)
        return hit
    g = per_device * math.prod(mesh.shape[a] for a in axes)
    rows, repl = NamedSharding(mesh, P(axes)), NamedSharding(mesh, P())

    def one(consts, k, x):
        flat = jaxpr_as_fun(ClosedJaxpr(jaxpr, list(consts)))(*jax.tree.leaves((k, x)))
        return jax.tree.unflatten(treedef, flat)

    def block(consts, key, first, xs):
        idx = first + jnp.arange(g, dtype=jnp.uint32)
        idx = jax.lax.with_sharding_constraint(idx, rows)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, idx)
        return jax.vmap(lambda k, x: one(consts, k, x))(keys, xs)

    run = jax.jit(block, in_shardings=(repl, repl, repl, rows if has_inputs else None),
                  out_shardings=rows)
    _COMPILED[cache_key] = run
    while len(_COMPILED) > _MAX_COMPILED:
        _COMPILED.popitem(last=False)
    return run


def _row(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def map_examples(fn: Callable, key, n: int | None = None, *, inputs=None, mesh=None,
                 per_device: int | None = None, start: int = 0, gather: bool = True,
                 on_block: Callable | None = None):
    """``out[j] = fn(jax.random.fold_in(key, start + j), inputs[j])`` for ``j < n``, over a mesh.

    The one primitive of this module (see its docstring for how it runs and what is
    reproducible). ``fn`` works on one example: it takes a key and one row of ``inputs``
    (``None`` when there are none) and returns a pytree of arrays; it is traced once.

    Args:
        fn: ``fn(key_i, input_i) -> pytree of arrays`` for one example.
        key: a `jax.random` key (typed or raw ``uint32``); the same on every process.
        n: the number of examples (default: the leading size of ``inputs``).
        inputs: a pytree of arrays with leading axis ``n`` (row ``j`` is example
            ``start + j``), or None. Every process passes the same inputs; each reads only the
            rows its devices compute.
        mesh: see :func:`as_mesh` (default: every device on "data").
        per_device: examples per device per block (default :data:`DEFAULT_PER_DEVICE` = 8,
            whatever ``n`` and the device count, so that every device runs the same program:
            a small ``n`` on many devices computes padding; pass 1 to avoid it).
        start: the global index of the first example (its key is ``fold_in(key, start)``).
        gather: True: every row on every process, numpy; False: this process's rows only
            (:class:`LocalRows`).
        on_block: optional ``on_block(first, values)`` called on each finished block with the
            global index of its first example and its rows on this process (gathered or local
            as ``gather`` says, padding dropped) — for progress or writing as results arrive.

    Returns:
        a pytree of numpy arrays with leading axis ``n`` (``gather=True``) or
        :class:`LocalRows`.

    Example (the same 6 draws on any number of devices)::

        >>> import jax, jax.numpy as jnp
        >>> from jaxir import distributed
        >>> out = distributed.map_examples(lambda k, _: jax.random.normal(k, (2,)),
        ...                                jax.random.key(0), 6)
        >>> out.shape
        (6, 2)
    """
    if inputs is not None:
        leaves = jax.tree.leaves(inputs)
        if not leaves:
            raise ValueError("inputs has no arrays")
        sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in leaves}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError(f"inputs: every array needs the same leading (example) axis, got "
                             f"leading sizes {sorted(sizes)}")
        size = sizes.pop()
        if n is None:
            n = size
        elif n != size:
            raise ValueError(f"n={n} but inputs have {size} rows")
    if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (or give inputs), got {n!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    if start + n > 2**32:
        raise ValueError("example indices must stay below 2**32 (jax.random.fold_in's range)")
    m = as_mesh(mesh)
    axes = batch_axes(m)
    d = math.prod(m.shape[a] for a in axes)
    if per_device is None:
        per_device = DEFAULT_PER_DEVICE
    if isinstance(per_device, bool) or not isinstance(per_device, (int, np.integer)) \
            or per_device < 1:
        raise ValueError(f"per_device must be a positive int, got {per_device!r}")
    g = int(per_device) * d
    rows = NamedSharding(m, P(axes))
    repl = NamedSharding(m, P())
    key = jnp.asarray(key) if not _is_key(key) else key
    host_inputs = None if inputs is None else jax.tree.map(np.asarray, jax.device_get(inputs))
    jaxpr, consts, treedef = _hoist(fn, (jax.random.fold_in(key, 0), None if host_inputs is None
                                         else _row(host_inputs, 0)))
    run = _runner(jaxpr, treedef, m, axes, int(per_device), host_inputs is not None)
    consts_g = [_global(c, repl) if isinstance(c, (jax.Array, np.ndarray)) else c
                for c in consts]
    key_g = _global(key, repl)
    pieces, local_idx = [], []
    for b0 in range(0, n, g):
        m_real = min(g, n - b0)
        xs = None
        if host_inputs is not None:
            pos = np.minimum(np.arange(b0, b0 + g), n - 1)  # pad with the last row
            xs = jax.tree.map(lambda a: _global(a[pos], rows), host_inputs)
        first = _global(np.uint32(start + b0), repl)
        out = run(consts_g, key_g, first, xs)
        if gather:
            vals = jax.tree.map(lambda a: _gathered(a)[:m_real], out)
            pieces.append(vals)
            if on_block is not None:
                on_block(start + b0, vals)
        else:
            leaves, treedef = jax.tree.flatten(out)
            firsts, _ = _local(leaves[0]) if leaves else (np.zeros(0, int), None)
            per_leaf = [_local(a)[1] for a in leaves]
            idx = np.concatenate([f + np.arange(len(v)) for f, v in
                                  zip(firsts, per_leaf[0])]) if leaves else np.zeros(0, int)
            keep = idx < m_real
            vals = jax.tree.unflatten(treedef, [np.concatenate(v)[keep] for v in per_leaf])
            pieces.append(vals)
            local_idx.append(start + b0 + idx[keep])
            if on_block is not None:
                on_block(start + b0, LocalRows(start + b0 + idx[keep], vals))
    joined = jax.tree.map(lambda *a: np.concatenate(a), *pieces)
    if gather:
        return joined
    return LocalRows(np.concatenate(local_idx), joined)
