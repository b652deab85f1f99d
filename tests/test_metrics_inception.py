"""FID InceptionV3: layout equals pytorch-fid's, npz loading, features, errors.

Numerical agreement with pytorch-fid itself is checked outside the test suite (it needs torch)
by ``experiments/tools/check_inception_against_torch.py``; ``data/inception_fid_keys.json`` is
the list of state-dict names and shapes written by that script from pytorch-fid's network.
One forward pass shape (2 images of 40×48) is compiled for the whole file.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from jaxir.metrics import (
    InceptionV3,
    fid,
    inception_features,
    inception_features_fn,
    kid,
    load_inception,
)
from jaxir.metrics._inception import _torch_named_variables, _torch_shape, torch_state_dict

KEYS = json.loads((Path(__file__).parent / "data" / "inception_fid_keys.json").read_text())
ENV = "JAXIR_INCEPTION_WEIGHTS"


def _random_arrays(seed=0):
    """Random weights under pytorch-fid's names: He-normal convs, non-trivial BatchNorms."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in KEYS.items():
        if name.endswith("conv.weight"):
            w = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif name.endswith("running_var"):
            w = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("bn.weight"):
            w = rng.uniform(0.5, 1.5, shape)
        else:  # bn.bias, bn.running_mean
            w = 0.1 * rng.standard_normal(shape)
        out[name] = w.astype(np.float32)
    return out


@pytest.fixture(scope="module")
def arrays():
    return _random_arrays()


@pytest.fixture(scope="module")
def weights(arrays, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception_fid.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(-1, 1, (3, 40, 48, 3)).astype(np.float32)


def test_parameter_names_and_shapes_equal_pytorch_fid():
    model = nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))
    names = {
        name: list(_torch_shape(name, var.get_value().shape))
        for name, var in _torch_named_variables(model)
    }
    assert names == KEYS
    assert len(KEYS) == 470 and sum(np.prod(s) for s in KEYS.values()) == 21_820_000


def test_load_inception_round_trips(weights, arrays):
    model = load_inception(weights)
    back = torch_state_dict(model)
    assert back.keys() == arrays.keys()
    for name, value in arrays.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    # torch OIHW -> HWIO, BatchNorm names mapped
    kernel = np.asarray(model.Mixed_6b.branch7x7_2.conv.kernel.get_value())
    assert kernel.shape == (1, 7, 128, 128)
    np.testing.assert_array_equal(
        kernel, arrays["Mixed_6b.branch7x7_2.conv.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        np.asarray(model.Mixed_7c.branch_pool.bn.var.get_value()),
        arrays["Mixed_7c.branch_pool.bn.running_var"],
    )


def test_features_shape_batching_env_and_fid(weights, images, monkeypatch):
    two = images[:2]
    f = inception_features(two, weights=weights)
    assert f.shape == (2, 2048) and f.dtype == np.float32
    assert np.all(np.isfinite(f)) and f.min() >= 0.0  # means of ReLU outputs
    assert f.max() > 0.0 and not np.allclose(f[0], f[1])
    # N > batch_size: batches of 2, the last one padded; same compiled shape as above
    f3 = inception_features(jax.numpy.asarray(images), weights=weights, batch_size=2)
    np.testing.assert_allclose(f3[:2], f, rtol=1e-6, atol=1e-6)
    alone = inception_features(images[[2, 2]], weights=weights)[0]
    np.testing.assert_allclose(f3[2], alone, rtol=1e-6, atol=1e-6)
    # default weights from the environment; the loaded model is cached per path
    monkeypatch.setenv(ENV, str(weights))
    fn = inception_features_fn()
    np.testing.assert_allclose(fn(two), f, rtol=1e-6, atol=1e-6)
    # as features_fn of fid / kid (one FID only: its 2048×2048 eigendecompositions are slow)
    scale = float(np.var(f, axis=0).sum())
    assert abs(fid(two, two, features_fn=fn)) < 1e-8 * scale
    assert np.isfinite(kid(two, images[1:], features_fn=fn, num_subsets=2)[0])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 8, 3), np.float32), r"\(N, H, W, 3\)"),
        (np.zeros((1, 8, 8, 1), np.float32), "grayscale"),
        (np.zeros((0, 8, 8, 3), np.float32), "N >= 1"),
        (np.zeros((1, 8, 8, 3), np.uint8), "dtype uint8"),
        (np.full((1, 8, 8, 3), 1.5, np.float32), r"\[-1, 1\]"),
        (np.full((1, 8, 8, 3), np.nan, np.float32), r"\[-1, 1\]"),
        (jax.numpy.full((1, 8, 8, 3), -2.0), r"\[-1, 1\]"),
    ],
)
def test_input_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        inception_features(bad)  # checked before any weights are looked for


def test_missing_weights_name_the_converter(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(FileNotFoundError, match="convert_inception_weights.py") as err:
        inception_features(x)
    assert ENV in str(err.value)
    missing = tmp_path / "nowhere.npz"
    for call in (lambda: load_inception(missing), lambda: inception_features_fn(missing)):
        with pytest.raises(FileNotFoundError, match="nowhere.npz") as err:
            call()
        assert "convert_inception_weights.py" in str(err.value) and ENV in str(err.value)
    monkeypatch.setenv(ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        inception_features(x)


def test_wrong_keys_and_shapes_are_listed(arrays, tmp_path):
    bad = dict(arrays)
    del bad["Mixed_6e.branch7x7dbl_3.bn.running_mean"]
    bad["fc.weight"] = np.zeros((1008, 2048), np.float32)
    bad["Mixed_5b.branch_pool.conv.weight"] = np.zeros((64, 192, 1, 1), np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **bad)
    with pytest.raises(ValueError) as err:
        load_inception(path)
    msg = str(err.value)
    assert "missing keys: Mixed_6e.branch7x7dbl_3.bn.running_mean" in msg
    assert "unexpected keys: fc.weight" in msg
    assert "wrong shapes: Mixed_5b.branch_pool.conv.weight (64, 192, 1, 1)" in msg
    assert "(32, 192, 1, 1)" in msg
