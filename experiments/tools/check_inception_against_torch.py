"""One-off check: jaxir's FID InceptionV3 against pytorch-fid's, with the same random weights.

Run with a Python that has torch, torchvision and pytorch-fid (jaxir's own venv is used for the
jax side, in a subprocess; arrays travel through ``.npz`` files)::

    /work/torchvenv/bin/python experiments/tools/check_inception_against_torch.py
    # once, to (re)write the list of parameter names and shapes that the tests compare with:
    /work/torchvenv/bin/python experiments/tools/check_inception_against_torch.py \
        --keys-json tests/data/inception_fid_keys.json

The torch reference is pytorch-fid 0.3.0's own ``InceptionV3(output_blocks=[3])`` (resize to
299 with ``F.interpolate(bilinear, align_corners=False)``, ``2 x - 1``, blocks, adaptive average
pool), built by ``fid_inception_v3()``'s recipe (torchvision ``Inception3(num_classes=1008,
aux_logits=False)`` with the FID blocks patched in) minus its ``load_state_dict``: there is no
network here, and random weights test the architecture just as well. Convolutions get
He-normal weights and BatchNorms random affine parameters; their running statistics are
calibrated on random images (so that activations keep a sensible scale through 94 layers) and
then perturbed, so that no BatchNorm is the identity or an exact batch normalisation. The state dict then goes
through ``convert_inception_weights.convert`` into an ``.npz`` that jaxir loads with
``load_inception``. The images are 4 uniform-random RGB images per size, in [0, 1] for torch
and ``2 x - 1`` in [-1, 1] for jaxir; 64² and 512² exercise the up- and down-sampling resize.

Measured (torch 2.13.0+cpu, torchvision 0.28.0, pytorch-fid 0.3.0; jax 0.10.2 CPU, float32;
seed 0; "ref" are the torch features)::

    size      max |ref|  mean ref  max |jax - ref|  max abs / max |ref|  ‖jax - ref‖ / ‖ref‖
    64×64       206.9      23.56       1.3e-04            6.3e-07              5.8e-07
    299×299      18.38      1.896      1.8e-04            9.5e-06              6.0e-06
    512×512     100.5       9.576      9.2e-05            9.1e-07              7.6e-07

i.e. float32 round-off. The check has teeth: counting the padded zeros in the type A/C/E
average pools gives relative errors of 0.1–0.2, and resizing 512² with ``jax.image.resize``'s
default antialiasing gives 0.9 (64² and 299² unaffected), so both quirks are pinned down.

torchvision's PyPI wheels are CUDA builds whose C++ ops do not load next to a CPU-only torch;
only two operator schemas are needed for ``import torchvision`` to succeed, and none of its
ops is used, so they are declared here as placeholders when the ops are missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SIZES = (64, 299, 512)
NUM_IMAGES = 4


# --- jax side (runs in jaxir's venv) -------------------------------------------------------


def _jax_side(weights: str, images: str, out: str) -> None:
    from jaxir.metrics import inception_features

    with np.load(images) as data:
        feats = {k: inception_features(data[k], weights=weights) for k in data.files}
    np.savez(out, **feats)


# --- torch side -----------------------------------------------------------------------------


def _import_pytorch_fid():
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError:  # CUDA torchvision wheel next to CPU torch: declare the two ops
        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 (kept alive below)
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _import_pytorch_fid.lib = lib
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        import torchvision  # noqa: F401
    import pytorch_fid.inception as pfid

    return pfid


def _build_torch_reference(seed: int):
    """pytorch-fid's InceptionV3 wrapper around a randomly initialised FID Inception3."""
    import torch

    pfid = _import_pytorch_fid()
    built = {}

    def fid_inception_v3_random():  # fid_inception_v3() without load_state_dict
        net = pfid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = pfid.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = pfid.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = pfid.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = pfid.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = pfid.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = pfid.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = pfid.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = pfid.FIDInceptionE_1(1280)
        net.Mixed_7c = pfid.FIDInceptionE_2(2048)
        built["inception"] = net
        return net

    pfid.fid_inception_v3 = fid_inception_v3_random  # looked up when InceptionV3 is built
    torch.manual_seed(seed)
    model = pfid.InceptionV3(output_blocks=[pfid.InceptionV3.DEFAULT_BLOCK_INDEX])
    inception = built["inception"]

    gen = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in inception.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in inception.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        for bn in bns:  # random affine parameters
            c = bn.num_features
            bn.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=gen))
            bn.bias.copy_(0.2 * torch.randn(c, generator=gen))
        # running statistics: the batch statistics of random images (cumulative average), so
        # that activations keep their scale through the network, then moved off those values
        model.train()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model(torch.rand(8, 3, 299, 299, generator=gen))
        model.eval()
        for bn in bns:
            c = bn.num_features
            bn.running_var.mul_(torch.empty(c).uniform_(0.7, 1.4, generator=gen))
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn(c, generator=gen))
    return model, inception


def _torch_features(model, images_nhwc01):
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc01.transpose(0, 3, 1, 2)))
        return model(x)[0].reshape(len(images_nhwc01), -1).numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jax-side", nargs=3, metavar=("WEIGHTS", "IMAGES", "OUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--jax-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--keys-json", type=Path, help="write converted names and shapes here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.jax_side:
        _jax_side(*args.jax_side)
        return 0

    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, str(HERE))
    from convert_inception_weights import convert

    model, inception = _build_torch_reference(args.seed)
    arrays = convert(inception.state_dict())
    print(f"converted {len(arrays)} arrays, {sum(v.size for v in arrays.values()):,} numbers")
    if args.keys_json:
        lines = [f"{json.dumps(k)}: {json.dumps(list(arrays[k].shape))}" for k in sorted(arrays)]
        args.keys_json.parent.mkdir(parents=True, exist_ok=True)
        args.keys_json.write_text("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"wrote {args.keys_json}")

    rng = np.random.default_rng(args.seed)
    images = {f"s{s}": rng.uniform(0, 1, (NUM_IMAGES, s, s, 3)).astype(np.float32) for s in SIZES}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "weights.npz", **arrays)
        np.savez(tmp / "images.npz", **{k: 2.0 * v - 1.0 for k, v in images.items()})
        cmd = [args.jax_python, __file__, "--jax-side", str(tmp / "weights.npz"),
               str(tmp / "images.npz"), str(tmp / "feats.npz")]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=ROOT)
        with np.load(tmp / "feats.npz") as data:
            jax_feats = {k: data[k] for k in data.files}

    worst = 0.0
    print(f"{'size':>9}  {'max|ref|':>9}  {'mean ref':>9}  {'max abs err':>11}  "
          f"{'max abs / max|ref|':>18}  {'rel L2':>9}")  # fmt: skip
    for key, x in images.items():
        ref = _torch_features(model, x).astype(np.float64)
        got = jax_feats[key].astype(np.float64)
        assert got.shape == ref.shape == (NUM_IMAGES, 2048), (got.shape, ref.shape)
        err = np.abs(got - ref).max()
        rel = err / np.abs(ref).max()
        rel_l2 = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        worst = max(worst, rel)
        s = key[1:]
        print(f"{s + '×' + s:>9}  {np.abs(ref).max():9.4f}  {ref.mean():9.4f}  {err:11.3e}  "
              f"{rel:18.3e}  {rel_l2:9.3e}")  # fmt: skip
    ok = worst < 1e-4
    print("agree" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
