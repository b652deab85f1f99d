"""Flow matching: with the exact velocity of a Gaussian-to-Gaussian coupling, the adaptive ODE
carries the LQ (source) distribution to the HQ (target) one; few-step sampling, trajectories,
errors; reflow's straightened coupling. The laws of fixed-step Euler / Heun sampling are pinned
by tests/test_oracle_samplers.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle as O
from jaxir import exact, samplers


def _gauss(seed, shift):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(3, 3)) * 0.5
    return exact.Gaussian(rng.normal(size=3) + shift, L @ L.T + 0.2 * np.eye(3))


def test_adaptive_flow_transports_source_to_target():
    """The exact velocity's ODE maps LQ exactly onto HQ (the marginal-preserving property);
    Tsit5 at rtol = atol = 1e-5 moves each sample by O(1e-4), far below the standard error
    (≥ 3e-3) of 20,000 draws: z-tests at the Bonferroni threshold."""
    hq, lq = _gauss(0, 0.0), _gauss(1, 2.0)
    v = exact.interpolant_velocity(lq, hq)
    x1 = lq.sample(jax.random.key(0), 20_000)
    out = jax.jit(lambda x: samplers.flow_sample(jax.random.key(1), v, x, num_steps=None,
                                                 solver="tsit5"))(x1)
    assert bool(out.finite)
    O.assert_law(np.asarray(out.x, np.float64), O.Law.of(hq.mean, hq.cov), "tsit5 flow")


def test_flow_few_steps_trajectory_and_errors():
    hq, lq = _gauss(0, 0.0), _gauss(1, 2.0)
    v = exact.interpolant_velocity(lq, hq)
    x1 = lq.sample(jax.random.key(0), 8)
    out = samplers.flow_sample(jax.random.key(0), v, x1, num_steps=4, save_every=2)
    assert out.trajectory.shape == (3, 8, 3) and out.nfe == 4
    np.testing.assert_allclose(out.trajectory[0], x1)
    with pytest.raises(ValueError, match="adaptive"):
        samplers.flow_sample(jax.random.key(0), v, x1, num_steps=None, solver="euler")
    noisy = samplers.flow_sample(jax.random.key(0), v, x1, num_steps=4, source_noise=0.1)
    assert not np.allclose(noisy.x, out.x)
    assert jnp.all(jnp.isfinite(noisy.x))


def test_reflow_target_is_the_teachers_straightened_coupling():
    """Reflow: with the exact (curved) velocity of independent Gaussians as the teacher, the
    teacher's Heun-8 map is affine (at any step count: the velocity is affine in x),
    Φ(x) = M x + c, so the reflowed velocity is known in closed form: on
    x = (1 − t) Φ(x_1) + t x_1, v₂(x, t) = x_1 − Φ(x_1). The reflow loss must vanish at v₂
    up to float32 rounding — a mean squared difference of two float32 evaluations of O(5)
    values through a 3×3 solve (condition ≤ 100): ≤ (100 · 1.2e-7 · 5)² ≈ 4e-9, asserted
    < 1e-8 — while the teacher's own velocity, not the straightened one, stays > 1e4 × that
    away; and ONE Euler step of v₂ must reproduce Φ to the float32 floor of the 16 solves of
    the Heun-8 teacher (16 · cond · 1.2e-7 · max|x|)."""
    from jaxir.training import make_loss

    hq, lq = _gauss(0, 0.0), _gauss(1, 2.0)
    teacher = exact.interpolant_velocity(lq, hq)
    phi = jax.jit(lambda x: samplers.flow_sample(None, teacher, x, num_steps=8,
                                                 solver="heun").x)
    c = phi(jnp.zeros((1, 3)))[0]
    M = (phi(jnp.eye(3)) - c).T  # column i = Φ(e_i) − c

    def v2(x, t, cond=None):
        t = jnp.asarray(t, jnp.float32).reshape(-1, 1)
        a = (1 - t)[:, :, None] * M + t[:, :, None] * jnp.eye(3)  # (B, 3, 3)
        x1 = jnp.linalg.solve(a, (x - (1 - t) * c)[..., None])[..., 0]
        return x1 - (jnp.matmul(x1, M.T, precision="highest") + c)

    k = jax.random.split(jax.random.key(3), 2)
    batch = {"image": hq.sample(k[0], 4096), "lq": lq.sample(k[1], 4096)}
    loss = jax.jit(make_loss("flow", None, teacher=teacher, teacher_steps=8,
                             teacher_solver="heun"), static_argnums=0)
    at_v2, _ = loss(v2, batch, jax.random.key(4))
    per_example = lambda x, t, cond=None: jax.vmap(lambda a, b: teacher(a[None], b)[0])(x, t)
    at_teacher, _ = loss(per_example, batch, jax.random.key(4))
    assert float(at_v2) < 1e-8 and float(at_teacher) > 1e-4, (at_v2, at_teacher)
    x1 = lq.sample(jax.random.key(5), 20_000)
    one = samplers.flow_sample(None, v2, x1, num_steps=1)
    ts = np.linspace(0, 1, 17)
    cond = max(np.linalg.cond((1 - t) ** 2 * np.asarray(hq.cov) + t**2 * np.asarray(lq.cov))
               for t in ts)
    tol = 16 * cond * float(np.finfo(np.float32).eps) * float(jnp.abs(x1).max())
    np.testing.assert_allclose(one.x, phi(x1), rtol=0, atol=tol)
    with pytest.raises(ValueError, match="teacher_steps"):
        make_loss("flow", None, teacher=teacher, teacher_steps=0)
