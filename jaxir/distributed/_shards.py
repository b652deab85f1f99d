"""Outputs written by shard, atomically, and resumed: a pre-empted job redoes no finished shard."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import numpy as np

from ..restore._io import atomic_write
from ._samplers import sample_workdir


MANIFEST = "manifest.json"
SHARD_FILE = "samples_{:05d}.npz"


def _is_root() -> bool:
    return jax.process_index() == 0


def _agree(value):
    """Process 0's numpy ``value`` on every process (its view of the files decides)."""
    if jax.process_count() == 1:
        return np.asarray(value)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value)))


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def check_manifest(out_dir, settings: dict) -> None:
    """Write ``out_dir/manifest.json`` (process 0, atomically) or, when it exists, check that
    it records the same ``settings``: a resumed job must not mix shards of two different runs.
    Raises `ValueError` naming the first setting that differs."""
    import json

    path = Path(out_dir) / MANIFEST
    want = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    err = ""
    if _is_root():  # only process 0 reads or writes: no shared filesystem is assumed
        if path.exists():
            have = json.loads(path.read_text())
            for k in sorted(set(have) | set(want)):
                if have.get(k) != want.get(k):
                    err = (f"{str(Path(out_dir))!r} holds shards of another run: {k} is "
                           f"{have.get(k)!r} there, {want.get(k)!r} now (use another folder)")
                    break
        else:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p: p.write_text(json.dumps(want, indent=1) + "\n"))
    if int(_agree(np.asarray([1 if err else 0], np.int32))[0]):
        raise ValueError(err or f"{str(path)!r} records another run (see process 0's error)")
    _sync("jaxir manifest")


def run_shards(num_shards: int, compute: Callable, write: Callable, done: Callable, *,
               out_dir=None, on_shard: Callable | None = None) -> list[int]:
    """Compute and write the shards that are not done yet; a pre-empted job resumes.

    Process 0 decides which shards are pending (``not done(s)``) and tells the others, so every
    process runs the same collectives; for each pending shard ``s`` in order, every process
    calls ``values = compute(s)`` (a collective: e.g. :func:`map_examples` with ``gather=True``)
    and process 0 calls ``write(s, values)``, which must write atomically (:func:`atomic_write`);
    then ``on_shard(s)`` runs on every process. Stale ``.*.tmp*`` files of a killed run in
    ``out_dir`` are removed first. Returns the shards computed by this call.
    """

    if out_dir is not None and _is_root():
        for stale in Path(out_dir).glob(".*.tmp*"):
            stale.unlink()
    pending = np.zeros(num_shards, np.int32)
    if _is_root():
        pending = np.asarray([0 if done(s) else 1 for s in range(num_shards)], np.int32)
    pending = [int(s) for s in np.flatnonzero(_agree(pending))]
    for s in pending:
        values = compute(s)
        if _is_root():
            write(s, values)
        if on_shard is not None:
            on_shard(s)
    _sync("jaxir shards written")
    return pending


def sample_shards(out_dir, workdir, n: int, *, seed: int = 0, sampler: str = "ddim",
                  steps: int = 50, label: int | None = None, ema: bool = True,
                  shard_size: int = 256, mesh=None, per_device: int | None = None,
                  on_shard: Callable | None = None) -> dict:
    """``n`` samples of a trained workdir written to ``out_dir`` by shard; rerun to resume.

    Shard ``s`` holds examples ``s·shard_size … min((s + 1)·shard_size, n) − 1`` in
    ``out_dir/samples_{s:05d}.npz`` (``images`` uint8 ``(m, H, W, C)``, ``index`` the global
    example indices, ``finite`` per image), written atomically by process 0 once the shard is
    drawn (:func:`sample_workdir`, key ``fold_in(key(seed), i)``). ``out_dir/manifest.json``
    records the settings and the checkpoint step; a rerun with the same settings skips the
    shards already written and draws only the others — the same images the uninterrupted run
    would have written — and a rerun with other settings (or after more training) is a
    `ValueError`. :func:`load_shards` reads them back in order.

    Args:
        out_dir: the output folder. workdir: a training workdir.
        n, seed, sampler, steps, label, ema: what to draw (`jaxir.training.sample_workdir`).
        shard_size: examples per file (and per resumable unit of work).
        mesh, per_device: as :func:`map_examples`.
        on_shard: called with the shard index after each shard is written.

    Returns:
        ``{"shards": total, "written": [shards written by this call], "skipped": k, "nfe": …,
        "finite": all images finite}``.
    """

    from ..restore._io import to_uint8
    from ..training import Checkpointer, load_model_fn

    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) \
            or shard_size < 1:
        raise ValueError(f"shard_size must be a positive int, got {shard_size!r}")
    out_dir = Path(out_dir)
    ck = Checkpointer(Path(workdir) / "checkpoints")
    try:
        step = ck.latest_step()
    finally:
        ck.close()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {str(Path(workdir) / 'checkpoints')!r}")
    check_manifest(out_dir, {"n": int(n), "seed": int(seed), "sampler": sampler,
                             "steps": int(steps), "label": label, "ema": bool(ema),
                             "shard_size": int(shard_size), "checkpoint_step": int(step),
                             "keys": "fold_in(key(seed), i)", "workdir": str(workdir)})
    loaded = load_model_fn(workdir, ema=ema, step=step)
    key = jax.random.key(seed)
    num = -(-int(n) // int(shard_size))
    info: dict = {"nfe": None, "finite": True}

    def compute(s):
        a = s * shard_size
        out = sample_workdir(key, loaded, min(shard_size, n - a), sampler=sampler, steps=steps,
                             label=label, mesh=mesh, per_device=per_device, start=a)
        info["nfe"] = out.nfe
        return a, out

    def write(s, values):
        a, out = values
        info["finite"] &= bool(out.finite)
        images = to_uint8(np.clip(out.x, -1.0, 1.0))
        atomic_write(out_dir / SHARD_FILE.format(s), lambda p: np.savez(
            p, images=images, index=np.arange(a, a + len(images)),
            finite=np.all(np.isfinite(out.x.reshape(len(images), -1)), axis=1)))

    written = run_shards(num, compute, write, lambda s: (out_dir / SHARD_FILE.format(s)).exists(),
                         out_dir=out_dir, on_shard=on_shard)
    return {"shards": num, "written": written, "skipped": num - len(written),
            "nfe": info["nfe"], "finite": info["finite"]}


def load_shards(out_dir) -> np.ndarray:
    """The uint8 images ``(n, H, W, C)`` of every shard :func:`sample_shards` wrote to
    ``out_dir``, in example order. `ValueError` if a shard is missing (the run is not done)."""
    import json

    out_dir = Path(out_dir)
    m = json.loads((out_dir / MANIFEST).read_text())
    num = -(-m["n"] // m["shard_size"])
    missing = [s for s in range(num) if not (out_dir / SHARD_FILE.format(s)).exists()]
    if missing:
        raise ValueError(f"{len(missing)} of {num} shards are missing in {str(out_dir)!r} "
                         f"(first: {SHARD_FILE.format(missing[0])}); rerun the same command")
    parts = []
    for s in range(num):
        with np.load(out_dir / SHARD_FILE.format(s)) as z:
            parts.append(z["images"])
    return np.concatenate(parts)
