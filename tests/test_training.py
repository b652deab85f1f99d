"""Training losses against exact answers, the train step, EMA, loss scaling, and the CLI.

Statistical checks state their tolerance in standard errors (SE) of a Monte Carlo mean.
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxir import exact, predictions, schedules, sdes
from jaxir.cli import add_sample_parser, add_train_parser
from jaxir.models import UNet, UNetConfig, split_model
from jaxir.training import (
    OptimConfig,
    TrainState,
    classifier_loss,
    conditional_loss,
    denoising_loss,
    make_apply_fn,
    make_loss,
    make_optimizer,
    make_train_step,
    score_matching_loss,
)
from jaxir.training._losses import sample_time
from jaxir.training._state import (
    DynamicLossScale,
    ema_decay_at,
    ema_update,
    init_loss_scale,
    update_loss_scale,
)

KEY = jax.random.key(0)


def _gaussian(d=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d)) / np.sqrt(d)
    cov = A @ A.T + 0.2 * np.eye(d)
    return exact.Gaussian(jnp.asarray(rng.normal(size=d), jnp.float32), jnp.asarray(cov, jnp.float32))


def _per_example(loss_fn, model_fn, x0, key):
    """Per-example losses (N,) by vmapping the batch loss over batches of one."""
    keys = jax.random.split(key, x0.shape[0])
    f = jax.jit(jax.vmap(lambda x, k: loss_fn(model_fn, x[None], k)[0]))
    return np.asarray(f(x0, keys), np.float64)


# ---- losses ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sde", [sdes.VPSDE(), sdes.VESDE(sigma_max=5.0)], ids=["vp", "ve"])
def test_eps_loss_of_exact_model_matches_closed_form_and_beats_perturbed(sde):
    """E[‖ε̂ − ε‖²]/d at t is tr(I − σ² S⁻¹)/d, S = α²Σ + σ²I (ε | x_t is Gaussian); averaged
    over t ~ U(t_min, T) by quadrature. MC mean over 40k examples within 5 SE. Adding a constant
    δ to ε̂ adds exactly δ² in expectation (E[ε̂ − ε] = 0)."""
    prior = _gaussian()
    loss_fn = denoising_loss(sde, prediction="eps")
    model = prior.model_fn(sde, "eps")
    x0 = prior.sample(jax.random.key(1), 40_000)
    per = _per_example(loss_fn, model, x0, jax.random.key(2))
    ts = np.linspace(sde.t_min, sde.T, 4001)
    a, s = (np.asarray(v, np.float64) for v in sde.marginal_coeffs(jnp.asarray(ts)))
    lam = np.linalg.eigvalsh(np.asarray(prior.cov, np.float64))  # tr(I − σ²S⁻¹) in Σ's eigenbasis
    vals = np.mean(1.0 - s[:, None] ** 2 / (a[:, None] ** 2 * lam + s[:, None] ** 2), axis=1)
    closed = np.sum((vals[1:] + vals[:-1]) / 2 * np.diff(ts)) / (sde.T - sde.t_min)
    se = per.std() / np.sqrt(per.size)
    assert abs(per.mean() - closed) < 5 * se, (per.mean(), closed, se)

    delta = 0.1
    perturbed = lambda x, t, c=None: model(x, t, c) + delta
    per_p = _per_example(loss_fn, perturbed, x0, jax.random.key(2))
    diff = per_p - per
    assert per_p.mean() > per.mean()
    assert abs(diff.mean() - delta**2) < 5 * diff.std() / np.sqrt(diff.size) + 1e-6


def test_weightings_are_defined_on_the_x0_error():
    """For one denoiser expressed as ε / x0 / v / score predictions, every non-"simple"
    weighting gives the same loss (it weights ‖x̂0 − x0‖²), and ε-"simple" = x0-"snr"."""
    sde = sdes.VPSDE()
    prior = _gaussian(d=4, seed=3)
    x0_exact = prior.model_fn(sde, "x0")

    def x0_model(x, t, c=None):  # an imperfect denoiser, so errors are not zero
        return x0_exact(x, t) + 0.05 * jnp.sin(3 * x)

    def as_type(target):
        return lambda x, t, c=None: predictions.convert(x0_model(x, t), x, t, sde, "x0", target)

    batch = {"image": prior.sample(jax.random.key(4), 512)}
    key = jax.random.key(5)
    ts = lambda k, b: jax.random.uniform(k, (b,), minval=0.05, maxval=0.95)  # avoid σ → 0
    for weighting in ("snr", "min_snr", "edm"):
        vals = [float(denoising_loss(sde, prediction=p, weighting=weighting, time_sampling=ts)(
            as_type(p), batch, key)[0]) for p in ("eps", "x0", "v", "score")]
        np.testing.assert_allclose(vals, vals[0], rtol=2e-4, err_msg=weighting)
    eps_simple = denoising_loss(sde, prediction="eps", time_sampling=ts)(as_type("eps"), batch, key)
    x0_snr = denoising_loss(sde, prediction="x0", weighting="snr", time_sampling=ts)(
        x0_model, batch, key)
    np.testing.assert_allclose(float(eps_simple[0]), float(x0_snr[0]), rtol=2e-4)


def test_min_snr_and_edm_weights_closed_form():
    """With a denoiser whose x̂0 error is exactly 1 per entry, the loss at fixed t is w(t)."""
    sde = sdes.VPSDE()
    t = 0.3
    a, s = (float(v) for v in sde.marginal_coeffs(t))
    snr = a**2 / s**2

    def exact_err_model(x0):  # knows x0: x̂0 = x0 + 1, so ‖x̂0 − x0‖² = 1 exactly
        return lambda x, tt, c=None: x0 + 1.0

    x0 = jnp.zeros((4, 3))
    fixed = lambda k, b: jnp.full((b,), t)
    for weighting, w in (("min_snr", min(snr, 5.0)), ("snr", snr),
                         ("edm", ((s / a) ** 2 + 0.25) / ((s / a) * 0.5) ** 2)):
        loss, _ = denoising_loss(sde, prediction="x0", weighting=weighting, time_sampling=fixed)(
            exact_err_model(x0), x0, KEY)
        np.testing.assert_allclose(float(loss), w, rtol=1e-5, err_msg=weighting)


@pytest.mark.parametrize("likelihood", [False, True])
def test_dsm_minimiser_is_the_exact_score_1d(likelihood):
    """For x0 ~ N(m, s²) the score of p_t is −(x − α m)/(α² s² + σ²). The DSM loss of a
    linear model a·x + b at a fixed t is quadratic in (a, b) (fixed draws), so one Newton step
    from 0 is its exact minimiser; with 200k draws it matches the score within 2 %."""
    sde = sdes.VPSDE()
    m, sd = 0.5, 0.7
    x0 = m + sd * jax.random.normal(jax.random.key(6), (200_000, 1))

    @jax.jit
    def newton(t):
        loss_fn = score_matching_loss(sde, likelihood_weighting=likelihood,
                                      time_sampling=lambda k, b: jnp.full((b,), t))
        objective = lambda th: loss_fn(lambda x, tt, c=None: th[0] * x + th[1], x0, KEY)[0]
        th0 = jnp.zeros(2)
        return th0 - jnp.linalg.solve(jax.hessian(objective)(th0), jax.grad(objective)(th0))

    for t in (0.1, 0.5, 0.9):
        th = newton(t)
        a, s = (float(v) for v in sde.marginal_coeffs(t))
        v = a**2 * sd**2 + s**2
        np.testing.assert_allclose(float(th[0]), -1.0 / v, rtol=0.02)
        np.testing.assert_allclose(float(th[1]), a * m / v, rtol=0.02, atol=0.02 / v)


def test_dsm_loss_of_exact_score_is_lower():
    sde = sdes.SubVPSDE()
    prior = _gaussian(d=2, seed=7)
    x0 = prior.sample(jax.random.key(8), 4096)
    loss_fn = score_matching_loss(sde)
    good = prior.model_fn(sde, "score")
    bad = lambda x, t, c=None: good(x, t) * 1.1
    assert float(loss_fn(good, x0, KEY)[0]) < float(loss_fn(bad, x0, KEY)[0])


def test_discrete_time_sampling_is_on_the_ddpm_grid():
    sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
    t = sample_time(sde, KEY, 20_000)
    i = np.asarray(sde.time_to_index(t))
    np.testing.assert_allclose(np.asarray(sde.index_to_time(i)), np.asarray(t), atol=1e-6)
    assert i.min() == 0 and i.max() == 999 and len(np.unique(i)) > 990
    t_c = sample_time(sdes.VPSDE(), KEY, 1000)
    assert float(t_c.min()) >= 1e-3 and float(t_c.max()) <= 1.0
    with pytest.raises(ValueError, match="DiscreteVPSDE"):
        sample_time(sdes.VPSDE(), KEY, 4, "discrete")


def test_losses_jit_vmap_and_grad():
    sde = sdes.VPSDE()
    loss_fn = make_loss("denoising", sde, prediction="v", weighting="min_snr")
    x0 = jnp.ones((8, 4, 4, 1))
    model = lambda w: (lambda x, t, c=None: w * x)
    val, g = jax.jit(jax.value_and_grad(lambda w, k: loss_fn(model(w), x0, k)[0]))(0.5, KEY)
    assert np.isfinite(float(val)) and np.isfinite(float(g))
    vals = jax.jit(jax.vmap(lambda k: loss_fn(model(0.5), x0, k)[0]))(jax.random.split(KEY, 3))
    assert vals.shape == (3,)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("nope", sde)
    with pytest.raises(ValueError, match="weighting"):
        denoising_loss(sde, weighting="p2")


def test_conditional_loss_passes_lq_and_drops_it():
    sde = sdes.VPSDE()
    seen = []

    def model(x, t, cond=None):
        seen.append(cond)
        return jnp.zeros_like(x)

    x0 = jnp.ones((6, 4, 4, 1))
    lq = jnp.full((6, 4, 4, 1), 0.5)
    conditional_loss(sde)(model, {"image": x0, "lq": lq}, KEY)
    np.testing.assert_array_equal(np.asarray(seen[-1]), np.asarray(lq))
    conditional_loss(sde, cond_drop_prob=1.0)(model, {"image": x0, "lq": lq}, KEY)
    np.testing.assert_array_equal(np.asarray(seen[-1]), 0.0)
    degrade = lambda k, x: 0.25 * x
    conditional_loss(sde, degrade_fn=degrade)(model, {"image": x0}, KEY)
    np.testing.assert_allclose(np.asarray(seen[-1]), 0.25)
    with pytest.raises(ValueError, match="lq"):
        conditional_loss(sde)(model, {"image": x0}, KEY)
    # class-conditional with classifier-free-guidance dropout: dropped labels become null
    labels = jnp.arange(6) % 3
    loss_fn = denoising_loss(sde, label_key="label", null_label=10, cond_drop_prob=0.5)
    loss_fn(model, {"image": x0, "label": labels}, KEY)
    got = np.asarray(seen[-1]["label"])
    kept = got != 10
    assert 0 < kept.sum() < 6
    np.testing.assert_array_equal(got[kept], np.asarray(labels)[kept])


def test_classifier_loss():
    sde = sdes.VPSDE()
    x0 = jnp.zeros((8, 4, 4, 1))
    labels = jnp.arange(8) % 4
    loss, aux = classifier_loss(sde)(lambda x, t, c=None: jnp.zeros((8, 4)),
                                     {"image": x0, "label": labels}, KEY)
    np.testing.assert_allclose(float(loss), np.log(4), rtol=1e-6)
    onehot = 20.0 * jax.nn.one_hot(labels, 4)
    loss, aux = classifier_loss(sde)(lambda x, t, c=None: onehot, {"image": x0, "label": labels},
                                     KEY)
    assert float(loss) < 1e-6 and float(aux["accuracy"]) == 1.0


# ---- state, step, EMA, loss scaling ----------------------------------------------------------
_SMALL = UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1,),
                    num_res_blocks=1, attention_resolutions=(), image_size=8, num_groups=4)


@pytest.fixture(scope="module")
def small_setup():
    graphdef, params = split_model(UNet(_SMALL, rngs=nnx.Rngs(0)))
    tx, schedule = make_optimizer(OptimConfig(lr=3e-3, warmup_steps=0, grad_clip=1.0), 100)
    loss_fn = denoising_loss(sdes.VPSDE())
    apply_fn = make_apply_fn(graphdef)
    step = jax.jit(make_train_step(loss_fn, apply_fn, tx, ema_decay=0.9, lr_schedule=schedule))
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params),
                       jax.tree.map(jnp.copy, params),
                       jax.random.key_data(jax.random.key(1)))
    batch = {"image": jax.random.uniform(jax.random.key(2), (8, 8, 8, 1), minval=-1, maxval=1)}
    return loss_fn, apply_fn, step, state, batch


def test_one_optax_step_decreases_the_loss_on_a_fixed_batch(small_setup):
    loss_fn, apply_fn, step, state, batch = small_setup
    _, k_loss, _ = jax.random.split(jax.random.wrap_key_data(state.rng), 3)  # the step's key
    f = jax.jit(lambda p: loss_fn(apply_fn(p), batch, k_loss)[0])
    before = float(f(state.params))
    new, metrics = step(state, batch)
    np.testing.assert_allclose(float(metrics["loss"]), before, rtol=1e-5)
    assert float(f(new.params)) < before
    assert int(new.step) == 1 and set(metrics) >= {"loss", "grad_norm", "lr", "mse"}
    assert not np.array_equal(np.asarray(new.rng), np.asarray(state.rng))


def test_ema_in_the_step_follows_the_formula(small_setup):
    _, _, step, state, batch = small_setup
    s1, _ = step(state, batch)
    s2, _ = step(s1, batch)
    d = 0.9
    want = jax.tree.map(lambda p0, p1, p2: d * d * p0 + d * (1 - d) * p1 + (1 - d) * p2,
                        state.params, s1.params, s2.params)
    for a, b in zip(jax.tree.leaves(s2.ema_params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_ema_math():
    ema = {"w": jnp.array([0.0, 1.0])}
    out = ema_update(ema, {"w": jnp.array([1.0, 1.0])}, 0.75)
    np.testing.assert_allclose(np.asarray(out["w"]), [0.25, 1.0])
    assert float(ema_decay_at(0, 0.9999)) == pytest.approx(0.9999)
    assert float(ema_decay_at(0, 0.9999, warmup=True)) == pytest.approx(0.1)
    assert float(ema_decay_at(10**6, 0.9999, warmup=True)) == pytest.approx(0.9999)


def test_dynamic_loss_scale_logic():
    ls = init_loss_scale(8.0)
    ls = update_loss_scale(ls, jnp.asarray(False))
    assert float(ls.scale) == 4.0 and int(ls.good_steps) == 0
    for _ in range(3):
        ls = update_loss_scale(ls, jnp.asarray(True), period=3)
    assert float(ls.scale) == 8.0 and int(ls.good_steps) == 0
    ls = DynamicLossScale(jnp.asarray(1.0), jnp.asarray(0))
    assert float(update_loss_scale(ls, jnp.asarray(False), min_scale=1.0).scale) == 1.0


def _linear_setup(compute_dtype="float32", scale=None):
    """A linear 'model' y = w·x through the real step, with optional bf16 / loss scaling."""
    params = {"w": jnp.ones((3,)), "b": jnp.zeros((3,))}
    apply_fn = lambda p, k=None: (lambda x, t, c=None: x * p["w"] + p["b"])
    tx = optax.sgd(0.1)
    step = jax.jit(make_train_step(lambda m, batch, k: (jnp.mean((m(batch, 0.0) - 2 * batch) ** 2), {}),
                                   apply_fn, tx, ema_decay=0.5, compute_dtype=compute_dtype))
    ls = None if scale is None else init_loss_scale(scale)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), params,
                       jax.random.key_data(KEY), ls)
    return step, state


def test_loss_scaling_unscales_and_skips_non_finite_steps():
    batch = jnp.array([[0.5, -1.0, 2.0]])
    ref, _ = _linear_setup()[0](_linear_setup()[1], batch)
    step, state = _linear_setup(scale=2.0**10)
    new, m = step(state, batch)
    np.testing.assert_allclose(np.asarray(new.params["w"]), np.asarray(ref.params["w"]), rtol=1e-6)
    assert bool(m["finite"]) and float(new.loss_scale.scale) == 2.0**10
    # a scale so large that the scaled gradient overflows: step skipped, scale halved
    new, m = step(state._replace(loss_scale=init_loss_scale(3e38)), batch)
    assert not bool(m["finite"]) and float(new.loss_scale.scale) == pytest.approx(1.5e38)
    np.testing.assert_array_equal(np.asarray(new.params["w"]), np.asarray(state.params["w"]))
    # bfloat16 compute: gradients reach the float32 master weights
    step, state = _linear_setup("bfloat16", scale=2.0**8)
    new, m = step(state, batch)
    assert new.params["w"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(new.params["w"]), np.asarray(ref.params["w"]), rtol=2e-2)


# ---- CLI end to end --------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser(prog="jaxir")
    sub = p.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_sample_parser(sub)
    return p


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


def test_cli_usage_errors():
    from jaxir.cli import UsageError

    with pytest.raises(UsageError, match="not found"):
        _run(["train", "--config", "no_such_config", "--workdir", "/tmp/x"])
    with pytest.raises(UsageError, match="--mesh"):
        _run(["train", "--config", "digits_tiny", "--workdir", "/tmp/x", "--mesh", "data=two"])
    with pytest.raises(UsageError, match="unknown config key"):
        _run(["train", "--config", "digits_tiny", "--workdir", "/tmp/x", "--set", "optim.lrr=1"])
    with pytest.raises(UsageError, match="no config.json and no checkpoint"):
        _run(["sample", "--workdir", "/tmp/definitely_not_a_workdir", "--output", "/tmp/x.png"])


def test_cli_train_then_sample(tmp_path):
    from PIL import Image

    wd = tmp_path / "run"
    assert _run(["train", "--config", "digits_tiny", "--workdir", str(wd), "--steps", "5",
                 "--data", "digits", "--mesh", "data=1,fsdp=1", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) and r["steps_per_sec"] > 0 for r in rows)
    assert (wd / "loss.png").exists() and (wd / "config.json").exists()
    assert sorted(p.name for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "5"]
    out = tmp_path / "grid.png"
    assert _run(["sample", "--workdir", str(wd), "--sampler", "ddim", "--n", "4", "--steps", "3",
                 "--output", str(out)]) == 0
    im = Image.open(out)
    assert im.size[0] > 32 and im.mode == "L"


# ---- the shared step -------------------------------------------------------------------------
def test_flat_layout_round_trip_and_step_equal_the_tree_layout(small_setup):
    """`FlatLayout`: to_tree(to_flat(state)) is the state exactly (every leaf, the AdamW moments
    included). Two steps on the flat layout (clip by global norm 1, momentum SGD, EMA) equal two
    on the tree layout within a derived float32 bound.

    The bound: the network's gradient of every leaf is the same computation in both layouts (a
    slice's transpose is a concatenation: no arithmetic), and the optimizer and EMA do the same
    elementwise arithmetic per coordinate; what is summed in another order is the clip's global
    norm, N² = Σ g² over all P parameters (one sum of the vector against a sum of per-leaf
    sums). A float32 sum of P non-negative terms in any order is within γ_P = Pu/(1 − Pu) of the
    exact sum (u = 2⁻²⁴), so the two clip scales c/N differ by δ ≤ γ_P + 4u (each √ and the
    division one more rounding, both layouts). Every clipped gradient coordinate has
    |s·g_i| ≤ c = 1, so after k momentum steps |Δp_i| ≤ η δ Σ_{j≤k} Σ_{l≤j} β^(j−l) =
    η δ (2 + β) for k = 2 (η = 0.05, β = 0.9), the momentum |Δm_i| ≤ δ (1 + β), the EMA (a
    convex combination of parameters) |Δ| ≤ the parameters' bound; plus 4 roundings of the
    entry per step (momentum, update, EMA). Step 1's metrics come from the same parameters:
    the loss equal to 2u, the reported gradient norm (the same reordered sum) to γ_P/2 + 2u. The bound is checked to be < 1/100 of one step's change of the parameters,
    so a skipped, repeated or misplaced update cannot pass. (Under Adam, coordinates whose
    gradient is a cancelling sum at the rounding level are normalised to O(lr) updates whose
    sign is rounding noise, so no useful bound exists; hence momentum SGD, which carries
    rounding through linearly.) On the CPU the two trajectories are in fact bitwise equal."""
    from jaxir.training import FlatLayout

    loss_fn, apply_fn, _, state, batch = small_setup
    adamw, _ = make_optimizer(OptimConfig(lr=3e-3, warmup_steps=0, grad_clip=1.0), 100)
    layout = FlatLayout.of(state.params, adamw)
    flat = jax.jit(layout.to_flat)(state)
    assert flat.params.shape == (layout.size,) and flat.ema_params.shape == (layout.size,)
    assert layout.size == sum(x.size for x in jax.tree.leaves(state.params))
    back = jax.jit(layout.to_tree)(flat)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert FlatLayout.of({"w": jnp.zeros(3, jnp.bfloat16)}, adamw) is None  # not float32

    eta, beta, clip = 0.05, 0.9, 1.0
    tx = optax.chain(optax.clip_by_global_norm(clip), optax.sgd(eta, momentum=beta))
    state = state._replace(opt_state=tx.init(state.params))
    layout = FlatLayout.of(state.params, tx)
    steps = {lay: jax.jit(make_train_step(loss_fn, apply_fn, tx, ema_decay=0.9, layout=lay))
             for lay in (None, layout)}
    u = 2.0**-24
    gamma = layout.size * u / (1 - layout.size * u)
    delta = gamma + 4 * u
    s_tree, s_flat, p_prev = state, jax.jit(layout.to_flat)(state), None
    for k in range(2):
        p_prev = s_tree.params
        s_tree, m_tree = steps[None](s_tree, batch)
        s_flat, m_flat = steps[layout](s_flat, batch)
        if k == 0:  # the same parameters: the loss equal, the gradient norm within its sum's
            for key in m_tree:
                rtol = gamma / 2 + 2 * u if key == "grad_norm" else 2 * u
                np.testing.assert_allclose(float(m_flat[key]), float(m_tree[key]), rtol=rtol)
    got = jax.jit(layout.to_tree)(s_flat)

    def vec(tree):
        return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])

    p_bound = eta * delta * (2 + beta) * clip
    one_step = np.abs(vec(s_tree.params) - vec(p_prev)).max()
    assert p_bound < one_step / 100, (p_bound, one_step)
    for name, bound in (("params", p_bound), ("ema_params", p_bound)):
        want = vec(getattr(s_tree, name))
        err = np.abs(vec(getattr(got, name)) - want)
        assert np.all(err <= bound + 8 * u * np.abs(want)), (name, err.max(), bound)
    mu_want = vec(s_tree.opt_state[1][0].trace)
    mu_err = np.abs(vec(got.opt_state[1][0].trace) - mu_want)
    assert np.all(mu_err <= delta * (1 + beta) * clip + 4 * u * np.abs(mu_want)), mu_err.max()


def test_fit_is_gradient_descent_on_the_shared_step():
    """`fit` (the in-memory loop of the autoencoder, latent U-Net and FID feature net) on
    L(w) = mean((w x − 2x)²) with SGD(η): w_{n+1} = w_n − η · 2 mean(x²)(w_n − 2) exactly, the
    losses are L(w_n), and the EMA follows its formula; batches from an iterable or drawn on the
    device from a key."""
    from jaxir.training import fit

    x = jnp.array([0.5, -1.0, 2.0])
    loss = lambda m, batch, key: (jnp.mean((m(batch, 0.0) - 2 * batch) ** 2), {})
    apply_fn = lambda p, k=None: (lambda x, t, c=None: p["w"] * x)
    lr, c = 0.1, 2 * float(jnp.mean(x**2))
    out = fit(loss, apply_fn, {"w": jnp.asarray(0.0)}, optax.sgd(lr), [x] * 4, steps=4,
              ema_decay=0.5)
    w, ema, losses = 0.0, 0.0, []
    for _ in range(4):
        losses.append(float(jnp.mean(x**2)) * (w - 2) ** 2)
        w = w - lr * c * (w - 2)
        ema = 0.5 * ema + 0.5 * w
    np.testing.assert_allclose(float(out.params["w"]), w, rtol=1e-6)
    np.testing.assert_allclose(float(out.ema_params["w"]), ema, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.losses), losses, rtol=1e-6)
    drawn = fit(loss, apply_fn, {"w": jnp.asarray(0.0)}, optax.sgd(lr), lambda k: x, steps=4,
                key=jax.random.key(0))
    np.testing.assert_allclose(float(drawn.params["w"]), w, rtol=1e-6)
    with pytest.raises(ValueError, match="positive int"):
        fit(loss, apply_fn, {"w": jnp.asarray(0.0)}, optax.sgd(lr), [x], steps=0)
