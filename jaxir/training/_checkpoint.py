"""Orbax checkpoints of a `TrainState`, the data-loader position and the config.

Layout of ``directory/STEP/`` (one orbax `CheckpointManager` step, items):
``params``, ``opt_state``, ``ema_params`` (array trees), ``meta`` (step, rng, loss scale),
``data`` (the `DataLoader.state`, JSON) and ``config`` (the run's config, JSON).

- **Atomic**: orbax writes every step into ``STEP.orbax-checkpoint-tmp-*`` and renames it
  when complete (``commit_success.txt`` on file systems without atomic rename), so a crash
  mid-save leaves the previous steps intact; unfinished tmp directories are ignored and
  cleaned up by the next manager.
- **Restore into the current sharding**: `Checkpointer.restore` takes an abstract target
  (`abstract_state`: ShapeDtypeStructs carrying shardings), so each device reads only its
  shards, on any mesh.
- **Clear errors**: before reading arrays, the saved tree is compared with the target; a
  difference raises `CheckpointError` naming the first differing key and both shapes. Any
  failure to read (a deleted or truncated file) is re-raised as `CheckpointError` naming the
  step directory.
- `GracefulStop` turns SIGTERM / the first Ctrl-C into a request that the training loop
  honours at the next step boundary (save, then exit); a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from ._state import DynamicLossScale, TrainState

__all__ = ["CheckpointError", "Checkpointer", "GracefulStop", "abstract_state", "tree_mismatch"]

_ARRAY_ITEMS = ("params", "opt_state", "ema_params", "meta")
_JSON_ITEMS = ("data", "config")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the current model/config."""


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flat(tree) -> dict[str, tuple]:
    """``{"a/b/c": (shape, dtype)}`` for every leaf (arrays, ShapeDtypeStructs, orbax metadata).
    A trailing ``value`` (flax Variable) is dropped from the names."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = [_key_name(k) for k in path]
        if names and names[-1] == "value":
            names = names[:-1]
        shape = tuple(getattr(leaf, "shape", ()))
        dtype = getattr(leaf, "dtype", None)
        out["/".join(names)] = (shape, None if dtype is None else str(dtype))
    return out


def tree_mismatch(saved, target, prefix: str = "") -> str | None:
    """Describe the first difference between two trees' keys and shapes, or None."""
    s, t = _flat(saved), _flat(target)
    for key, (shape, _) in t.items():
        if key not in s:
            return f"{prefix}{key} (shape {shape}) is missing from the checkpoint"
        if s[key][0] != shape:
            return (f"{prefix}{key} has shape {s[key][0]} in the checkpoint but {shape} in the "
                    "current model")
    for key, (shape, _) in s.items():
        if key not in t:
            return f"{prefix}{key} (shape {shape}) is in the checkpoint but not in the current model"
    return None


def abstract_state(state: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs (with ``shardings`` when given) for every leaf of ``state``."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                           sharding=getattr(x, "sharding", None)),
                            state)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)


def _meta(state: TrainState) -> dict:
    meta = {"step": state.step, "rng": state.rng}
    if state.loss_scale is not None:
        meta["loss_scale"] = state.loss_scale.scale
        meta["loss_scale_good_steps"] = state.loss_scale.good_steps
    return meta


class Checkpointer:
    """Save and restore `TrainState` + data position + config with an orbax CheckpointManager.

    Args:
      directory: where the steps live (created).
      keep: how many recent steps to keep (``max_to_keep``).
      async_save: write in a background thread after copying arrays to the host (orbax
        default); `wait` or `close` before reading the files.

    Every process of a multi-host run must call `save` / `restore` (orbax coordinates them).
    """

    def __init__(self, directory, *, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        handlers = {k: ocp.StandardCheckpointHandler() for k in _ARRAY_ITEMS}
        handlers.update({k: ocp.JsonCheckpointHandler() for k in _JSON_ITEMS})
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save,
                                               cleanup_tmp_directories=True)
        self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                           item_handlers=handlers)

    # ---- queries ---------------------------------------------------------------------------
    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._mngr.all_steps())

    def _step(self, step):
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        if step not in self._mngr.all_steps():
            raise CheckpointError(f"no checkpoint for step {step} in {str(self.directory)!r}; "
                                  f"steps: {self.all_steps()}")
        return step

    def _fail(self, step, what, e) -> CheckpointError:
        msg = (str(e).splitlines() or [""])[0].split(" [tensorstore_spec")[0]
        if len(msg) > 300:
            msg = msg[:300] + " ..."
        return CheckpointError(
            f"checkpoint {str(self.directory / str(step))!r} is damaged or unreadable "
            f"({what}: {type(e).__name__}: {msg}); delete that step directory to resume from "
            f"an earlier one (steps here: {self.all_steps()})")

    # ---- save ------------------------------------------------------------------------------
    def save(self, state: TrainState, *, data_state: dict | None = None,
             config: dict | None = None, force: bool = True) -> bool:
        """Save ``state`` at ``int(state.step)`` (async). Returns whether a save started."""
        step = int(jax.device_get(state.step))
        if step in self._mngr.all_steps():
            return False
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            opt_state=ocp.args.StandardSave(state.opt_state),
            ema_params=ocp.args.StandardSave(state.ema_params),
            meta=ocp.args.StandardSave(_meta(state)),
            data=ocp.args.JsonSave(dict(data_state or {})),
            config=ocp.args.JsonSave(dict(config or {})),
        )
        return self._mngr.save(step, args=args, force=force)

    def wait(self) -> None:
        """Block until every pending save is committed."""
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()

    # ---- restore ---------------------------------------------------------------------------
    def _metadata(self, step):
        try:
            md = self._mngr.item_metadata(step)
        except Exception as e:  # noqa: BLE001 -- any reader failure means a damaged checkpoint
            raise self._fail(step, "reading metadata", e) from e
        return md

    def check(self, target: TrainState, step: int | None = None) -> None:
        """Raise `CheckpointError` if the saved trees differ from ``target`` (keys, shapes)."""
        step = self._step(step)
        md = self._metadata(step)
        parts = {"params": target.params, "opt_state": target.opt_state,
                 "ema_params": target.ema_params, "meta": _meta(target)}
        for name, tree in parts.items():
            saved = md[name] if name in md else None
            if saved is None:
                raise CheckpointError(f"checkpoint {str(self.directory / str(step))!r} has no "
                                      f"readable {name!r} item (damaged or incomplete)")
            diff = tree_mismatch(saved, tree, prefix=f"{name}/")
            if diff is not None:
                raise CheckpointError(
                    f"checkpoint {str(self.directory / str(step))!r} does not match the "
                    f"current model: {diff}")

    def read_json(self, item: str, step: int | None = None) -> dict:
        """The ``data`` or ``config`` item of a step, as saved."""
        step = self._step(step)
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(
                **{item: ocp.args.JsonRestore()}))
        except Exception as e:  # noqa: BLE001
            raise self._fail(step, f"reading {item}", e) from e
        return dict(out[item] or {})

    def restore(self, target: TrainState, step: int | None = None
                ) -> tuple[TrainState, dict, dict]:
        """``(state, data_state, config)`` of ``step`` (default the latest).

        ``target``: a `TrainState` of ShapeDtypeStructs with shardings (`abstract_state`) or of
        arrays (their shardings are used). Raises `CheckpointError` on a structure/shape
        mismatch (naming the first differing key) or a damaged checkpoint.
        """
        step = self._step(step)
        target = abstract_state(target) if not _is_abstract(target) else target
        self.check(target, step)
        meta_target = _meta(target)
        args = ocp.args.Composite(
            params=ocp.args.StandardRestore(target.params),
            opt_state=ocp.args.StandardRestore(target.opt_state),
            ema_params=ocp.args.StandardRestore(target.ema_params),
            meta=ocp.args.StandardRestore(meta_target),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        )
        try:
            r = self._mngr.restore(step, args=args)
        except Exception as e:  # noqa: BLE001
            raise self._fail(step, "reading arrays", e) from e
        meta = r["meta"]
        ls = None
        if target.loss_scale is not None:
            ls = DynamicLossScale(meta["loss_scale"], meta["loss_scale_good_steps"])
        state = TrainState(step=meta["step"], params=r["params"], opt_state=r["opt_state"],
                           ema_params=r["ema_params"], rng=meta["rng"], loss_scale=ls)
        return state, dict(r["data"] or {}), dict(r["config"] or {})

    def restore_params(self, target_params, step: int | None = None, *, ema: bool = True):
        """Only the EMA (``ema=True``) or raw params of a step, into ``target_params``."""
        step = self._step(step)
        item = "ema_params" if ema else "params"
        target_params = (target_params if _is_abstract(target_params)
                         else abstract_state(target_params))
        md = self._metadata(step)
        if md[item] is None:
            raise CheckpointError(f"checkpoint step {step} has no readable {item!r} item")
        diff = tree_mismatch(md[item], target_params, prefix=f"{item}/")
        if diff is not None:
            raise CheckpointError(f"checkpoint {str(self.directory / str(step))!r} does not "
                                  f"match the current model: {diff}")
        try:
            r = self._mngr.restore(step, args=ocp.args.Composite(
                **{item: ocp.args.StandardRestore(target_params)}))
        except Exception as e:  # noqa: BLE001
            raise self._fail(step, "reading arrays", e) from e
        return r[item]


def _is_abstract(tree) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)


class GracefulStop:
    """Context manager: SIGTERM and the first SIGINT set `requested` instead of killing.

    The training loop checks `requested` at each step boundary, saves a checkpoint and
    returns. A second SIGINT raises `KeyboardInterrupt` at once. Outside the main thread
    (where Python cannot install handlers) it does nothing.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
        return False
