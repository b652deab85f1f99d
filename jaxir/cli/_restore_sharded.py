"""``jaxir restore`` and ``jaxir evaluate`` over many devices and hosts (`jaxir.distributed`).

With ``--mesh``, ``--per-device`` or the multi-host options (``--coordinator``,
``--num-processes``, ``--process-id``) the windows of the patch-wise restoration are spread
over the devices, window ``w`` restored from ``fold_in(key, w)`` (the same output on any mesh),
and the outputs are written by shard, atomically, by process 0:

* ``jaxir restore IN -o OUT``: IN a folder of images and OUT a folder (one shard per image,
  ``OUT/<name>.png``; a rerun skips the images already restored), or IN one image and OUT a
  PNG file;
* ``jaxir evaluate``: one shard per method in ``OUT/evaluate_TASK.shards/`` (a rerun skips the
  methods already scored), then ``OUT/evaluate_TASK.csv`` and ``.md``, with the PSNR / SSIM /
  consistency rows gathered on process 0.

The parsers of `jaxir.cli._restore` get the options here (:func:`extend`), so the one-device
commands are unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ._common import UsageError, check_input_file, check_output_dir, check_output_file
from ._devices import add_device_options, check_mesh, setup_devices, wants_devices

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def extend(restore_parser, evaluate_parser) -> None:
    """Add the device options to the ``restore`` and ``evaluate`` sub-parsers; with any of them
    given, the command runs here instead of its one-device entry point."""
    add_device_options(restore_parser, "with any of these, windows are spread over the devices "
                       "(window w from fold_in(seed, w): the same output on any mesh); INPUT "
                       "may be a folder of images, OUTPUT then a folder: one PNG per image, "
                       "and a rerun skips the images already written")
    add_device_options(evaluate_parser, "with any of these, windows are spread over the "
                       "devices and each method's rows go to OUT/evaluate_TASK.shards/ as it "
                       "finishes: a rerun skips the methods already scored")
    for p, sharded in ((restore_parser, cmd_restore_sharded),
                       (evaluate_parser, cmd_evaluate_sharded)):
        plain = p.get_default("func")
        p.set_defaults(func=lambda args, plain=plain, sharded=sharded:
                       sharded(args) if wants_devices(args) else plain(args))


def _images_of(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"input folder {str(folder)!r} holds no image "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in files]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        raise UsageError(f"input folder {str(folder)!r} has two images named {dup!r} (the "
                         f"outputs would collide: OUTPUT/{dup}.png)")
    return files


def cmd_restore_sharded(args) -> int:
    """``jaxir restore`` over a mesh / several hosts (see the module docstring)."""
    from ._restore import _check_samples, _check_size, _check_steps, _read, _task_and_method
    from ._restore import load_prior_or_fail

    task, method = _task_and_method(args.task, args.method)
    _check_samples(args.samples, [method])
    _check_steps(args.steps, [method])
    check_mesh(args)
    if args.degrade:
        raise UsageError("--degrade is for one image on one device; to score restorations "
                         "over many devices use jaxir evaluate --mesh")
    src = Path(args.input)
    folder = src.is_dir()
    if folder:
        if args.mask is not None:
            raise UsageError("--mask goes with one input image, not a folder")
        if task.make_mask is not None:
            raise UsageError(f"task {task.name!r} needs a mask per image: restore one image "
                             f"at a time with --mask")
        files = _images_of(src)
        out = check_output_dir(args.output, what="--output")
        if out.exists() and out.resolve() == src.resolve():
            raise UsageError("--output is the input folder: choose another folder (inputs are "
                             "never overwritten)")
    else:
        check_input_file(src)
        if args.mask is not None:
            check_input_file(args.mask, "--mask")
        elif task.make_mask is not None:
            raise UsageError(f"task {task.name!r} on a real image needs --mask MASK.png")
        files = [src]
        out = check_output_file(args.output, overwrite=args.overwrite,
                                inputs=(args.input, args.mask))
    colorize = task.y_channels == 1
    loaded = []
    for f in files:
        img, info = _read(f, "input", channels=1 if colorize else None)
        _check_size(img.shape[0] * task.factor, img.shape[1] * task.factor,
                    f"the restored image of {str(f)!r} ({img.shape[0]}x{img.shape[1]} in)")
        loaded.append((img, bool(info["gray"]) and not colorize))
    mask = None
    if args.mask is not None:
        m, _ = _read(args.mask, "--mask", channels=1)
        mask = (m > 0).astype("float32")[None]
        if mask.shape[1:3] != loaded[0][0].shape[:2]:
            raise UsageError(f"--mask is {mask.shape[1]}x{mask.shape[2]}, the input is "
                             f"{loaded[0][0].shape[0]}x{loaded[0][0].shape[1]}")
    mesh = setup_devices(args)
    prior = load_prior_or_fail(args.prior) if method.kind == "diffusion" else None
    import jax
    import numpy as np

    from .. import distributed
    from ..restore._io import save_image

    target = [out / f"{f.stem}.png" for f in files] if folder else [out]
    if folder:
        try:
            distributed.check_manifest(out, {
                "task": task.name, "method": method.name, "steps": args.steps,
                "samples": args.samples, "seed": args.seed, "prior": str(args.prior),
                "keys": "fold_in(fold_in(key(seed), image j), window w)"})
        except ValueError as e:
            raise UsageError(str(e)) from None

    def compute(j):
        img, gray = loaded[j]
        y = np.repeat(img, 3, -1) if img.shape[-1] == 1 and not colorize else img
        x = distributed.restore_images(
            y[None], task, method, prior=prior, mask=mask, steps=args.steps,
            samples=args.samples, key=jax.random.fold_in(jax.random.key(args.seed), j),
            mesh=mesh, per_device=args.per_device)[0]
        return x.mean(-1, keepdims=True) if gray else x

    done = distributed.run_shards(
        len(files), compute, lambda j, x: save_image(target[j], x),
        lambda j: folder and target[j].exists(), out_dir=out if folder else None)
    if jax.process_index() == 0:
        print(f"restored {len(done)} image(s) ({task.name}, {method.name}) -> {out}; "
              f"{len(files) - len(done)} already there; {mesh.size} devices, "
              f"{jax.process_count()} process(es)")
    return 0


def cmd_evaluate_sharded(args) -> int:
    """``jaxir evaluate`` over a mesh / several hosts (see the module docstring)."""
    from ._evaluate import (
        evaluation_images,
        evaluation_methods,
        evaluation_tables,
        write_evaluation,
    )

    names, methods = evaluation_methods(args)
    check_mesh(args)
    if args.append:
        raise UsageError("--append is for one device; with --mesh a rerun resumes from "
                         "OUT/evaluate_TASK.shards instead")
    out_dir, stem, _ = evaluation_tables(args, may_append=False)
    mesh = setup_devices(args)
    prior, size, images = evaluation_images(args, methods)
    import jax

    from .. import distributed
    try:
        rows = distributed.evaluate(names, args.task, images, prior=prior, steps=args.steps,
                                    seed=args.seed, samples=args.samples, mesh=mesh,
                                    per_device=args.per_device,
                                    parts_dir=out_dir / f"{stem}.shards")
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if jax.process_index() != 0:
        return 0
    return write_evaluation(rows, out_dir, stem, f"{args.task} on {args.n} images of "
                            f"{args.data} ({size}x{size}), {mesh.size} devices, "
                            f"{jax.process_count()} process(es); mean ± 95% CI:")
