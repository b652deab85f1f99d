"""Tests for jaxir.models: shapes, embeddings, conditioning, dropout, the pure boundary
(jit / vmap / grad), the noisy classifier and every ValueError path.

Networks are the "tiny" presets on 8×8 images so the whole file runs in well under a
minute on 2 CPU cores; models are built once per module.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxir.models import (
    ClassifierConfig,
    NoisyClassifier,
    UNet,
    UNetConfig,
    classifier_config,
    classifier_log_prob_fn,
    make_model_fn,
    param_count,
    split_model,
    unet_config,
)

B, S = 2, 8  # batch and image size used throughout


@jax.jit
def _perturb(params, scale=0.05):
    """Add a fixed pseudo-random pattern to every parameter so that zero-initialised layers
    stop hiding bugs (a sin hash rather than jax.random: far cheaper to compile on CPU)."""
    leaves, treedef = jax.tree.flatten(params)
    new = [
        p
        + scale * jnp.sin(jnp.arange(p.size, dtype=p.dtype) * 12.9898 + 78.233 * i).reshape(p.shape)
        for i, p in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, new)


@pytest.fixture(scope="module")
def data():
    """x (B, S, S, 3) and an image condition (B, S, S, 2), fixed pseudo-random values."""
    rng = np.random.default_rng(0)
    return (
        jnp.asarray(rng.standard_normal((B, S, S, 3)), jnp.float32),
        jnp.asarray(rng.standard_normal((B, S, S, 2)), jnp.float32),
    )


@pytest.fixture(scope="module")
def tiny():
    """The plain tiny U-Net (sinusoidal time, no classes, no condition)."""
    model = UNet(unet_config("tiny"), rngs=nnx.Rngs(0))
    graphdef, params = split_model(model)
    fn = jax.jit(lambda p, x, t: make_model_fn(graphdef, p)(x, t, None))
    return model, graphdef, params, _perturb(params), fn


FULL = unet_config(
    "tiny",
    attention_resolutions=(8,),
    num_classes=3,
    cond_channels=2,
    time_embedding="fourier",
    dropout=0.5,
    use_scale_shift_norm=True,
    resblock_updown=True,
    scale_skip=True,
    num_heads=2,
)


@pytest.fixture(scope="module")
def full():
    """Every option on: classes (+ null), image condition, Fourier time, dropout,
    scale-shift norm, residual up/down, √2 skip scaling, two heads."""
    model = UNet(FULL, rngs=nnx.Rngs(0))
    graphdef, params = split_model(model)

    @jax.jit
    def fn(p, x, t, cond, key=None):
        return make_model_fn(graphdef, p, dropout_key=key)(x, t, cond)

    return model, graphdef, params, _perturb(params, 0.04), fn


# ----------------------------------------------------------------------------- presets


def test_preset_parameter_counts_and_shapes_without_allocation():
    """nnx.eval_shape / jax.eval_shape only: no parameter is allocated, nothing compiles."""
    counts = {}
    for name, size in (("tiny", 8), ("small", 16), ("base", 32)):
        abstract = nnx.eval_shape(lambda name=name: UNet(unet_config(name), rngs=nnx.Rngs(0)))
        g, p = split_model(abstract)
        counts[name] = param_count(p)
        x = jax.ShapeDtypeStruct((B, size, size, 3), jnp.float32)
        out = jax.eval_shape(lambda p, x, g=g: make_model_fn(g, p)(x, 0.1, None), p, x)
        assert out.shape == (B, size, size, 3) and out.dtype == jnp.float32
    # DDPM CIFAR-10 (Ho et al. 2020): 35.7M parameters.
    assert abs(counts["base"] - 35.7e6) / 35.7e6 < 0.10
    assert 1e6 <= counts["small"] <= 2e6
    assert counts["tiny"] < 3e5


def test_presets_are_frozen_hashable_and_overridable():
    cfg = unet_config("tiny", channel_mults=[1, 2], in_channels=1)
    assert cfg.channel_mults == (1, 2) and cfg.in_channels == 1
    assert hash(cfg) == hash(unet_config("tiny", in_channels=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.base_channels = 8
    assert unet_config("base").dropout == 0.1
    assert unet_config("adm64").null_label == 1000
    assert classifier_config("small").num_classes == 10
    assert unet_config("tiny").effective_time_scale == 1000.0
    assert unet_config("tiny", time_embedding="fourier").effective_time_scale == 1.0


# ----------------------------------------------------------------------------- U-Net


def test_tiny_shapes_and_zero_output_at_init(tiny, data):
    _, _, params, _, fn = tiny
    x, _ = data
    for size in (8, 16):
        xs = jnp.zeros((B, size, size, 3)) + x[:, :1, :1]
        out = fn(params, xs, 0.5)
        assert out.shape == (B, size, size, 3) and out.dtype == jnp.float32
        # The last conv is zero-initialised: the network predicts exactly 0 at init.
        np.testing.assert_array_equal(out, 0.0)


def test_scalar_and_batched_t_agree_and_t_matters(tiny, data):
    _, _, _, pp, fn = tiny
    x, _ = data
    a = fn(pp, x, 0.3)
    b = fn(pp, x, jnp.full((B,), 0.3))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    c = fn(pp, x, jnp.array([0.3, 0.9]))
    np.testing.assert_allclose(c[0], a[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(c[1], a[1])
    assert np.isfinite(a).all() and np.abs(a).max() > 0


def _lab(*values):
    return {"label": jnp.array(values, dtype=jnp.int32)}


def test_fourier_embedding_class_labels_and_null_class(full, data):
    _, _, _, pp, fn = full
    x, c = data
    null = FULL.null_label
    base = fn(pp, x, 0.4, {"image": c, **_lab(null, null)})
    y0 = fn(pp, x, 0.4, {"image": c, **_lab(0, 0)})
    y1 = fn(pp, x, 0.4, {"image": c, **_lab(1, 0)})
    assert not np.allclose(y0, base)  # a class differs from the null class
    assert not np.allclose(y0[0], y1[0])
    np.testing.assert_allclose(y0[1], y1[1], atol=1e-6)  # examples are independent
    # Fourier time embedding: t changes the output; so does the image condition.
    assert not np.allclose(base, fn(pp, x, 0.9, {"image": c, **_lab(null, null)}))
    assert not np.allclose(base, fn(pp, x, 0.4, {"image": c + 1.0, **_lab(null, null)}))
    assert base.shape == (B, S, S, 3) and np.isfinite(base).all()


def test_cond_forms_agree(full, data):
    """None / array / dict forms of cond, and a label bound by make_model_fn."""
    _, graphdef, _, pp, fn = full
    x, c = data
    lab = jnp.array([2, 1])

    @jax.jit
    def forms(p, x, c):
        plain = make_model_fn(graphdef, p)
        bound = make_model_fn(graphdef, p, label=lab)
        return (
            plain(x, 0.4, c),
            plain(x, 0.4, {"image": c}),
            bound(x, 0.4, c),
            bound(x, 0.4, {"image": c, "label": FULL.null_label}),
        )

    array_form, dict_form, bound, overridden = forms(pp, x, c)
    null = FULL.null_label
    np.testing.assert_allclose(
        array_form, fn(pp, x, 0.4, {"image": c, **_lab(null, null)}), atol=1e-5
    )
    np.testing.assert_allclose(dict_form, array_form, atol=1e-5)
    np.testing.assert_allclose(overridden, array_form, atol=1e-5)
    np.testing.assert_allclose(bound, fn(pp, x, 0.4, {"image": c, **_lab(2, 1)}), atol=1e-5)


def test_dropout_only_when_not_deterministic(full, data):
    model, _, _, pp, fn = full
    x, c = data
    cond = {"image": c, **_lab(0, 1)}
    det = fn(pp, x, 0.4, cond)
    np.testing.assert_array_equal(det, fn(pp, x, 0.4, cond))
    # "rbg" keys: same code path, much cheaper to compile on CPU than threefry.
    d1 = fn(pp, x, 0.4, cond, jax.random.key(1, impl="rbg"))
    d2 = fn(pp, x, 0.4, cond, jax.random.key(2, impl="rbg"))
    np.testing.assert_array_equal(d1, fn(pp, x, 0.4, cond, jax.random.key(1, impl="rbg")))
    assert not np.allclose(d1, d2) and not np.allclose(d1, det)
    with pytest.raises(ValueError, match="rngs"):
        model(x, 0.4, c, deterministic=False)


def test_jit_vmap_grad_through_model_fn(tiny, data):
    _, graphdef, params, pp, fn = tiny
    x, _ = data
    # vmap over a leading axis of x: same as one big batch.
    v = jax.jit(jax.vmap(make_model_fn(graphdef, pp), in_axes=(0, None, None)))(
        jnp.stack([x, -x]), 0.2, None
    )
    np.testing.assert_allclose(v[0], fn(pp, x, 0.2), atol=1e-5)
    np.testing.assert_allclose(v[1], fn(pp, -x, 0.2), atol=1e-5)
    # vmap over a stacked params pytree (an ensemble of two networks).
    stacked = jax.tree.map(lambda u, v: np.stack([u, v]), params, pp)  # host-side stack
    ens = jax.jit(jax.vmap(lambda p: make_model_fn(graphdef, p)(x, 0.2)))(stacked)
    np.testing.assert_array_equal(ens[0], 0.0)
    np.testing.assert_allclose(ens[1], fn(pp, x, 0.2), atol=1e-5)
    # grad w.r.t. params and x after perturbing only the zero-initialised output conv.
    model = nnx.merge(graphdef, params)
    model.out_conv.kernel[...] = nnx.merge(graphdef, pp).out_conv.kernel[...]
    _, p1 = split_model(model)
    loss = lambda p, x: jnp.sum(make_model_fn(graphdef, p)(x, 0.5) ** 2)  # noqa: E731
    grads, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(p1, x)
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves)
    assert float(jnp.abs(grads["out_conv"]["kernel"][...]).max()) > 0
    assert float(jnp.abs(grads["in_conv"]["kernel"][...]).max()) > 0
    assert gx.shape == x.shape and np.isfinite(gx).all() and float(jnp.abs(gx).max()) > 0


# ----------------------------------------------------------------------------- classifier


def test_noisy_classifier_shape_and_log_prob_normalisation(data):
    clf = NoisyClassifier(classifier_config("tiny", num_classes=4), rngs=nnx.Rngs(0))
    graphdef, params = split_model(clf)
    x, _ = data
    assert jax.eval_shape(clf, x, 0.5).shape == (B, 4)
    log_prob = classifier_log_prob_fn(graphdef, params)

    @jax.jit
    def run(x):
        all_y = jax.vmap(log_prob, in_axes=(None, None, 0))(x, 0.5, jnp.arange(4))
        # Classifier guidance: ∇_x Σ_b log p(y_b | x_t,b).
        g = jax.grad(lambda x: log_prob(x, jnp.array([0.1, 0.7]), 2).sum())(x)
        return all_y, g

    all_y, g = run(x)
    assert all_y.shape == (4, B) and np.isfinite(all_y).all()
    np.testing.assert_allclose(jax.nn.logsumexp(all_y, axis=0), 0.0, atol=1e-5)
    assert g.shape == x.shape and np.isfinite(g).all() and float(jnp.abs(g).max()) > 0
    for bad in (jnp.array([0.0, 1.0]), jnp.array([0, 4]), jnp.array([0, 1, 2])):
        with pytest.raises(ValueError, match="y must"):
            log_prob(x, 0.5, bad)


# ----------------------------------------------------------------------------- errors


def test_call_value_errors(tiny, full, data):
    model, *_ = tiny
    fmodel, *_ = full
    x, c = data
    with pytest.raises(ValueError, match=r"x must have shape \(B, H, W, 3\)"):
        model(x[0], 0.5)
    with pytest.raises(ValueError, match="3 channels"):
        model(x[..., :2], 0.5)
    with pytest.raises(ValueError, match="divisible by"):
        model(jnp.zeros((B, 7, 8, 3)), 0.5)
    with pytest.raises(ValueError, match="t must"):
        model(x, jnp.zeros((B + 1,)))
    with pytest.raises(ValueError, match="cond_channels=0"):
        model(x, 0.5, c)
    with pytest.raises(ValueError, match="cond is required"):
        fmodel(x, 0.5)
    with pytest.raises(ValueError, match=r"cond must have shape \(2, 8, 8, 2\)"):
        fmodel(x, 0.5, c[..., :1])
    with pytest.raises(ValueError, match="num_classes=None"):
        model(x, 0.5, label=jnp.array([0, 1]))
    with pytest.raises(ValueError, match="label out of range"):
        fmodel(x, 0.5, c, label=jnp.array([0, 4]))
    with pytest.raises(ValueError, match="label out of range"):
        fmodel(x, 0.5, c, label=-1)
    with pytest.raises(ValueError, match="label must"):
        fmodel(x, 0.5, c, label=jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="label must"):
        fmodel(x, 0.5, c, label=jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="dict form"):
        fmodel(x, 0.5, {"image": c})
    with pytest.raises(ValueError, match="cond dict"):
        make_model_fn(*split_model(fmodel))(x, 0.5, {"img": c})


def test_traced_label_out_of_range_fails_at_run_time(full, data):
    _, graphdef, params, _, _ = full
    x, c = data
    f = jax.jit(lambda p, y: make_model_fn(graphdef, p)(x, 0.5, {"image": c, "label": y}))
    f(params, jnp.array([0, 3]))
    with pytest.raises(Exception, match="label out of range"):
        jax.block_until_ready(f(params, jnp.array([0, 7])))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_groups": 5}, "num_groups=5 must divide"),
        ({"attention_resolutions": (4,)}, "attention_resolutions entry 4"),
        ({"time_embedding": "learned"}, "time_embedding must be one of"),
        ({"channel_mults": ()}, "channel_mults must not be empty"),
        ({"image_size": 15}, "image_size=15 must be divisible"),
        ({"num_heads": 3}, "num_heads=3 must divide"),
        ({"num_head_channels": 12}, "num_head_channels=12 must divide"),
        ({"dropout": 1.0}, "dropout must be"),
        ({"base_channels": 0}, "base_channels must be a positive int"),
        ({"cond_channels": -1}, "cond_channels must be"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
        ({"typo": 1}, "unknown UNetConfig field"),
    ],
)
def test_config_value_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        unet_config("tiny", **overrides)


def test_other_construction_errors():
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        unet_config("huge")
    with pytest.raises(ValueError, match="unknown classifier preset"):
        classifier_config("huge")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        ClassifierConfig(num_classes=0)
    with pytest.raises(ValueError, match="config must be a UNetConfig"):
        UNet(classifier_config("tiny"), rngs=nnx.Rngs(0))
    assert isinstance(unet_config("tiny"), UNetConfig)

    class WithRngs(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(2, 2, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

    with pytest.raises(ValueError, match="only state is nnx.Param"):
        split_model(WithRngs(nnx.Rngs(0)))
