"""The flat layout of a train state: parameters, optimizer moments and EMA as single vectors.

A U-Net has hundreds of small parameter arrays. Per-leaf optimizer arithmetic (clipping, AdamW
moments, the update, EMA) is then hundreds of tiny kernels per step, which on an accelerator
cost more than the arithmetic itself (issue 19: a train step 1.56–1.75× its network's forward
+ backward on an H200). In the flat layout every float32 parameter lives in one vector of
``P`` entries: the network sees ``unravel(vector)`` (slices, whose gradient is one
concatenation), and the optimizer and the EMA run on one vector, a handful of kernels.

The layout is internal to training: checkpoints, `TrainState`s returned by `train` and
everything that reads parameters use the tree layout (:meth:`FlatLayout.to_tree`), so
checkpoints keep one format whatever the layout. A flat vector cannot be split parameter by
parameter over the mesh's "fsdp" axis, so the trainer uses the flat layout when that axis has
size 1 (data parallelism: the vector is replicated) and the tree layout with FSDP.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ._sharding import tree_shardings
from ._state import TrainState

__all__ = ["FlatLayout", "step_layout"]


@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """How a params tree maps onto one float32 vector, and the optimizer state with it.

    Build with :meth:`of`; ``ravel``/``unravel`` convert parameters, ``to_flat``/``to_tree`` a
    whole `TrainState` (the optimizer moments of ``tx`` included). Pure and jittable.
    """

    treedef: Any
    shapes: tuple
    size: int
    tx: Any

    @classmethod
    def of(cls, params, tx) -> FlatLayout | None:
        """The layout of ``params`` (arrays or ShapeDtypeStructs), or None when a leaf is not
        float32 (the tree layout is used then)."""
        leaves, treedef = jax.tree.flatten(params)
        if not leaves or any(jnp.dtype(x.dtype) != jnp.float32 for x in leaves):
            return None
        shapes = tuple(tuple(x.shape) for x in leaves)
        return cls(treedef, shapes, sum(math.prod(s) for s in shapes), tx)

    def ravel(self, params) -> jax.Array:
        """The (P,) vector of a params tree (leaves in tree order)."""
        return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(params)])

    def unravel(self, vector) -> Any:
        """The params tree of a (P,) vector, in the vector's dtype (one ``lax.split``, whose
        transpose is one concatenation)."""
        sizes = [math.prod(s) for s in self.shapes]
        parts = lax.split(vector, sizes)
        return self.treedef.unflatten([p.reshape(s) for p, s in zip(parts, self.shapes)])

    def _templates(self):
        tree = jax.eval_shape(self.tx.init, self.treedef.unflatten(
            [jax.ShapeDtypeStruct(s, jnp.float32) for s in self.shapes]))
        flat = jax.eval_shape(self.tx.init, jax.ShapeDtypeStruct((self.size,), jnp.float32))
        return tree, flat

    def _is_params(self, sub) -> bool:
        return jax.tree.structure(sub) == self.treedef

    def to_flat(self, state: TrainState) -> TrainState:
        """A tree-layout `TrainState` in the flat layout."""
        _, flat_tmpl = self._templates()

        def opt(tmpl, sub):
            if tmpl.shape == (self.size,) and self._is_params(sub):
                return self.ravel(sub)
            return sub

        return state._replace(params=self.ravel(state.params),
                              opt_state=jax.tree.map(opt, flat_tmpl, state.opt_state),
                              ema_params=self.ravel(state.ema_params))

    def to_tree(self, state: TrainState) -> TrainState:
        """A flat-layout `TrainState` in the tree layout (checkpoints, users)."""
        tree_tmpl, _ = self._templates()

        def opt(leaf, tmpl_sub):
            if jnp.shape(leaf) == (self.size,) and self._is_params(tmpl_sub):
                return self.unravel(leaf)
            return leaf

        return state._replace(params=self.unravel(state.params),
                              opt_state=jax.tree.map(opt, state.opt_state, tree_tmpl),
                              ema_params=self.unravel(state.ema_params))


def step_layout(state: TrainState, tx, mesh, min_size: int = 2**16):
    """``(state, shardings, layout)`` for the train step on ``mesh``: the flat layout (the
    state converted, replicated shardings) when the mesh's "fsdp" axis has size 1 and every
    parameter is float32; else ``state`` as it is, its `tree_shardings`, and None."""
    layout = FlatLayout.of(state.params, tx) if mesh.shape["fsdp"] == 1 else None
    if layout is None:
        return state, tree_shardings(state, mesh, min_size), None
    shardings = tree_shardings(jax.eval_shape(layout.to_flat, state), mesh, min_size)
    return jax.jit(layout.to_flat, out_shardings=shardings)(state), shardings, layout
