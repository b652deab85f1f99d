"""Learned restoration end to end: the regression baseline loss, the blur degradation, the
latent (SRLDM) kind through the trainer, `restore_learned`'s dispatch for every kind, and
``jaxir sample --lq`` with its user-error paths (exit code 2, one line, no traceback)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from test_cli_restore import _fails, _png

from jaxir.cli import main
from jaxir.models import Autoencoder, AutoencoderConfig, UNet, make_model_fn, split_model
from jaxir.operators import Blur, Degradation, gaussian_kernel, make_degradation
from jaxir.restore._learned import LearnedModel, load_learned, prepare_lq, restore_learned
from jaxir.training import (
    LEARNED_RESTORATION_KINDS,
    build_sde,
    config_to_dict,
    load_config,
    make_loss,
    train,
)

CONFIG_OF = {"conditional": "sr3_photos", "latent": "latent_photos"}


# ---- losses and degradations -----------------------------------------------------------------
def test_regression_loss_is_zero_for_the_exact_map_and_l1_otherwise():
    x0 = jnp.tanh(jax.random.normal(jax.random.key(0), (4, 8, 8, 3)))
    lq = x0 + 0.3
    batch = {"image": x0, "lq": lq}
    loss, aux = make_loss("regression", None)(lambda x, t, c: x - 0.3, batch, jax.random.key(1))
    assert float(loss) < 1e-6 and set(aux) == {"l1", "mse"}
    loss, aux = make_loss("regression", None)(lambda x, t, c: x, batch, jax.random.key(1))
    np.testing.assert_allclose(float(loss), 0.3, rtol=1e-5)  # L1 of a constant offset
    mse, _ = make_loss("regression", None, norm="mse")(lambda x, t, c: x, batch, jax.random.key(1))
    np.testing.assert_allclose(float(mse), 0.09, rtol=1e-5)
    res, _ = make_loss("regression", None, residual=True)(lambda x, t, c: jnp.full_like(x, -0.3),
                                                          batch, jax.random.key(1))
    assert float(res) < 1e-6
    with pytest.raises(ValueError, match="norm"):
        make_loss("regression", None, norm="l3")


def test_blur_degradation_matches_the_blur_operator_and_composes():
    x = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 16, 16, 3)))
    sigma = 1.5
    op = Blur((16, 16, 3), gaussian_kernel(2 * 5 + 1, sigma), threshold=0.0, boundary="edge")
    want = jax.vmap(op.A_full)(x)
    got = make_degradation("blur:1.5")(jax.random.key(1), x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    np.testing.assert_allclose(float(make_degradation("blur:2")(None, jnp.ones((1, 8, 8, 1))).mean()),
                               1.0, rtol=1e-6)  # constant images are unchanged
    noisy = make_degradation("blur:1.5+noise:0.1")
    clean = make_degradation("blur:1.5+noise:0.1", noise=False)
    np.testing.assert_allclose(np.asarray(clean(None, x)), np.asarray(got), atol=1e-6)
    resid = np.asarray(noisy(jax.random.key(2), x) - got)
    assert 0.08 < resid.std() < 0.12
    for bad in ("blur:0", "blur:x", "blur:-1", "box:2"):
        with pytest.raises(ValueError, match="blur:S"):
            make_degradation(bad)


def test_palette_degradations_match_the_operators_and_keep_their_masks():
    """Palette's conditions: "gray" = Colorization's A⁺A, "jpeg:Q" = JPEGLike.A; the masks
    ("inpaint:P", "inpaint:box", "uncrop") keep the observed pixels exactly, put N(0, 1) noise
    (or 0 with noise=False, the same mask for the same key) in the holes, and miss the stated
    fraction (random pixels: |fraction − P| < 5 binomial s.e.)."""
    from jaxir.operators import Colorization, JPEGLike

    x = jnp.tanh(jax.random.normal(jax.random.key(0), (3, 16, 16, 3)))
    op = Colorization((16, 16, 3))
    np.testing.assert_allclose(make_degradation("gray")(None, x),
                               jax.vmap(lambda a: op.A_pinv(op.A(a)))(x), atol=1e-6)
    np.testing.assert_allclose(make_degradation("jpeg:20")(None, x),
                               jax.vmap(JPEGLike((16, 16, 3), 20).A)(x), atol=1e-6)
    key = jax.random.key(1)
    for spec, frac in [("inpaint:0.7", 0.7), ("inpaint:box", 0.25), ("uncrop", 0.5)]:
        y = np.asarray(make_degradation(spec)(key, x))
        y0 = np.asarray(make_degradation(spec, noise=False)(key, x))
        hole = np.all(y0 == 0, axis=-1)
        kept = ~hole
        np.testing.assert_array_equal(y[kept], np.asarray(x)[kept])
        np.testing.assert_array_equal(y0[kept], np.asarray(x)[kept])
        assert 0.8 < y[hole].std() < 1.2  # N(0, 1) fill
        got = hole.mean()
        if spec == "inpaint:0.7":
            se = np.sqrt(0.7 * 0.3 / hole.size)
            assert abs(got - frac) < 5 * se, got
        else:
            assert got == frac and all(h.mean() == frac for h in hole)  # exactly, per image
    holes = np.asarray(make_degradation("uncrop", noise=False)(jax.random.key(3),
                                                               jnp.ones((16, 8, 8, 1)))) == 0
    assert len({h.tobytes() for h in holes}) > 1  # the missing side is drawn per image
    for bad in ("inpaint:1.5", "inpaint:0", "jpeg:0", "jpeg:x", "gray:2", "uncrop:1"):
        with pytest.raises(ValueError, match="inpaint:P"):
            make_degradation(bad)
    with pytest.raises(ValueError, match="pass a key"):
        make_degradation("inpaint:0.5")(None, x)


def test_degradation_spec_parses_once_and_keeps_masks_without_noise():
    """`jaxir.operators.Degradation`: the parsed steps, the SR factor `prepare_lq` uses, and
    with ``noise=False`` the same masks as with noise whatever the order of the steps (the
    mask keys do not depend on the noise draws), the kept pixels exact and the holes 0."""
    d = Degradation.parse("noise:0.1+sr:2+inpaint:0.5+sr:2")
    assert d.steps == (("noise", 0.1), ("sr", 2), ("inpaint", 0.5), ("sr", 2))
    assert d.sr_factor == 4 and d.masked and not Degradation.parse("blur:1").masked
    x = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 8, 8, 1)))
    spec = Degradation.parse("noise:0.3+inpaint:0.5")
    noisy, clean = spec(jax.random.key(1), x), spec(jax.random.key(1), x, noise=False)
    hole = np.asarray(clean) == 0
    assert 0.3 < hole.mean() < 0.7
    np.testing.assert_array_equal(np.asarray(clean)[~hole], np.asarray(x)[~hole])
    np.testing.assert_array_equal(np.asarray(noisy)[hole] != 0, True)  # N(0, 1) fill
    kept = np.asarray(noisy)[~hole] - np.asarray(x)[~hole]  # the noise, std 0.3
    assert 0.2 < kept.std() < 0.4
    for bad in ("", "sr:1.5", "noise", "noise:-1"):
        with pytest.raises(ValueError, match="degradation"):
            Degradation.parse(bad)


def test_palette_config_validates_and_its_loss_runs():
    from jaxir.training import build_loss
    from jaxir.training._validate import validate

    cfg = load_config("palette_photos")
    validate(cfg)
    loss = build_loss(cfg, build_sde(cfg.sde))
    x0 = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)))
    seen = {}

    def model_fn(x, t, cond):
        seen["cond"] = cond
        return jnp.zeros_like(x)

    value, _ = loss(model_fn, {"image": x0}, jax.random.key(1))
    np.testing.assert_allclose(float(value), 1.0, atol=0.05)  # E‖ε‖²/D with ε̂ = 0
    np.testing.assert_allclose(seen["cond"], jnp.broadcast_to(x0.mean(-1, keepdims=True),
                                                              x0.shape), atol=1e-6)


# ---- restore_learned's dispatch --------------------------------------------------------------
def _small(kind):
    """The kind's example config with short chains (fixed-step chains get T = 4)."""
    name = CONFIG_OF.get(kind, f"{kind}_photos")
    cfg = load_config(name)
    opts = dict(cfg.loss.options)
    if kind in ("irsde", "goub", "resshift"):
        opts["T"] = 4
    if kind == "i2sb":
        opts["num_steps"] = 20
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, options=opts))


def _model(kind, seed=0):
    cfg = _small(kind)
    graphdef, params = split_model(UNet(cfg.model, rngs=nnx.Rngs(seed)))
    codec = None
    if kind == "latent":
        from jaxir.latent import autoencoder_codec

        ae = AutoencoderConfig(in_channels=3, base_channels=8, factor=4, latent_channels=4,
                               num_groups=4)
        codec = autoencoder_codec(*split_model(Autoencoder(ae, rngs=nnx.Rngs(1))))
    return LearnedModel(make_model_fn(graphdef, params), build_sde(cfg.sde), cfg, codec)


EXPECTED_NFE = {"conditional": 3, "irsde": 4, "goub": 4, "i2sb": 3, "ddbm": 3 * 3 - 1,
                "flow": 3, "resshift": 4, "latent": 3, "regression": 1}


@pytest.mark.parametrize("kind", LEARNED_RESTORATION_KINDS)
def test_restore_learned_runs_every_kind_with_the_right_shape(kind):
    """Every learned kind dispatches to its sampler and returns (B, H, W, C), finite, with the
    expected NFE, also under jit; at 16x16 (the models were configured for 32x32)."""
    model = _model(kind)
    lq = jnp.tanh(jax.random.normal(jax.random.key(3), (2, 16, 16, 3)))
    steps = None if kind in ("irsde", "goub", "resshift", "regression") else 3
    out = jax.jit(lambda y, k: restore_learned(model, y, k, steps=steps))(lq, jax.random.key(4))
    assert out.x.shape == lq.shape
    assert bool(out.finite)
    assert int(out.nfe) == EXPECTED_NFE[kind]


def test_restore_learned_errors():
    model = _model("irsde")
    lq = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="fixed 4-step chain"):
        restore_learned(model, lq, jax.random.key(0), steps=10)
    with pytest.raises(ValueError, match="channel"):
        restore_learned(model, jnp.zeros((1, 16, 16, 1)), jax.random.key(0))
    with pytest.raises(ValueError, match="divisible by 2"):
        restore_learned(model, jnp.zeros((1, 15, 16, 3)), jax.random.key(0))
    with pytest.raises(ValueError, match="workdir path"):
        restore_learned(object(), lq, jax.random.key(0))
    sr = _model("regression")  # "sr:4": the 8x8 LR image is upsampled by nearest neighbour
    lr = jnp.arange(8 * 8 * 3, dtype=jnp.float32).reshape(1, 8, 8, 3) / 200 - 0.5
    up = prepare_lq(lr, sr)
    assert up.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(np.asarray(up[0, 4:8, 0:4]), np.broadcast_to(lr[0, 1, 0], (4, 4, 3)))
    with pytest.raises(ValueError, match="8x8 \\(the LR image\\)"):
        prepare_lq(jnp.zeros((1, 30, 30, 3)), sr)


def test_restore_learned_with_a_mask_keeps_the_known_pixels_and_ignores_the_holes():
    """Palette inpainting through `restore_learned(mask=)`: the output equals the LQ on the
    observed pixels, whatever the LQ holds in the holes (they are refilled with N(0, 1) from
    the key, the training condition); other kinds and malformed masks are refused."""
    model = _model("conditional")
    lq = jnp.tanh(jax.random.normal(jax.random.key(3), (2, 16, 16, 3)))
    mask = jnp.zeros((16, 16)).at[:, :8].set(1.0)  # uncropping: the right half is missing
    run = jax.jit(lambda y, k, m: restore_learned(model, y, k, steps=3, mask=m))
    out = run(lq, jax.random.key(4), mask)
    np.testing.assert_array_equal(np.asarray(out.x[:, :, :8]), np.asarray(lq[:, :, :8]))
    assert bool(out.finite) and not np.allclose(out.x[:, :, 8:], lq[:, :, 8:], atol=1e-2)
    other = run(lq.at[:, :, 8:].set(0.0), jax.random.key(4), mask)
    np.testing.assert_allclose(np.asarray(other.x), np.asarray(out.x), atol=1e-6)
    per_image = run(lq, jax.random.key(4), jnp.broadcast_to(mask[None, :, :, None], (2, 16, 16, 1)))
    np.testing.assert_allclose(np.asarray(per_image.x), np.asarray(out.x), atol=1e-6)
    with pytest.raises(ValueError, match="mask must have shape"):
        restore_learned(model, lq, jax.random.key(0), steps=3, mask=jnp.ones((8, 8)))
    with pytest.raises(ValueError, match="Palette-style"):
        restore_learned(_model("regression"), lq, jax.random.key(0), mask=mask)


# ---- through the trainer: regression workdir, latent two-stage path, the CLI -------------------
def _tiny_train(config, workdir):
    config = dataclasses.replace(config, steps=1, log_every=1, save_every=0,
                                 data=dataclasses.replace(config.data, batch_size=2))
    train(config, workdir, progress=False)
    return workdir


@pytest.fixture(scope="module")
def regression_workdir(tmp_path_factory):
    return _tiny_train(load_config("regression_photos"),
                       tmp_path_factory.mktemp("learned") / "regression")


def test_cli_sample_lq_restores_an_image(regression_workdir, tmp_path, capsys):
    for size in (32, 8):  # the HQ-size LQ, or the LR image of this sr:4 model
        out = tmp_path / f"out{size}.png"
        code = main(["sample", "--workdir", str(regression_workdir), "--lq",
                     _png(tmp_path / f"lq{size}.png", size, size), "--output", str(out)])
        text = capsys.readouterr().out
        assert code == 0 and "regression" in text and "NFE 1" in text
        assert Image.open(out).size == (32, 32)
    model = load_learned(regression_workdir)
    out = restore_learned(regression_workdir, jnp.zeros((3, 32, 32, 3)), jax.random.key(0))
    assert model.kind == "regression" and out.x.shape == (3, 32, 32, 3)


def test_cli_sample_lq_errors(regression_workdir, tmp_path, capsys):
    wd = str(regression_workdir)
    out = str(tmp_path / "o.png")
    _fails(capsys, ["sample", "--workdir", wd, "--lq", _png(tmp_path / "a.png", 30, 30),
                    "--output", out], "lq is 30x30")
    _fails(capsys, ["sample", "--workdir", wd, "--output", out], "give the degraded image with --lq")
    _fails(capsys, ["sample", "--workdir", wd, "--lq", str(tmp_path / "missing.png"),
                    "--output", out], "does not exist")
    _fails(capsys, ["sample", "--workdir", wd, "--lq", _png(tmp_path / "b.png", 32, 32),
                    "--sampler", "ddim", "--output", out], "--sampler, --label and --n")
    irsde = tmp_path / "irsde_wd"
    irsde.mkdir()
    (irsde / "config.json").write_text(json.dumps(config_to_dict(load_config("irsde_photos"))))
    _fails(capsys, ["sample", "--workdir", str(irsde), "--lq", _png(tmp_path / "c.png", 32, 32),
                    "--steps", "7", "--output", out], "no checkpoint")
    prior = tmp_path / "prior_wd"
    prior.mkdir()
    (prior / "config.json").write_text(json.dumps(config_to_dict(load_config("digits_tiny"))))
    _fails(capsys, ["sample", "--workdir", str(prior), "--lq", _png(tmp_path / "d.png", 16, 16),
                    "--output", out], "--lq needs a learned restoration model")
    _fails(capsys, ["sample", "--workdir", wd, "--lq", _png(tmp_path / "e.png", 32, 32),
                    "--mask", _png(tmp_path / "m.png", 32, 32), "--output", out], "Palette-style")
    _fails(capsys, ["sample", "--workdir", str(prior), "--mask", _png(tmp_path / "m.png", 16, 16),
                    "--output", out], "--mask goes with --lq")
    _fails(capsys, ["sample", "--workdir", str(tmp_path / "nowhere"), "--lq", out,
                    "--output", out], "no config.json and no checkpoint")


@pytest.mark.slow
def test_latent_two_stage_path_through_the_trainer(tmp_path):
    """Stage 1 `autoencoder_photos` (loss kind "autoencoder") and stage 2 `latent_photos`
    (kind "latent"), both through the trainer: stage 2 reads the stage-1 workdir, copies its
    autoencoder.npz, and `restore_learned` decodes 32x32 images from the 8x8 latents.
    (3.5 min measured on 2 shared CPU cores.)"""
    ae_cfg = AutoencoderConfig(in_channels=3, base_channels=8, factor=4, latent_channels=4,
                               num_groups=4)
    stage1 = load_config("autoencoder_photos")
    stage1 = dataclasses.replace(stage1, model=ae_cfg)
    ae_dir = _tiny_train(stage1, tmp_path / "ae")
    ae_path = ae_dir / "autoencoder.npz"
    assert ae_path.is_file()
    cfg = load_config("latent_photos")
    missing = dataclasses.replace(cfg, loss=dataclasses.replace(
        cfg.loss, options={"autoencoder": str(tmp_path / "none.npz")}))
    with pytest.raises(ValueError, match="does not exist"):
        _tiny_train(missing, tmp_path / "bad")
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss,
                                                            options={"autoencoder": str(ae_dir)}))
    wd = _tiny_train(cfg, tmp_path / "latent")
    assert (wd / "autoencoder.npz").read_bytes() == ae_path.read_bytes()
    ae_path.unlink()  # the workdir's copy is enough from now on
    out = restore_learned(wd, jnp.zeros((2, 32, 32, 3)), jax.random.key(0), steps=2)
    assert out.x.shape == (2, 32, 32, 3) and bool(out.finite) and int(out.nfe) == 2
    with pytest.raises(ValueError, match="autoencoder"):
        from jaxir.training._validate import validate

        validate(dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, options={})))


@pytest.mark.slow
def test_paired_restoration_experiment_quick_path(tmp_path):
    """experiments/paired_restoration/run.py --quick on one task and two methods (2 steps, 2
    test crops): trains through the trainer, restores, writes the CSVs, the table and the
    figure. (4 min measured on 2 CPU cores shared with other jobs: mostly compilation.)"""
    import csv
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "paired_restoration" / "run.py"
    spec = importlib.util.spec_from_file_location("paired_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    out = tmp_path / "out"
    assert run.main(["--quick", "--tasks", "deblur", "--methods", "regression,flow",
                     "--workdir", str(tmp_path / "runs"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["key"] for r in rows] == ["baseline", "regression", "flow"]
    assert all(np.isfinite(float(r["psnr"])) and int(r["n_images"]) == 2 for r in rows)
    assert rows[1]["nfe"] == "1" and rows[2]["nfe"] == "10"
    assert "Gaussian deblurring" in (out / "results.md").read_text()
    assert (out / "figure_deblur.png").stat().st_size > 0


@pytest.mark.slow
def test_reflow_through_the_trainer(tmp_path, regression_workdir):
    """Reflow with ``loss.options["teacher"]`` = a flow workdir: the student trains on the
    teacher's own outputs and restores like any flow model; a non-flow teacher or a different
    source noise is refused before training. (~1 min on 2 CPU cores: compiling the teacher's
    10 Euler steps inside the train step.)"""
    teacher = _tiny_train(load_config("flow_photos"), tmp_path / "flow")
    cfg = load_config("flow_photos")

    def student(**opts):
        loss = dataclasses.replace(cfg.loss, options={**cfg.loss.options, **opts})
        return dataclasses.replace(cfg, loss=loss)

    with pytest.raises(ValueError, match="reflow needs a flow model"):
        _tiny_train(student(teacher=str(regression_workdir)), tmp_path / "bad1")
    with pytest.raises(ValueError, match="source_noise"):
        _tiny_train(student(teacher=str(teacher), source_noise=0.2), tmp_path / "bad2")
    wd = _tiny_train(student(teacher=str(teacher), teacher_steps=4), tmp_path / "reflow")
    out = restore_learned(wd, jnp.zeros((2, 32, 32, 3)), jax.random.key(0), steps=1)
    assert out.x.shape == (2, 32, 32, 3) and bool(out.finite) and int(out.nfe) == 1


# ---- a new family is one registration ---------------------------------------------------------
def test_a_registered_toy_family_trains_and_restores(tmp_path):
    """The README's toy family (its "Add a learned-restoration family" block, run as written:
    options, loss factory, one-pass sampler, `register_family`) becomes a ``loss.kind``: the
    config validates (its options typed and checked), `train` trains it, `load_learned` /
    `restore_learned` restore with its sampler and its trained options, and it is listed among
    the learned kinds. The restoration is checked against the sampler's formula
    x̂ = LQ + w·f(LQ) evaluated with the workdir's EMA network. (~15 s: one tiny U-Net step on
    8x8 digits.)"""
    import re
    from pathlib import Path

    from jaxir.training import FAMILIES, LossConfig, load_model_fn

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block, = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
              if "register_family(Family(" in b]
    assert "toy_residual" not in FAMILIES
    ns = {"__name__": "__readme__"}
    try:
        exec(compile(block, "README.md (toy family)", "exec"), ns)
        ToyOptions = ns["ResidualOptions"]
        assert ns["loss"].options == ToyOptions(0.5)
        assert FAMILIES["toy_residual"].sample is ns["residual_sample"]
        assert "toy_residual" in LEARNED_RESTORATION_KINDS
        with pytest.raises(ValueError, match="unknown option"):
            LossConfig(kind="toy_residual", options={"wieght": 1.0})
        cfg = load_config("digits_tiny")
        cfg = dataclasses.replace(
            cfg, steps=1, log_every=1, save_every=0,
            model=dataclasses.replace(cfg.model, base_channels=8, channel_mults=(1,),
                                      num_groups=4),
            loss=LossConfig(kind="toy_residual", degradation="noise:0.2",
                            options={"weight": 0.5}))
        assert cfg.loss.options == ToyOptions(0.5)
        train(cfg, tmp_path / "toy", progress=False)
        model = load_learned(tmp_path / "toy")
        assert model.kind == "toy_residual" and model.config.loss.options == ToyOptions(0.5)
        lq = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 8, 8, 1)))
        out = restore_learned(model, lq, jax.random.key(1))
        f, _, _ = load_model_fn(tmp_path / "toy")
        np.testing.assert_allclose(out.x, lq + 0.5 * f(lq, jnp.zeros(2), None), atol=1e-6)
        assert int(out.nfe) == 1 and bool(out.finite)
    finally:
        from jaxir.training._registry import _REGISTRY

        _REGISTRY.pop("toy_residual", None)
    assert "toy_residual" not in LEARNED_RESTORATION_KINDS
