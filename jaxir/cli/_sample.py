"""``jaxir sample`` over many devices and hosts (`jaxir.distributed`): samples written by shard
to ``--out-dir`` (resumable), or a grid to ``--output``; image ``i`` has its own key
``fold_in(key(seed), i)``, so the images do not depend on the mesh or the number of hosts.

The parser's options are added by ``_train.add_sample_parser``; this module runs them.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ._common import UsageError, check_output_dir, check_output_file
from ._devices import add_device_options, check_mesh, setup_devices

#: Set to k > 0 to SIGKILL the process right after its k-th shard is written: a pre-empted job,
#: for tests/test_distributed.py (a kill from outside could not choose the moment).
KILL_AFTER_SHARDS = "JAXIR_TEST_KILL_AFTER_SHARDS"


def add_sample_device_options(p) -> None:
    """The ``--out-dir`` / ``--shard-size`` options and the device group of ``jaxir sample``."""
    from ._common import positive_int

    g = add_device_options(
        p, "--out-dir writes the samples by shard (OUT/samples_00000.npz, ...; uint8 images); "
        "rerun the same command to resume a killed job. With --out-dir, --mesh or "
        "--coordinator each image i has its own key fold_in(seed, i), the same on any number "
        "of devices and hosts (and not the one-batch grid's images)")
    g.add_argument("--out-dir", default=None, help="write the samples by shard to this folder")
    g.add_argument("--shard-size", type=positive_int, default=256,
                   help="samples per shard file (default 256)")


def cmd_sample_sharded(args) -> int:
    """``jaxir sample`` with --out-dir, --mesh or multi-host options, once ``_train._cmd_sample``
    has checked the workdir's model and that exactly one of --out-dir / --output is given."""
    check_mesh(args)
    out = None
    if args.out_dir is not None:
        check_output_dir(args.out_dir, what="--out-dir")
    else:
        out = check_output_file(args.output, overwrite=args.overwrite)
    m = setup_devices(args)
    import jax
    import numpy as np

    from .. import distributed
    from ..training import CheckpointError

    root = jax.process_index() == 0
    sampler, steps = args.sampler or "ddim", args.steps or 50
    n = args.n or 16
    try:
        if out is not None:
            from ..training import save_image_grid

            res = distributed.sample_workdir(jax.random.key(args.seed), args.workdir, n,
                                             sampler=sampler, steps=steps, label=args.label,
                                             ema=not args.no_ema, mesh=m,
                                             per_device=args.per_device)
            if root:
                _save_grid(save_image_grid, np.clip(res.x, -1, 1), out)
                print(f"wrote {n} {sampler} samples ({steps} steps, {m.size} devices) to {out}")
            return 0
        kill_after = int(os.environ.get(KILL_AFTER_SHARDS, "0") or 0)
        done = []

        def on_shard(s):
            done.append(s)
            if root:
                print(f"shard {s} written", flush=True)
            if kill_after and len(done) >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        info = distributed.sample_shards(
            args.out_dir, args.workdir, n, seed=args.seed, sampler=sampler, steps=steps,
            label=args.label, ema=not args.no_ema, shard_size=args.shard_size, mesh=m,
            per_device=args.per_device, on_shard=on_shard)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if root:
        if not info["finite"]:
            print("jaxir: warning: some samples are not finite")
        print(f"{n} {sampler} samples ({steps} steps) in {info['shards']} shards of "
              f"{args.out_dir}: {len(info['written'])} written now, {info['skipped']} already "
              f"there; {m.size} devices, {jax.process_count()} process(es)")
    return 0


def _save_grid(save_image_grid, x, out: Path) -> None:
    """`save_image_grid` to a temporary file, renamed over ``out`` (atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.png")
    try:
        save_image_grid(x, tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
