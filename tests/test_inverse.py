"""Contracts of the training-free posterior samplers: shapes, errors, jit / vmap / batched y,
operators without an SVD, the time-travel schedule; and the GMM benchmark's exact problem.

Whether each sampler *is* its published algorithm is tested elsewhere, against exact answers:
its own exact output law for a Gaussian prior (``tests/test_oracle_inverse.py``), a float64
transcription fed the same noise for the nonlinear updates (``tests/test_transcriptions.py``),
and MCGdiff in ``tests/test_mcgdiff.py``. Every bound here is float32 rounding or a property of
the problem.
"""

import json
import pathlib
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import oracle
import pytest

from jaxir import exact, samplers, schedules, sdes
from jaxir.bench import gmm
from jaxir.inverse import (
    ddnm_sample,
    ddrm_sample,
    dps_sample,
    mcgdiff_sample,
    pigdm_sample,
    time_travel_schedule,
)
from jaxir.operators import DenseMatrix, LinearOperator

D, DY = 6, 3
SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))


def _problem(sigma_y):
    rng = np.random.default_rng(0)
    L = rng.normal(size=(D, D)) * 0.6
    prior = exact.Gaussian(rng.normal(size=D) * 0.5, L @ L.T + 0.3 * np.eye(D))
    op = DenseMatrix(jnp.asarray(rng.normal(size=(DY, D)) / np.sqrt(D), jnp.float32))
    x_star = prior.sample(jax.random.key(1), 1)[0]
    y = op.A(x_star) + sigma_y * jax.random.normal(jax.random.key(2), (DY,))
    return prior, op, y, prior.posterior(op.matrix, sigma_y, y)


SAMPLERS = {
    "dps": lambda k, mf, op, y, s, shape, **kw: dps_sample(k, mf, SDE, op, y, s, shape, zeta=0.3, clip_x0=False, **kw),
    "pigdm": lambda k, mf, op, y, s, shape, **kw: pigdm_sample(k, mf, SDE, op, y, s, shape, **kw),
    "ddrm": lambda k, mf, op, y, s, shape, **kw: ddrm_sample(k, mf, SDE, op, y, s, shape, **kw),
    "ddnm": lambda k, mf, op, y, s, shape, **kw: ddnm_sample(k, mf, SDE, op, y, s, shape, **kw),
    "mcgdiff": lambda k, mf, op, y, s, shape, **kw: mcgdiff_sample(k, mf, SDE, op, y, s, shape, num_particles=8, **kw),
}


@pytest.mark.parametrize("method", list(SAMPLERS))
def test_jit_vmap_and_batched_y(method):
    """``vmap`` over keys = one run per key; a per-example y equal to the shared one gives the
    same draws; a fixed key gives the same result. Two compilations per sampler."""
    prior, op, y, _ = _problem(0.2)
    mf = prior.model_fn(SDE)
    n = 3
    yb = jnp.broadcast_to(y, (4, DY))
    run = lambda k, yy: SAMPLERS[method](k, mf, op, yy, 0.2, (4, D), num_steps=n).x  # noqa: E731
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(lambda k: run(k, y)))(keys)
    one = jax.jit(lambda k: (run(k, y), run(k, yb), run(k, y)))
    shared, per_example, again = one(keys[1])
    assert batched.shape == (3, 4, D) and bool(jnp.all(jnp.isfinite(batched)))
    # vmap / a per-example y may reorder float32 reductions: n steps × K u |x| (K = 2d + 20)
    atol = n * (2 * D + 20) * 2.0**-24 * float(jnp.abs(batched).max())
    np.testing.assert_allclose(batched[1], shared, rtol=0, atol=atol)
    np.testing.assert_allclose(per_example, shared, rtol=0, atol=atol)
    np.testing.assert_array_equal(again, shared)  # fixed key, same result


@pytest.mark.parametrize("method", list(SAMPLERS))
def test_shape_errors(method):
    prior, op, y, _ = _problem(0.2)
    mf = prior.model_fn(SDE)
    fn = SAMPLERS[method]
    with pytest.raises(ValueError, match="y must have shape"):
        fn(jax.random.key(0), mf, op, jnp.zeros((DY + 1,)), 0.2, (4, D), num_steps=5)
    with pytest.raises(ValueError, match="y must have shape"):
        fn(jax.random.key(0), mf, op, jnp.zeros((5, DY)), 0.2, (4, D), num_steps=5)
    with pytest.raises(ValueError, match="shape"):
        fn(jax.random.key(0), mf, op, y, 0.2, (4, D + 1), num_steps=5)
    with pytest.raises(ValueError, match="x_init"):
        fn(jax.random.key(0), mf, op, y, 0.2, None, num_steps=5, x_init=jnp.zeros((4, D, 1)))


class _NoSVD(LinearOperator):
    """A dense linear operator with A, A_T and A_pinv but no SVD."""

    m: jax.Array
    x_shape: tuple = eqx.field(static=True)
    y_shape: tuple = eqx.field(static=True)

    def __init__(self, m):
        self.m = jnp.asarray(m)
        self.y_shape, self.x_shape = (self.m.shape[0],), (self.m.shape[1],)

    def A(self, x):
        return self.m @ x

    def A_T(self, y):
        return self.m.T @ y

    def A_pinv(self, y):
        return jnp.linalg.pinv(self.m) @ y


def test_operators_without_svd():
    """DDRM and MCGdiff need an SVD; ΠGDM's and DDNM's noiseless forms need only A and A⁺ and
    equal the SVD operator's result up to float32 rounding: each of the n steps applies A⁺
    computed two ways (``jnp.linalg.pinv`` vs the SVD), which differ by at most
    ``K u cond(A) |·|`` (K = 2d + 20 roundings, u = 2⁻²⁴), and the exact-denoiser chain does not
    amplify a difference — so the bound is ``n K u cond(A) max|x|``."""
    prior, op, y, post = _problem(0.0)
    mf = prior.model_fn(SDE)
    plain = _NoSVD(op.matrix)
    for fn in (ddrm_sample, mcgdiff_sample):
        with pytest.raises(ValueError, match="SVD"):
            fn(jax.random.key(0), mf, SDE, plain, y, 0.2, (4, D))
    n = 5
    cond = float(np.linalg.cond(np.asarray(op.matrix, np.float64)))
    for fn in (pigdm_sample, ddnm_sample):
        with pytest.raises(ValueError, match="SVD"):
            fn(jax.random.key(0), mf, SDE, plain, y, 0.2, (4, D))
        a = fn(jax.random.key(0), mf, SDE, plain, y, 0.0, (16, D), num_steps=n).x
        b = fn(jax.random.key(0), mf, SDE, op, y, 0.0, (16, D), num_steps=n).x
        bound = n * (2 * D + 20) * 2.0**-24 * cond * float(jnp.abs(b).max())
        np.testing.assert_allclose(a, b, rtol=0, atol=bound)


def test_time_travel_schedule():
    path = time_travel_schedule(10, 2, 3)
    assert path[0] == 9 and path[-1] == -1
    assert np.all(np.abs(np.diff(path)) == 1)
    ups = int(np.sum(np.diff(path) > 0))
    assert ups == 2 * (3 - 1) * len(range(0, 10 - 2, 2))
    np.testing.assert_array_equal(time_travel_schedule(5), [4, 3, 2, 1, 0, -1])  # l = r = 1
    prior, op, y, _ = _problem(0.2)
    mf = prior.model_fn(SDE)
    out = ddnm_sample(jax.random.key(0), mf, SDE, op, y, 0.2, (4, D), num_steps=10,
                      travel_length=2, travel_repeat=2)
    assert bool(out.finite) and out.nfe == 10 + 2 * len(range(0, 8, 2))


def test_gmm_problem_is_exact():
    """The benchmark's fast model and closed-form posterior equal jaxir.exact's mixture."""
    p = gmm.make_problem(jax.random.key(0), 8, 2)
    sde = gmm.gmm_sde(20)
    mix = exact.GaussianMixture(p.weights, p.means, jnp.ones((25, 8)))
    x = 10.0 * jax.random.normal(jax.random.key(1), (64, 8))
    for t in (0.05, 0.5, 0.95):
        np.testing.assert_allclose(gmm.gmm_model_fn(p, sde)(x, t), mix.model_fn(sde)(x, t), atol=1e-4)
    post = mix.posterior(p.A, p.sigma_y, p.y)
    np.testing.assert_allclose(post.weights, p.post_weights, atol=1e-5)
    np.testing.assert_allclose(post.means, p.post_means, atol=1e-3)
    cov = jnp.matmul(p.vt.T * p.post_scale**2, p.vt, precision="highest")
    np.testing.assert_allclose(post.covs[0], cov, atol=1e-5)
    s = jnp.linalg.svd(p.A, compute_uv=False)
    assert bool(jnp.all(s < 1.0)) and float(p.sigma_y) <= float(s[0])


def test_gmm_schedule_keeps_authors_order():
    grid = gmm.authors_timesteps(100)
    assert grid[0] == 0 and grid[-1] == 999 and len(grid) == 101 and np.all(np.diff(grid) > 0)
    abar = np.concatenate([[1.0], np.cumprod(1 - np.linspace(0.02, 1e-4, 999))])
    np.testing.assert_allclose(gmm.gmm_sde(100).alphas_cumprod, abar[grid[1:]], rtol=1e-4)
    assert abar[1] == pytest.approx(0.98)  # β = 0.02 first: noise is added fastest near the data


def test_gmm_benchmark_rows_are_json():
    rows = gmm.run_gmm_benchmark(dim=4, dys=(1, 2), num_problems=2, methods=["ddrm", "mcgdiff-32"],
                                 num_samples=200, num_reference=1000, num_steps=20)
    assert len(rows) == 2 * 2 * 2
    json.dumps(rows)
    summary = gmm.summarize(rows)
    json.dumps(summary)
    assert {(s["method"], s["dy"]) for s in summary} == {(m, d) for m in ("ddrm", "mcgdiff-32") for d in (1, 2)}
    assert all(r["finite"] and r["sw"] >= 0 for r in rows)
    assert "| ddrm |" in gmm.format_table(summary)


def test_gmm_methods_ignore_what_they_do_not_read():
    """``reads_setting`` lets experiments/gmm_posterior/run.py share a method's rows between
    settings that agree on what it reads: a method declared free of η must give the same
    samples for another η, and the η-readers must not."""
    p = gmm.make_problem(jax.random.key(3), 4, 1)
    key = jax.random.key(4)

    def run(m, steps, eta):
        return np.asarray(gmm.METHODS[m](key, p, gmm.gmm_sde(steps), 8, steps, eta))

    free = [m for m in gmm.METHODS if "eta" not in gmm.reads_setting(m)]
    assert set(free) == {"ddrm", "daps", "reddiff", "pnpdm", "enkg", "dcps"}
    for m in free + ["dps", "fps", "tds"]:  # and three η-readers: the check can fail
        a, b = run(m, 20, 0.6), run(m, 20, 0.85)
        if m in free:
            np.testing.assert_array_equal(a, b, err_msg=m)
        else:
            assert np.abs(a - b).max() > 1e-3, m
    assert all("num_steps" in gmm.reads_setting(m) for m in gmm.METHODS)


# ---- the driver (jaxir.inverse.sample): a method written on it, and what every method gets ----
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _readme_method():
    """``landweber_sample`` exactly as README's "Add a posterior sampler" writes it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(b for b in blocks if "def landweber_sample(" in b)
    ns: dict = {}
    exec(compile(block.split("\nsde = ")[0], "README.md", "exec"), ns)  # the imports + the def
    return ns["landweber_sample"]


def _landweber_law(mu, Sig, A, y, gamma, n_steps, bug=None):
    """The README method's own output law, float64, from its equations: DDPM (Ho et al. 2020,
    Eq. 7, β̃, "leading" respacing) from x_T ~ N(0, σ_T² I), with x̂_0 = J x_t + b (exact
    denoiser) replaced by ``M x̂_0 + γ Aᵀy``, ``M = I − γ AᵀA``, before every step. Mutants:
    ``"none"`` (plain DDPM) and ``"after"`` (the Landweber step applied to x_s instead)."""
    abar = oracle.alphas_cumprod(oracle.linear_betas(1000))
    ac = lambda i: (1.0, 0.0) if i < 0 else (np.sqrt(abar[i]), np.sqrt(1.0 - abar[i]))
    d, I = len(mu), np.eye(len(mu))
    M, q0 = I - gamma * A.T @ A, gamma * A.T @ y
    law = oracle.Law.of(np.zeros(d), ac(999)[1] ** 2 * I)
    ts = oracle.leading_timesteps(1000, n_steps)
    for i, j in zip(ts, oracle.previous_on_grid(ts)):
        (a_t, s_t), (a_s, s_s) = ac(i), ac(j)
        J, b = oracle.gaussian_denoiser(mu, Sig, a_t, s_t)
        a = a_t / a_s
        v = max(s_t**2 - a**2 * s_s**2, 0.0)
        c0, ct, tau = a_s * v / s_t**2, a * s_s**2 / s_t**2, np.sqrt(s_s**2 * v / s_t**2)
        if bug == "none":
            law = law.push(c0 * J + ct * I, c0 * b, tau * I)
        elif bug == "after":
            law = law.push(M @ (c0 * J + ct * I), M @ (c0 * b) + q0, tau * M)
        else:
            law = law.push(c0 * M @ J + ct * I, c0 * (M @ b + q0), tau * I)
    return law


def test_readme_method_has_its_own_exact_law():
    """The README's one-file method, run by the driver, against its own exact law (every mean
    and covariance z-score within the Bonferroni threshold at family-wise 1e-5, n = 40,000, 20
    steps), and both mutants (no correction: 72 s.e.; the correction after the base step: 23
    s.e.) at least 3 thresholds (15.3 s.e.) away, so the pieces' order is what is tested."""
    prior, op, y, _ = _problem(0.2)
    A = np.asarray(op.matrix, np.float64)
    gamma = 0.5 / float(np.linalg.norm(A, 2) ** 2)
    mu, Sig = np.asarray(prior.mean, np.float64), np.asarray(prior.cov, np.float64)
    law = _landweber_law(mu, Sig, A, np.asarray(y, np.float64), gamma, 20)
    wrong = {b: _landweber_law(mu, Sig, A, np.asarray(y, np.float64), gamma, 20, b)
             for b in ("none", "after")}
    n = 40_000
    oracle.assert_discriminates(law, wrong, n, factor=3.0)
    landweber_sample = _readme_method()
    out = jax.jit(lambda k: landweber_sample(k, prior.model_fn(SDE), SDE, op, y, None, (n, D),
                                             gamma=gamma, num_steps=20))(jax.random.key(3))
    assert out.nfe == 20 and bool(out.finite)
    oracle.assert_law(np.asarray(out.x), law, "landweber_sample")


def test_driver_gradients_options_and_grids():
    """What every method gets from the driver (DDRM, n = 5 steps, B = 4):

    * ``jax.grad`` w.r.t. ``y``: with a Gaussian prior and a fixed key DDRM's output is affine
      in ``y``, so ``f(y + e_j) − f(y)`` is exactly ``∂f/∂y_j`` up to float32 rounding, each
      evaluation within ``n K u Σ|w x|`` (K = 2d + 20 roundings, u = 2⁻²⁴); the gradient with
      ``checkpoint="sqrt"`` is the same (recomputation only) within ``n K u max|g|``;
    * ``timesteps`` equal to the default grid gives the default run's draws (within
      ``n K u max|x|``: the two runs sit in one compilation with the gradients, which XLA
      fuses differently);
    * an unknown option is a ``TypeError`` naming the method. One compilation."""
    prior, op, y, _ = _problem(0.2)
    mf = prior.model_fn(SDE)
    n, b, u, K = 5, 4, 2.0**-24, 2 * D + 20
    w = jax.random.normal(jax.random.key(7), (b, D))

    ts, _ = samplers.time_grid(SDE, n)

    def f(yy, **kw):
        x = ddrm_sample(jax.random.key(1), mf, SDE, op, yy, 0.2, (b, D), **{"num_steps": n, **kw}).x
        return jnp.sum(w * x), x

    @jax.jit
    def ddrm_runs(yy):
        g, x = jax.grad(f, has_aux=True)(yy)
        g_sqrt, _ = jax.grad(lambda v: f(v, checkpoint="sqrt"), has_aux=True)(yy)
        fy = jax.vmap(lambda v: f(v)[0])(yy + jnp.concatenate([jnp.zeros((1, DY)), jnp.eye(DY)]))
        x_ts = f(yy, num_steps=None, timesteps=jnp.asarray(ts))[1]
        return g, g_sqrt, x, fy[1:] - fy[0], x_ts

    g, g_sqrt, x, diff, x_ts = ddrm_runs(y)
    tol = 2 * n * K * u * float(jnp.sum(jnp.abs(w * x)))
    assert float(jnp.max(jnp.abs(g))) > 100 * tol  # a gradient that does not vanish
    np.testing.assert_allclose(diff, g, rtol=0, atol=tol)
    np.testing.assert_allclose(g_sqrt, g, rtol=0, atol=n * K * u * float(jnp.max(jnp.abs(g))))
    np.testing.assert_allclose(x_ts, x, rtol=0, atol=n * K * u * float(jnp.max(jnp.abs(x))))
    with pytest.raises(TypeError, match="dps_sample.*num_step"):
        dps_sample(jax.random.key(4), mf, SDE, op, y, None, (b, D), num_step=n)
