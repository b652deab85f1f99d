"""Prior files: the shipped photos64 denoises held-out photographs; export/load round trip;
clear errors for missing, foreign and damaged files."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir.data import photos
from jaxir.predictions import to_x0_eps
from jaxir.priors import export_prior, load_prior, prior_path


@pytest.fixture(scope="module")
def shipped():
    return load_prior("photos64")


def test_shipped_prior_denoises_held_out_crops(shipped):
    """One x̂0 prediction at DDPM index 200 (ᾱ ≈ 0.66, noise std 0.71 relative to the signal
    scale) on 8 crops of the *test* photographs (astronaut, coffee), never seen in training:
    the denoised crops must be far closer to the truth than the (rescaled) noisy input."""
    p = shipped
    assert (p.image_size, p.channels, p.prediction) == (64, 3, "eps")
    src = photos(64, "test", crops_per_image=4)
    x0 = jnp.stack([jnp.asarray(src[i]["image"], jnp.float32) / 127.5 - 1 for i in range(8)])
    t = jnp.asarray(p.sde.index_to_time(200))
    a, s = p.sde.marginal_coeffs(t)
    eps = jax.random.normal(jax.random.key(0), x0.shape)
    xt = a * x0 + s * eps
    out = p.model_fn(xt, jnp.full((8,), t))
    x0_hat, _ = to_x0_eps(out, xt, t, p.sde, p.prediction)
    mse_model = float(jnp.mean((x0_hat - x0) ** 2))
    mse_input = float(jnp.mean((xt / a - x0) ** 2))  # the noisy input, rescaled
    assert np.isfinite(mse_model) and mse_model < 0.1 * mse_input  # measured 0.0134 vs 0.526, (mse_model, mse_input)


def test_export_load_round_trip(tmp_path):
    from jaxir.models import UNetConfig
    from jaxir.training import DataConfig, OptimConfig, TrainConfig, train

    cfg = TrainConfig(
        model=UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1,),
                         num_res_blocks=1, attention_resolutions=(), image_size=8, num_groups=4),
        optim=OptimConfig(lr=1e-3, warmup_steps=1), data=DataConfig(source="digits", image_size=8,
                                                                    batch_size=4),
        steps=2, log_every=1, save_every=0)
    state = train(cfg, tmp_path / "run", progress=False)
    path = export_prior(tmp_path / "run", tmp_path / "p.npz")
    p = load_prior(path)
    leaves = jax.tree.leaves(p.params)
    ema = jax.tree.leaves(state.ema_params)
    assert len(leaves) == len(ema) > 5
    for u, v in zip(leaves, ema):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    x = jnp.zeros((2, 8, 8, 1))
    assert p.model_fn(x, jnp.full((2,), 0.5)).shape == (2, 8, 8, 1)
    half = export_prior(tmp_path / "run", tmp_path / "h.npz", dtype="float16")
    q = load_prior(half)
    for u, v in zip(jax.tree.leaves(q.params), leaves):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-3, atol=1e-4)
    assert dataclasses.asdict(q.config.model) == dataclasses.asdict(cfg.model)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="photos64"):
        prior_path("no_such_prior")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prior(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        load_prior(tmp_path / "junk.npz")
    np.savez(tmp_path / "foreign.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="not a jaxir prior"):
        load_prior(tmp_path / "foreign.npz")
    with np.load(prior_path("photos64")) as f:
        arrays = {k: f[k] for k in f.files}
    key = sorted(k for k in arrays if k != "__config__")[0]
    bad = dict(arrays)
    bad[key] = bad[key][..., :1]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="has shape"):
        load_prior(tmp_path / "bad.npz")
    del bad[key]
    np.savez(tmp_path / "lack.npz", **bad)
    with pytest.raises(ValueError, match="lacks parameter"):
        load_prior(tmp_path / "lack.npz")
    cfg = json.loads(arrays["__config__"].tobytes())
    assert cfg["model"]["image_size"] == 64
