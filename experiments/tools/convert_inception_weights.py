"""One-off converter: pytorch-fid's FID InceptionV3 weights (``.pth``) to jaxir's ``.npz`` layout.

pytorch-fid (Seitzer, Apache-2.0) computes FID with TensorFlow's 2015-12-05 Inception graph,
ported to torch as ``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict, published on
pytorch-fid's GitHub release "fid_weights"). No PyPI package ships that file, so jaxir cannot
bundle it: download it once yourself and convert it here, in any environment with torch (jaxir
and jax are not needed). jaxir itself never unpickles anything.

Usage (from the repository root)::

    python experiments/tools/convert_inception_weights.py \
        pt_inception-2015-12-05-6726825d.pth ~/.cache/jaxir/inception_fid.npz
    export JAXIR_INCEPTION_WEIGHTS=~/.cache/jaxir/inception_fid.npz

then ``jaxir.metrics.inception_features(images)`` / ``inception_features_fn()`` find it (or
pass ``weights=PATH``).

The ``.pth`` is read with ``torch.load(..., weights_only=True)`` (tensors and containers only).
Output layout (read by ``jaxir.metrics.load_inception``): the state-dict names unchanged, e.g.
``Conv2d_1a_3x3.conv.weight`` (O, I, kh, kw) and ``Mixed_5b.branch1x1.bn.running_var`` (C,),
as float32 in torch layout (jaxir transposes the kernels when loading). Dropped: the 1008-way
classifier ``fc.*``, any ``AuxLogits.*`` and the BatchNorm ``num_batches_tracked`` counters,
none of which the pool3 features use. 94 conv + BatchNorm units, 470 arrays, 21.8 M numbers.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

# sha256 prefix in the file name of pytorch-fid's release asset
_EXPECTED_PREFIX = "6726825d"
_DROPPED_PREFIXES = ("fc.", "AuxLogits.")
_NUM_ARRAYS = 470


def convert(state_dict) -> dict[str, np.ndarray]:
    """The float32 numpy arrays jaxir loads, from the ``Inception3`` state dict of the ``.pth``
    (name -> tensor). The state dict of pytorch-fid's ``InceptionV3`` wrapper, whose names are
    ``blocks.i.j.…``, is refused: convert the ``.pth`` itself.
    """
    out: dict[str, np.ndarray] = {}
    for name, tensor in state_dict.items():
        if name.startswith("blocks."):
            raise ValueError(
                f"{name!r}: this is the state dict of pytorch-fid's InceptionV3 wrapper; "
                "convert the pt_inception-2015-12-05-*.pth file (an Inception3 state dict)"
            )
        if name.endswith("num_batches_tracked") or name.startswith(_DROPPED_PREFIXES):
            continue
        out[name] = np.asarray(tensor.detach().cpu().numpy(), np.float32)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pth", type=Path, help="pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("out", type=Path, help="output .npz")
    args = parser.parse_args(argv)

    import torch  # only this converter needs torch

    digest = hashlib.sha256(args.pth.read_bytes()).hexdigest()
    if not digest.startswith(_EXPECTED_PREFIX):
        print(
            f"warning: sha256 {digest[:16]}... does not start with {_EXPECTED_PREFIX}: "
            "not pytorch-fid's 2015-12-05 Inception file?"
        )
    arrays = convert(torch.load(args.pth, map_location="cpu", weights_only=True))
    if len(arrays) != _NUM_ARRAYS:
        print(f"warning: {len(arrays)} arrays, expected {_NUM_ARRAYS} for the FID Inception")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:  # exactly this path (np.savez would append ".npz")
        np.savez(f, **arrays)
    n = sum(v.size for v in arrays.values())
    print(f"{args.out}: {len(arrays)} arrays, {n:,} float32 parameters, "
          f"{args.out.stat().st_size / 2**20:.1f} MiB (from sha256 {digest[:16]}...)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
