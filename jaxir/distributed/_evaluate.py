"""`jaxir.restore.evaluate` over a mesh and several hosts, one method per resumable shard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from ._restore import restore_images
from ._shards import atomic_write, check_manifest, run_shards
from ._stats import gather_rows


def evaluate(methods, task, images, *, prior=None, steps: int | None = None, seed: int = 0,
             samples: int | None = None, reference: bool = True, mesh=None,
             per_device: int | None = None, parts_dir=None,
             on_shard=None) -> list[dict] | None:
    """Degrade ``images`` with ``task`` (key ``seed``), restore them with each method over a
    mesh (:func:`restore_images`), score them; the PSNR / SSIM / consistency rows come
    together on process 0.

    As `jaxir.restore.evaluate` — the same degradations (``degrade_images(key(seed), …)``), the
    same labels, columns and ``pinv`` reference rows — but the diffusion methods draw their
    windows per example (:func:`restore_images`: the same numbers on any mesh, not those of
    the one-device function). Each process scores its share of the images (image ``i`` on
    process ``i mod P``) and the rows are gathered on process 0 (:func:`gather_rows`).

    With ``parts_dir`` every method is a shard: its rows go to ``parts_dir/NNN.json``
    atomically as soon as it is done, ``parts_dir/manifest.json`` records the settings, and a
    rerun with the same settings skips the methods already scored (a pre-empted evaluation
    resumes; other settings are a `ValueError`).

    Args:
        methods: method names. task: a task name or `Task`. images: ``(n, H, W, 3)`` in
            [-1, 1] (`jaxir.restore.load_eval_images`), the same on every process.
        prior, steps, seed, samples, reference: as `jaxir.restore.evaluate`.
        mesh, per_device: as :func:`map_examples`. parts_dir: see above.
        on_shard: called with the method's index after it is scored.

    Returns:
        on process 0 the rows (``method, image, psnr, ssim, lpips, consistency, nfe, seconds``) in
        method order, then image order; None on the other processes.
    """
    from ..restore._evaluate import COLUMNS, image_metrics, method_label
    from ..restore._methods import get_method
    from ..restore._tasks import degrade_images, get_task

    task = get_task(task) if isinstance(task, str) else task
    x = np.asarray(images, np.float32)
    y, mask = degrade_images(jax.random.key(seed), task, x)
    y, mask = np.asarray(y), None if mask is None else np.asarray(mask)
    names = (["pinv"] if reference else []) + [m for m in methods if m != "pinv"]
    n, pid, procs = len(x), jax.process_index(), jax.process_count()
    mine = np.arange(pid, n, procs)
    if parts_dir is not None:
        check_manifest(parts_dir, {
            "task": task.name, "methods": names, "n": n, "seed": int(seed), "steps": steps,
            "samples": samples, "image_shape": list(x.shape[1:]),
            "images": _digest([x]), "prior": None if prior is None else _digest(
                jax.tree.leaves(getattr(prior, "params", None)))})
    parts: dict = {}

    def compute(s):
        name = names[s]
        t0 = time.perf_counter()
        info: dict = {}
        x_hat = restore_images(y, task, name, prior=prior, mask=mask, steps=steps,
                               samples=samples, seed=seed, mesh=mesh, per_device=per_device,
                               info=info)
        secs = (time.perf_counter() - t0) / n
        vals = image_metrics(task, x_hat[mine], x[mine], y[mine],
                             None if mask is None else mask[mine])
        k = info.get("samples", 1)
        nfe = (None if info.get("nfe") is None else
               info["nfe"] * k * info.get("windows", n) / n)
        m = get_method(name)
        used = info.get("steps")
        label = method_label(m.name, k, used if used != m.default_steps else None)
        rows = [{"method": label, "image": int(i), **{c: float(vals[c][j]) for c in COLUMNS},
                 "nfe": nfe, "seconds": secs} for j, i in enumerate(mine)]
        got = gather_rows(rows)
        return None if got is None else sorted(got, key=lambda r: r["image"])

    def write(s, rows):
        parts[s] = rows
        if parts_dir is not None:
            atomic_write(Path(parts_dir) / f"{s:03d}.json",
                         lambda p: p.write_text(json.dumps(rows) + "\n"))

    def done(s):
        return parts_dir is not None and (Path(parts_dir) / f"{s:03d}.json").exists()

    run_shards(len(names), compute, write, done, out_dir=parts_dir, on_shard=on_shard)
    if pid != 0:
        return None
    out = []
    for s in range(len(names)):
        if s not in parts:
            parts[s] = json.loads((Path(parts_dir) / f"{s:03d}.json").read_text())
        out += parts[s]
    return out


def _digest(arrays) -> str:
    """A short sha256 of the arrays' bytes (what a manifest records of images and weights)."""
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]
