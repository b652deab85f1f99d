"""The precision policy (``jaxir.precision``) and the model compute dtype, proven on a CPU.

A CPU computes every float32 product in float32 whatever it is asked, so numbers cannot show
the policy here; the programs can. Each test lowers a function to StableHLO and reads the
precision config of every ``dot_general`` / ``convolution`` in it: exact computations must ask
for ``HIGHEST`` on both operands (that is what a GPU or TPU obeys), the score network must
not. One test runs in a subprocess whose CPU emulates an accelerator at its default precision
(``JAXIR_EMULATE_MATMUL``, see ``tests/conftest.py``): there the numbers do differ, and the
exact parts must stay at float32 accuracy while a bfloat16 network runs beside them.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxir import exact, inverse, metrics, precision, samplers, schedules, sdes
from jaxir import operators as ops
from jaxir.bench import gmm
from jaxir.models import UNet, make_model_fn, split_model, unet_config

_OP_RE = re.compile(r"stablehlo\.(dot_general|dot|convolution)\b")
_PREC_RE = re.compile(r"precision = \[(\w+), (\w+)\]|#stablehlo<precision (\w+)>")


def products(fn, *args):
    """``[(op, (lhs precision, rhs precision)), ...]`` of every matrix product and
    convolution in the lowered ``jax.jit(fn)(*args)`` (``DEFAULT`` where none is given)."""
    out = []
    for line in jax.jit(fn).lower(*args).as_text().splitlines():
        m = _OP_RE.search(line)
        if m:
            found = [g for hit in _PREC_RE.findall(line) for g in hit if g]
            out.append((m.group(1), tuple(found[:2]) or ("DEFAULT", "DEFAULT")))
    return out


def assert_all_highest(fn, *args, label=""):
    ps = products(fn, *args)
    assert ps, f"{label}: no matrix product lowered (the check would be vacuous)"
    bad = [p for p in ps if p[1] != ("HIGHEST", "HIGHEST")]
    assert not bad, f"{label}: {len(bad)} of {len(ps)} products not at HIGHEST: {bad[:4]}"
    return len(ps)


# ---- the scoped level --------------------------------------------------------------------


def test_levels_scope_and_errors():
    assert precision.get_exact_precision() == jax.lax.Precision.HIGHEST
    with precision.exact_precision("high"):
        assert precision.get_exact_precision() == jax.lax.Precision.HIGH
        with precision.exact_precision(jax.lax.Precision.DEFAULT):
            assert precision.get_exact_precision() == jax.lax.Precision.DEFAULT
        with precision.exact_precision("bfloat16"):  # JAX's alias of DEFAULT
            assert precision.get_exact_precision() == jax.lax.Precision.DEFAULT
        assert precision.get_exact_precision() == jax.lax.Precision.HIGH
    assert precision.get_exact_precision() == jax.lax.Precision.HIGHEST
    with pytest.raises(ValueError, match="level"):
        precision.exact_precision("float16")
    with pytest.raises(ValueError, match="level"), precision.exact_precision("high"):
        raise ValueError("level: an error inside the block leaves it")
    assert precision.get_exact_precision() == jax.lax.Precision.HIGHEST


def test_scope_changes_what_is_lowered_and_is_in_the_jit_key():
    """The same jitted function object, lowered and *called* inside and outside a scope:
    the level is read at trace time and keys the cache, so nothing stale is reused."""
    op = ops.DenseMatrix(jax.random.normal(jax.random.key(0), (3, 5)))
    f = jax.jit(lambda x: op.A_pinv(op.A(x)))
    x = jnp.ones(5)

    def levels():
        return {p for _, p in products(f, x)}

    y0 = f(x)
    assert levels() == {("HIGHEST", "HIGHEST")}
    with precision.exact_precision("default"):
        assert levels() == {("DEFAULT", "DEFAULT")}
        y1 = f(x)  # a cache hit here would silently keep HIGHEST
        if hasattr(f, "_cache_size"):
            assert f._cache_size() == 2
    with precision.exact_precision("high"):
        assert levels() == {("HIGH", "HIGH")}
    assert levels() == {("HIGHEST", "HIGHEST")}
    np.testing.assert_array_equal(y0, y1)  # on a CPU the numbers cannot differ


# ---- exact sites ask for HIGHEST -----------------------------------------------------------

_K = ops.gaussian_kernel(5, 1.0)
OPERATORS = {
    "dense": lambda: ops.DenseMatrix(jax.random.normal(jax.random.key(1), (5, 12))),
    "compressed_sensing": lambda: ops.CompressedSensing(jax.random.key(2), (8, 8, 3), 40),
    "blur": lambda: ops.Blur((8, 8, 3), _K),
    "bicubic_sr": lambda: ops.BicubicSuperResolution((8, 8, 3), 2),
    "block_sr": lambda: ops.SuperResolution((8, 8, 3), 2),
    "colorization": lambda: ops.Colorization((8, 8, 3)),
    "jpeg": lambda: ops.JPEGLike((8, 8, 3), 50),
    "blur_then_sr": lambda: ops.compose(ops.SuperResolution((8, 8, 3), 2), ops.Blur((8, 8, 3), _K)),
}
# transforms that are pure indexing/reshaping (no product to check)
NO_PRODUCT = {("block_sr", "A"), ("block_sr", "A_T"), ("block_sr", "A_pinv"),
              ("block_sr", "U"), ("block_sr", "U_T"), ("colorization", "A"),
              ("colorization", "A_T"), ("colorization", "A_pinv"), ("colorization", "U"),
              ("colorization", "U_T"), ("compressed_sensing", "U"), ("compressed_sensing", "U_T")}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_operator_transforms_request_highest(name):
    op = OPERATORS[name]()
    x = jnp.ones(op.x_shape)
    y = jnp.ones(op.y_shape)
    methods = {"A": x, "A_full": x}
    if isinstance(op, ops.LinearOperator):
        methods.update(A_T=y, A_pinv=y)
    if getattr(op, "has_svd", False):
        methods.update(V_T=x, V=jnp.ones(op.x_size), U_T=y, U=jnp.ones(op.y_size))
    checked = 0
    for meth, arg in methods.items():
        if not hasattr(op, meth):
            continue
        fn = lambda v, m=meth: getattr(op, m)(v)  # noqa: E731
        if (name, meth) in NO_PRODUCT:
            assert all(p == ("HIGHEST", "HIGHEST") for _, p in products(fn, arg)), meth
        else:
            assert_all_highest(fn, arg, label=f"{name}.{meth}")
            checked += 1
    assert checked >= 1


def test_circular_blur_is_fft_only():
    """CircularBlur multiplies spectra (FFT): no product whose precision could drop."""
    op = ops.CircularBlur((8, 8, 3), jnp.outer(_K, _K))
    for meth in ("A", "A_T", "A_pinv"):
        assert products(lambda v, m=meth: getattr(op, m)(v), jnp.ones((8, 8, 3))) == []


def _gaussian_prior(d=4, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d)) * 0.6
    return exact.Gaussian(rng.normal(size=d) * 0.5, L @ L.T + 0.3 * np.eye(d))


def test_exact_priors_posteriors_and_weights_request_highest():
    sde = sdes.VPSDE()
    g = _gaussian_prior()
    x = jnp.ones((3, 4))
    A = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)), jnp.float32)
    y = jnp.ones(2)
    assert_all_highest(lambda v: g.score(v, 0.3, sde), x, label="Gaussian.score")
    assert_all_highest(lambda v: g.denoise(v, 0.3, sde), x, label="Gaussian.denoise")
    assert_all_highest(lambda v: g.log_prob(v), x, label="Gaussian.log_prob")
    assert_all_highest(lambda v: g.model_fn(sde, "x0")(v, 0.3), x, label="Gaussian.model_fn")
    assert_all_highest(lambda v: g.posterior(A, 0.3, v).cov, y, label="Gaussian.posterior")
    covs = jnp.stack([g.cov, 2.0 * g.cov])
    mix = exact.GaussianMixture(jnp.array([1.0, 2.0]), jnp.stack([g.mean, -g.mean]), covs)
    assert_all_highest(lambda v: mix.responsibilities(v, 0.4, sde), x, label="GMM weights")
    assert_all_highest(lambda v: mix.score(v, 0.4, sde), x, label="GMM.score")
    assert_all_highest(lambda v: mix.noised_log_prob(v, 0.4, sde), x, label="GMM log p_t")
    assert_all_highest(lambda v: mix.posterior(A, 0.3, v).weights, y, label="GMM posterior w")
    assert_all_highest(lambda k: mix.sample(k, 5), jax.random.key(0), label="GMM.sample")
    vel = exact.interpolant_velocity(g, exact.Gaussian(jnp.zeros(4), jnp.eye(4)))
    assert_all_highest(lambda v: vel(v, 0.3), x, label="interpolant_velocity")
    # the d = 800 benchmark's own fast exact model and closed-form posterior
    assert_all_highest(lambda k: gmm.make_problem(k, 8, 2).post_weights, jax.random.key(0),
                       label="bench.gmm.make_problem")
    p = gmm.make_problem(jax.random.key(0), 8, 2)
    assert_all_highest(lambda v: gmm.gmm_model_fn(p, gmm.gmm_sde(20))(v, 0.5),
                       jnp.ones((3, 8)), label="bench.gmm.gmm_model_fn")


# every sampler driven by an exact model is exact end to end: no product anywhere at less
# than HIGHEST (a product without it would run in TF32 / one bf16 pass on an accelerator)
_D, _DY = 6, 3
_SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
SAMPLERS = {
    "ddrm": lambda k, mf, op, y: inverse.ddrm_sample(k, mf, _SDE, op, y, 0.1, (4, _D), num_steps=4),
    "ddnm": lambda k, mf, op, y: inverse.ddnm_sample(k, mf, _SDE, op, y, 0.1, (4, _D), num_steps=4),
    "pigdm": lambda k, mf, op, y: inverse.pigdm_sample(k, mf, _SDE, op, y, 0.1, (4, _D), num_steps=4),
    "dps": lambda k, mf, op, y: inverse.dps_sample(k, mf, _SDE, op, y, 0.1, (4, _D), num_steps=4,
                                                   clip_x0=False),
    "mcgdiff": lambda k, mf, op, y: inverse.mcgdiff_sample(k, mf, _SDE, op, y, 0.1, (4, _D),
                                                           num_particles=8, num_steps=4),
    "projection": lambda k, mf, op, y: inverse.projection_sample(k, mf, _SDE, op, y, 0.0, (4, _D),
                                                                 num_steps=4, clip_x0=False),
    "diffpir_grad": lambda k, mf, op, y: inverse.diffpir_sample(k, mf, _SDE, op, y, 0.1, (4, _D),
                                                                num_steps=4, solver="grad"),
    "mcg": lambda k, mf, op, y: inverse.mcg_sample(k, mf, _SDE, op, y, 0.0, (4, _D), num_steps=4),
    "repaint": lambda k, mf, op, y: inverse.repaint_sample(k, mf, _SDE, op, y, 0.0, (4, _D),
                                                           num_steps=4),
    "gdp": lambda k, mf, op, y: inverse.gdp_sample(k, mf, _SDE, op, y, 0.0, (4, _D), num_steps=4,
                                                   scale=1.0),
    "ddim": lambda k, mf, op, y: samplers.ddim_sample(k, mf, _SDE, (4, _D), num_steps=4),
    "dpm_solver": lambda k, mf, op, y: samplers.dpm_solver_sample(k, mf, _SDE, (4, _D),
                                                                  num_steps=4),
    "ddpm": lambda k, mf, op, y: samplers.ddpm_sample(k, mf, _SDE, (4, _D), num_steps=4,
                                                      clip_x0=False),
    "sde_euler": lambda k, mf, op, y: samplers.sde_sample(k, mf, sdes.VPSDE(), (4, _D),
                                                          num_steps=4),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_with_an_exact_model_are_highest_throughout(name):
    mf = _gaussian_prior(_D).model_fn(_SDE if name != "sde_euler" else sdes.VPSDE(), "eps")
    op = ops.DenseMatrix(jax.random.normal(jax.random.key(1), (_DY, _D)))
    assert_all_highest(lambda k: SAMPLERS[name](k, mf, op, jnp.ones(_DY)).x, jax.random.key(0),
                       label=name)


def test_metrics_request_highest():
    k = jax.random.key(0)
    a, b = jnp.ones((20, 4)), jnp.zeros((30, 4))
    assert_all_highest(lambda u, v: metrics.sliced_wasserstein(k, u, v), a, b, label="sliced W")
    assert_all_highest(lambda u, v: metrics.mmd(u, v), a, b, label="mmd")
    c = jnp.eye(4)
    assert_all_highest(lambda u: metrics.gaussian_w2(u[0], c, u[1], 2 * c), a, label="gaussian_w2")
    im = jnp.zeros((2, 16, 16, 3))
    assert_all_highest(lambda u: metrics.ssim(u, u), im, label="ssim")
    # the metric networks, lowered from abstract weights (nothing is allocated or loaded)
    for name, make, size in (
        ("lpips", lambda: metrics.LPIPSNet("alex", rngs=nnx.Rngs(0)), 32),
        ("feature net", lambda: metrics.FeatureNet(16, 3, 10, rngs=nnx.Rngs(0)), 16),
        ("inception", lambda: metrics.InceptionV3(rngs=nnx.Rngs(0)), 75),
    ):
        graphdef, state = nnx.split(nnx.eval_shape(make))
        x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
        call = (lambda s, u, g=graphdef: nnx.merge(g, s)(u, u)) if name == "lpips" else (
            lambda s, u, g=graphdef: nnx.merge(g, s)(u))
        assert_all_highest(call, state, x, label=name)


# ---- the network runs at the backend default, optionally in bfloat16 -----------------------


def _tiny_unet(seed=0):
    """A tiny U-Net's graphdef and params with random weights everywhere (the zero-initialised
    output layer would hide every difference), built from abstract shapes: no eager init."""
    graphdef, abstract = split_model(nnx.eval_shape(lambda: UNet(unet_config("tiny"),
                                                                  rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda v: jnp.asarray(0.2 * rng.standard_normal(v.shape), v.dtype),
                          abstract)
    return graphdef, abstract, params


def test_network_does_not_force_highest():
    graphdef, abstract, _ = _tiny_unet()
    x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
    for dt in (None, jnp.bfloat16):
        ps = products(lambda p, v, d=dt: make_model_fn(graphdef, p, compute_dtype=d)(v, 0.5),
                      abstract, x)
        assert len(ps) > 20 and all(p == ("DEFAULT", "DEFAULT") for _, p in ps), (dt, ps[:3])


def _eqns(jaxpr):
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _product_dtypes(fn, *args):
    """Counter of (primitive, operand dtypes) over every product in ``fn``'s jaxpr."""
    out = {}
    for e in _eqns(jax.make_jaxpr(fn)(*args).jaxpr):
        if e.primitive.name in ("dot_general", "conv_general_dilated"):
            key = (e.primitive.name, *(str(v.aval.dtype) for v in e.invars))
            out[key] = out.get(key, 0) + 1
    return out


def test_bfloat16_forward_has_no_float32_product():
    """With compute_dtype=bfloat16 every convolution and matrix product of the U-Net takes
    bfloat16 operands — the time embedding no longer promotes the activations to float32
    (it did: its float32 features met the bf16 layers). Kept in float32 by design: the
    embedding's sin/cos features (cast before the MLP) and GroupNorm's statistics (Flax
    reduces in float32); attention's logits accumulate in float32 from bf16 operands."""
    graphdef, _, params = _tiny_unet()
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
    t = jnp.array([0.1, 0.9])
    f32 = make_model_fn(graphdef, params)
    bf16 = make_model_fn(graphdef, params, compute_dtype=jnp.bfloat16)
    counts = _product_dtypes(bf16, x, t)
    assert sum(counts.values()) > 20
    assert all(k[1:] == ("bfloat16", "bfloat16") for k in counts), counts
    assert all(k[1:] == ("float32", "float32") for k in _product_dtypes(f32, x, t))
    y32, y16 = jax.jit(f32)(x, t), jax.jit(bf16)(x, t)
    assert y16.dtype == jnp.float32 and y16.shape == y32.shape
    # a bf16 network: differs from float32 by bfloat16 rounding (unit roundoff 2^-8 per
    # operation, a few hundred operations deep), neither bit-identical nor unrelated
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 1e-4 < rel < 0.1, rel
    # gradients w.r.t. the float32 params stay float32 (shapes only: nothing is compiled)
    g = jax.eval_shape(jax.grad(
        lambda p: jnp.sum(make_model_fn(graphdef, p, compute_dtype="bfloat16")(x, t))), params)
    assert {v.dtype for v in jax.tree.leaves(g)} == {jnp.dtype(jnp.float32)}
    with pytest.raises(ValueError, match="compute_dtype"):
        make_model_fn(graphdef, params, compute_dtype="int8")


def test_bfloat16_train_step_has_no_float32_product():
    """The training step's own ``compute_dtype`` (``jaxir.training.make_train_step``) gets the
    same fix: no convolution or matrix product of its forward and backward pass multiplies two
    float32 operands (before the time embedding's cast, every residual block did). Left mixed
    by JAX itself: the backward of attention's float32-accumulated logits (a float32 cotangent
    times a bf16 operand), two products per attention block."""
    import optax

    from jaxir.training import TrainState, make_apply_fn, make_train_step

    graphdef, _, params = _tiny_unet()
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))

    def loss_fn(model_fn, batch, key):
        return jnp.mean((model_fn(batch, jnp.full((batch.shape[0],), 0.5)) - batch) ** 2), {}

    tx = optax.adam(1e-3)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), params,
                       jax.random.key_data(jax.random.key(0)), None)
    counts = {}
    for dt in ("float32", "bfloat16"):
        step = make_train_step(loss_fn, make_apply_fn(graphdef), tx, ema_decay=0.9,
                               compute_dtype=dt)
        counts[dt] = _product_dtypes(step, state, x)
    assert set(k[1:] for k in counts["float32"]) == {("float32", "float32")}
    bf = counts["bfloat16"]
    assert sum(bf.values()) > 60 and not any(k[1:] == ("float32", "float32") for k in bf), bf
    mixed = sum(v for k, v in bf.items() if "float32" in k[1:])
    assert mixed <= 2, bf  # tiny: one attention block (the middle)


class GaussianDenoiserNet(nnx.Module):
    """The exact ε̂ of a Gaussian prior written as a network (parameters in ``nnx.Param``s,
    plain ``@``: the network path), so ``make_model_fn(compute_dtype=bf16)`` runs it in
    bfloat16 like a U-Net: the time-dependent coefficients are computed in float32 from t and
    cast to the activations' dtype, as the U-Net's time embedding."""

    def __init__(self, prior, sde):
        self.mean = nnx.Param(prior.mean)
        self.evals = nnx.Param(prior.evals)
        self.evecs = nnx.Param(prior.evecs)
        self.coeffs = lambda t: sde.marginal_coeffs(t)

    def __call__(self, x, t, cond=None, *, deterministic=True, rngs=None):
        a, s = (jnp.asarray(c, jnp.float32).astype(x.dtype) for c in self.coeffs(t))
        z = (x - a * self.mean[...]) @ self.evecs[...]
        return ((s * z / (a**2 * self.evals[...] + s**2)) @ self.evecs[...].T).astype(x.dtype)


def _ddnm_problem():
    rng = np.random.default_rng(0)
    prior = _gaussian_prior(_D, seed=3)
    op = ops.DenseMatrix(jnp.asarray(rng.normal(size=(_DY, _D)) / np.sqrt(_D), jnp.float32))
    y = op.A(prior.sample(jax.random.key(1), 1)[0])
    return prior, op, y


def _bf16_network(prior, sde):
    graphdef, params = nnx.split(GaussianDenoiserNet(prior, sde))
    return make_model_fn(graphdef, params, compute_dtype=jnp.bfloat16)


_EMULATED = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import conftest  # installs the emulation (JAXIR_EMULATE_MATMUL is set)
    import jax, jax.numpy as jnp, numpy as np
    import test_precision as tp
    from jaxir import inverse, precision

    a = jax.random.normal(jax.random.key(0), (64, 64))
    ref = np.asarray(a, np.float64) @ np.asarray(a, np.float64)
    plain = float(np.abs(np.asarray(jax.jit(lambda u: u @ u)(a)) - ref).max() / np.abs(ref).max())
    prior, op, y = tp._ddnm_problem()
    net = tp._bf16_network(prior, tp._SDE)
    xs = jax.random.normal(jax.random.key(2), (64, tp._D))
    net_err = float(jnp.abs(net(xs, 0.3) - prior.model_fn(tp._SDE, "eps")(xs, 0.3)).max())

    def run():
        out = jax.jit(lambda k: inverse.ddnm_sample(k, net, tp._SDE, op, y, 0.0, (128, tp._D),
                                                    num_steps=20))(jax.random.key(5))
        x = np.asarray(out.x, np.float64)
        return float(np.sqrt(np.mean(np.sum((x @ np.asarray(op.matrix, np.float64).T - y) ** 2, -1))))

    post = prior.posterior(op.matrix, 0.2, y)
    exact = tp.oracle_posterior_mean(prior, op, y)
    res = dict(plain=plain, net_err=net_err, highest=run(),
               post_err=float(np.abs(np.asarray(post.mean) - exact).max()))
    with precision.exact_precision("default"):
        res["default"] = run()
        res["post_err_default"] = float(
            np.abs(np.asarray(prior.posterior(op.matrix, 0.2, y).mean) - exact).max())
    print(json.dumps(res))
    """
)


def oracle_posterior_mean(prior, op, y, sigma_y=0.2):
    """The Gaussian posterior mean in float64 NumPy."""
    mu, S = np.asarray(prior.mean, np.float64), np.asarray(prior.cov, np.float64)
    A, y = np.asarray(op.matrix, np.float64), np.asarray(y, np.float64)
    K = np.linalg.solve(A @ S @ A.T + sigma_y**2 * np.eye(len(y)), A @ S).T
    return mu + K @ (y - A @ mu)


def test_on_an_emulated_tpu_the_exact_parts_stay_exact():
    """A CPU whose default-precision products round their operands to bfloat16 (a TPU's one
    pass; ``JAXIR_EMULATE_MATMUL=bf16``), and the exact Gaussian denoiser run as a bfloat16
    network (``GaussianDenoiserNet`` through ``make_model_fn(compute_dtype=bf16)``). A plain
    product is then off by ~2⁻⁸ relative and the network by bf16 rounding, yet the exact
    posterior stays at float32 accuracy and noiseless DDNM keeps A x = y to 1e-4 (the tolerance
    of ``test_inverse.test_noiseless_data_consistency``): its range-space correction
    x̂0 − A⁺(A x̂0 − y) runs in float32 at HIGHEST whatever the network's dtype. Asking for the
    default level instead (``exact_precision("default")``) breaks both — the checks see the
    precision of the exact parts, not the network's."""
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXIR_EMULATE_MATMUL="bf16",
               PYTHONPATH=os.pathsep.join([str(Path(tests).parent), tests]))
    proc = subprocess.run([sys.executable, "-c", _EMULATED.format(tests=tests)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["plain"] > 2e-4, r  # the emulation is live: bf16 operands, not float32
    assert 1e-4 < r["net_err"] < 0.1, r  # the network really runs in bfloat16
    assert r["highest"] < 1e-4 and r["post_err"] < 1e-4, r
    assert r["default"] > 1e-3 and r["post_err_default"] > 1e-3, r
