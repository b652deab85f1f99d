"""Tests of jaxir.operators (float32 throughout).

Tolerances: exact identities (adjointness, SVD reconstruction, orthogonality, pseudo-inverse)
use rtol/atol 1e-4 relative to the scale of the quantities; statistical tests use 5 standard
errors with fixed keys.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir.operators import (
    BicubicSuperResolution,
    Blur,
    CircularBlur,
    Colorization,
    CompressedSensing,
    DenseMatrix,
    Identity,
    Inpainting,
    JPEGLike,
    LinearOperator,
    LowLight,
    Operator,
    PhaseRetrieval,
    SuperResolution,
    box_mask,
    compose,
    degrade,
    gaussian_kernel,
    gaussian_noise,
    half_mask,
    poisson_noise,
    random_mask,
    uniform_kernel,
)

TOL = 1e-4
K = jax.random.key(0)


def _k2d(size=5, sigma=1.0):
    k = gaussian_kernel(size, sigma)
    return jnp.outer(k, k)


# Small instances of every linear operator. (8, 6, 3) shapes catch H/W transpositions.
LINEAR = {
    "identity": lambda: Identity((8, 8, 3)),
    "inpaint_random": lambda: Inpainting(random_mask(jax.random.key(1), (8, 6, 3), 0.5)),
    "inpaint_box_2d": lambda: Inpainting(box_mask((8, 8)), shape=(8, 8, 3)),
    "colorization": lambda: Colorization((8, 6, 3)),
    "sr_avg": lambda: SuperResolution((8, 6, 3), 2),
    "sr_bicubic": lambda: BicubicSuperResolution((8, 6, 3), 2),
    "blur_gauss": lambda: Blur((8, 6, 3), gaussian_kernel(5, 1.0)),
    "blur_uniform_edge": lambda: Blur((8, 6, 3), uniform_kernel(5), boundary="edge"),
    "circular_blur": lambda: CircularBlur((8, 6, 3), _k2d()),
    "compressed_sensing": lambda: CompressedSensing(jax.random.key(2), (4, 4, 3), 20),
    "dense": lambda: DenseMatrix(jax.random.normal(jax.random.key(3), (3, 6))),
}
SVD_OPS = [name for name in LINEAR if name != "circular_blur"]


def _rand(key, shape):
    return jax.random.normal(key, shape, jnp.float32)


def _close(a, b, tol=TOL):
    scale = float(jnp.max(jnp.abs(b))) + 1e-6
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol * scale)


def _jac(f, in_shape):
    """Dense matrix (out_size, in_size) of the linear map f, column by column with jacfwd."""
    n = int(np.prod(in_shape))
    return jax.jacfwd(lambda v: f(v.reshape(in_shape)).reshape(-1))(jnp.zeros(n, jnp.float32))


@jax.jit
def _linear_checks(op, x, u):
    """Everything of the linear contract in one jitted call (one compilation per operator)."""
    ax, atu = op.A(x), op.A_T(u)
    apu = op.A_pinv(u)
    return {
        "ax": ax,
        "atu": atu,
        "<Ax,u>": jnp.vdot(ax, u, precision="highest"),
        "<x,ATu>": jnp.vdot(x, atu, precision="highest"),
        "AA+Ax": op.A(op.A_pinv(ax)),
        "A+u": apu,
        "A+AA+u": op.A_pinv(op.A(apu)),
        "vmap A": jax.vmap(op.A)(jnp.stack([x, 2.0 * x])),
        "vmap A_T": jax.vmap(op.A_T)(jnp.stack([u, -u])),
        "vmap A+": jax.vmap(op.A_pinv)(jnp.stack([u, -u])),
    }


@pytest.mark.parametrize("name", list(LINEAR))
def test_linear_contract(name):
    op = LINEAR[name]()
    assert isinstance(op, LinearOperator)
    kx, ky = jax.random.split(jax.random.key(10))
    x, u = _rand(kx, op.x_shape), _rand(ky, op.y_shape)
    r = _linear_checks(op, x, u)
    ax, atu, apu = r["ax"], r["atu"], r["A+u"]
    assert ax.shape == op.y_shape and atu.shape == op.x_shape and apu.shape == op.x_shape
    assert ax.dtype == jnp.float32 and atu.dtype == jnp.float32
    # adjointness <A x, u> == <x, A^T u>
    np.testing.assert_allclose(float(r["<Ax,u>"]), float(r["<x,ATu>"]), rtol=TOL, atol=TOL)
    # pseudo-inverse: A A+ A x == A x, and A+ A A+ u == A+ u (looser: A+ amplifies by 1/s_min)
    _close(r["AA+Ax"], ax)
    _close(r["A+AA+u"], apu, tol=1e-3)
    # vmap over a batch equals the single-example results
    _close(r["vmap A"], jnp.stack([ax, 2.0 * ax]))
    _close(r["vmap A_T"], jnp.stack([atu, -atu]))
    _close(r["vmap A+"], jnp.stack([apu, -apu]))


@jax.jit
def _svd_checks(op, z, x, y):
    dy = op.y_size
    vtx = op.V_T(x)
    return {
        "M": _jac(op.A, op.x_shape),
        "MT": _jac(op.A_T, op.y_shape),
        "Vm": _jac(op.V, (op.x_size,)),
        "Um": _jac(op.U, (dy,)),
        "s": op.singular_values,
        "V_T V z": op.V_T(op.V(z)),
        "V V_T x": op.V(vtx),
        "U U_T y": op.U(op.U_T(y)),
        "U_T U z": op.U_T(op.U(z[:dy])),
        "vmap V_T": jax.vmap(op.V_T)(jnp.stack([x, -x])),
        "vtx": vtx,
        "ddrm A": op.U(op.singular_values[:dy] * vtx[:dy]),
        "ax": op.A(x),
    }


@pytest.mark.parametrize("name", SVD_OPS)
def test_svd_contract(name):
    op = LINEAR[name]()
    assert op.has_svd
    d, dy = op.x_size, op.y_size
    kz, kx, ky = jax.random.split(jax.random.key(11), 3)
    z, x, y = _rand(kz, (d,)), _rand(kx, op.x_shape), _rand(ky, op.y_shape)
    r = _svd_checks(op, z, x, y)
    M, MT, Vm, Um = (np.asarray(r[k], np.float64) for k in ("M", "MT", "Vm", "Um"))
    s = np.asarray(r["s"], np.float64)
    assert M.shape == (dy, d) and Vm.shape == (d, d) and Um.shape == (dy, dy)
    # dense A_T (built column by column with jacfwd) is the transpose of dense A
    np.testing.assert_allclose(MT, M.T, atol=TOL)
    assert s.shape == (d,) and np.all(s >= 0) and np.all(s[dy:] == 0)
    # V, U orthogonal (columns are the singular vectors)
    np.testing.assert_allclose(Vm.T @ Vm, np.eye(d), atol=TOL)
    np.testing.assert_allclose(Um.T @ Um, np.eye(dy), atol=TOL)
    # A == U diag(s[:dy]) V[:, :dy]^T
    np.testing.assert_allclose(Um @ (s[:dy, None] * Vm[:, :dy].T), M, atol=TOL)
    # V_T / U_T invert V / U; vmap; and A x == U(s[:dy] * V_T(x)[:dy]) (the form DDRM uses)
    _close(r["V_T V z"], z)
    _close(r["V V_T x"], x)
    _close(r["U U_T y"], y)
    _close(r["U_T U z"], z[:dy])
    _close(r["vmap V_T"], jnp.stack([r["vtx"], -r["vtx"]]))
    _close(r["ddrm A"], r["ax"])


def test_circular_blur_has_no_svd():
    op = LINEAR["circular_blur"]()
    assert not op.has_svd
    with pytest.raises(TypeError, match="CircularBlur has no real SVD"):
        op.V_T(jnp.zeros(op.x_shape))
    with pytest.raises(TypeError, match="no real SVD"):
        _ = op.singular_values


def test_circular_blur_matches_direct_convolution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 2)).astype(np.float32)
    k = rng.uniform(size=(3, 5)).astype(np.float32)
    op = CircularBlur((8, 8, 2), k, threshold=0.0)
    ref = np.zeros_like(x)
    for i in range(8):
        for j in range(8):
            for a in range(3):
                for b in range(5):
                    ref[i, j] += k[a, b] * x[(i - a + 1) % 8, (j - b + 2) % 8]
    np.testing.assert_allclose(op.A(x), ref, rtol=TOL, atol=TOL * np.abs(ref).max())
    op_t = CircularBlur((8, 8, 2), k)  # truncated A, but A_full is still the exact convolution
    np.testing.assert_allclose(op_t.A_full(x), ref, rtol=TOL, atol=TOL * np.abs(ref).max())


def test_block_average_sr_is_reshape_mean():
    x = np.asarray(_rand(K, (6, 9, 2)))
    y = SuperResolution((6, 9, 2), 3).A(x)
    np.testing.assert_allclose(y, x.reshape(2, 3, 3, 3, 2).mean(axis=(1, 3)), atol=1e-6)
    sv = SuperResolution((6, 9, 2), 3).singular_values
    np.testing.assert_allclose(sv[:12], 1.0 / 3.0, rtol=1e-6)


def test_bicubic_constant_image_stays_constant():
    op = BicubicSuperResolution((12, 8, 3), 4)
    y = op.A(jnp.full((12, 8, 3), 0.3))
    assert y.shape == (3, 2, 3)
    np.testing.assert_allclose(y, 0.3, atol=1e-6)
    _close(op.A(op.A_pinv(y)), y)


def test_blur_with_zeroed_singular_values():
    op = Blur((8, 6, 3), uniform_kernel(5))
    s = op.singular_values
    n_zero = int(jnp.sum(s == 0))
    assert 0 < n_zero < s.size  # some (not all) singular values are truncated
    # the full contract for this operator is in test_svd_contract("blur_uniform_edge") and
    # here: the truncated A differs from the full blur, and the pinv identity still holds
    x = _rand(K, op.x_shape)
    assert float(jnp.max(jnp.abs(op.A(x) - op.A_full(x)))) > 1e-3
    _close(op.A(op.A_pinv(op.A(x))), op.A(x))
    exact = Blur((8, 6, 3), uniform_kernel(5), threshold=0.0)
    _close(exact.A(x), exact.A_full(x))


def test_colorization_and_inpainting_values():
    x = _rand(K, (4, 4, 3))
    np.testing.assert_allclose(Colorization((4, 4, 3)).A(x)[..., 0], x.mean(-1), atol=1e-6)
    np.testing.assert_allclose(Colorization((4, 4, 3)).singular_values[:16], 3**-0.5, rtol=1e-6)
    m = half_mask((4, 4))
    np.testing.assert_array_equal(m[:, :2], 1.0)
    np.testing.assert_array_equal(m[:, 2:], 0.0)
    np.testing.assert_array_equal(half_mask((4, 4, 2), "top")[:2], 0.0)
    assert float(box_mask((8, 8)).sum()) == 64 - 16
    keep = random_mask(jax.random.key(5), (64, 64), 0.3)
    assert abs(float(keep.mean()) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 4096)
    # one mask per example under vmap
    masks = jnp.stack([half_mask((4, 4)), box_mask((4, 4))])
    ys = jax.vmap(lambda mk, v: Inpainting(mk, shape=(4, 4, 3)).A(v))(masks, jnp.stack([x, x]))
    np.testing.assert_allclose(ys[1], box_mask((4, 4))[..., None] * x)


def test_compressed_sensing_rows_orthonormal():
    op = CompressedSensing(jax.random.key(4), (3, 3, 2), 7)
    R = np.asarray(op.matrix())
    assert R.shape == (7, 18)
    np.testing.assert_allclose(R @ R.T, np.eye(7), atol=TOL)


@jax.jit
def _compose_checks(op, x, u):
    ax = op.A(x)
    return {
        "ax": ax,
        "<Ax,u>": jnp.vdot(ax, u, precision="highest"),
        "<x,ATu>": jnp.vdot(x, op.A_T(u), precision="highest"),
        "AA+Ax": op.A(op.A_pinv(ax)),
        "vmap A": jax.vmap(op.A)(jnp.stack([x, -x])),
    }


def test_composition():
    blur_sr = compose(SuperResolution((8, 6, 3), 2), Blur((8, 6, 3), gaussian_kernel(5, 0.8)))
    col_inp = compose(Inpainting(half_mask((8, 6)), shape=(8, 6, 1)), Colorization((8, 6, 3)))
    kx, ky = jax.random.split(K)
    for op in (blur_sr, col_inp):
        assert isinstance(op, LinearOperator) and not op.has_svd
        x, u = _rand(kx, op.x_shape), _rand(ky, op.y_shape)
        r = _compose_checks(op, x, u)
        np.testing.assert_allclose(float(r["<Ax,u>"]), float(r["<x,ATu>"]), rtol=TOL)
        # approximate CG pseudo-inverse: A A+ A x ~= A x (rtol 1e-3)
        _close(r["AA+Ax"], r["ax"], tol=1e-3)
        _close(r["vmap A"], jnp.stack([r["ax"], -r["ax"]]))
    # CG pinv agrees with the exact one (rtol 1e-3)
    sr = SuperResolution((8, 6, 3), 2)
    y = _rand(ky, sr.y_shape)
    pinvs = jax.jit(lambda a, b, v: (a.A_pinv(v), b.A_pinv(v)))
    cg, exact = pinvs(compose(sr, Identity((8, 6, 3))), sr, y)
    _close(cg, exact, tol=1e-3)
    # nonlinear composition has A only
    jl = compose(JPEGLike((8, 8, 3), 50), Blur((8, 8, 3), gaussian_kernel(3, 1.0)))
    assert isinstance(jl, Operator) and not isinstance(jl, LinearOperator)
    assert jax.eval_shape(jl.A, jnp.zeros((8, 8, 3))).shape == (8, 8, 3)


@jax.jit
def _jpeg_checks(x):
    out = {"y100": JPEGLike((16, 8, 3), 100).A(x), "y10": JPEGLike((16, 8, 3), 10).A(x)}
    for rounding in ("ste", "sin"):
        op = JPEGLike((16, 8, 3), 10, rounding)
        out[rounding] = jax.grad(lambda v, o=op: jnp.sum(o.A(v) ** 2))(x)
    out["vmap"] = jax.vmap(JPEGLike((16, 8, 3), 10).A)(jnp.stack([x, -x]))
    return out


def test_jpeg_like():
    x = jnp.tanh(_rand(K, (16, 8, 3)))
    r = _jpeg_checks(x)
    err100 = jnp.abs(r["y100"] - x)
    assert float(err100.max()) < 0.02 and float(err100.mean()) < 0.005  # ~ identity at q = 100
    assert float(jnp.mean(jnp.abs(r["y10"] - x))) > 0.05  # visibly lossy at q = 10
    for rounding in ("ste", "sin"):
        g = r[rounding]
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
    _close(r["vmap"][0], r["y10"])


@jax.jit
def _lowlight_phase_checks(op, pr, x, xi):
    return {
        "ll": op.A(x),
        "ll grad x": jax.grad(lambda v: op.A(v).sum())(x),
        "ll grad op": jax.grad(lambda o: o.A(x).sum())(op),  # w.r.t. exposure and gamma
        "pr": pr.A(xi),
        "pr neg": pr.A(-xi),
        "pr grad 0": jax.grad(lambda v: pr.A(v).sum())(jnp.zeros_like(xi)),
    }


def test_low_light_and_phase_retrieval():
    op = LowLight(0.3, 0.5)
    pr = PhaseRetrieval((8, 6, 2), 2.0)
    x = jnp.array([-1.0, 0.0, 1.0])
    xi = _rand(K, (8, 6, 2))
    r = _lowlight_phase_checks(op, pr, x, xi)
    np.testing.assert_allclose(r["ll"][1:], 2 * (np.array([0.5, 1.0]) * 0.3) ** 0.5 - 1, rtol=1e-5)
    assert bool(jnp.all(jnp.isfinite(r["ll grad x"])))
    gp = r["ll grad op"]
    assert bool(jnp.isfinite(gp.exposure)) and bool(jnp.isfinite(gp.gamma))
    y = r["pr"]
    assert y.shape == (16, 12, 2)
    np.testing.assert_allclose(float(jnp.sum(y**2)), float(jnp.sum(xi**2)), rtol=1e-4)  # Parseval
    np.testing.assert_allclose(r["pr neg"], y, atol=1e-5)  # |F(-x)| = |F(x)|
    assert bool(jnp.all(jnp.isfinite(r["pr grad 0"])))


def test_noise_statistics():
    n = 200_000
    sigma = 0.1
    e = gaussian_noise(jax.random.key(7), jnp.zeros(n), sigma)
    assert abs(float(e.mean())) < 5 * sigma / np.sqrt(n)
    assert abs(float(e.var()) - sigma**2) < 5 * sigma**2 * np.sqrt(2.0 / n)
    # Poisson: y = 0 -> intensity 0.5, lam = rate/2 photons; y' = 2 N / rate - 1
    rate = 20.0
    lam = rate / 2
    p = poisson_noise(jax.random.key(8), jnp.zeros(n), rate)
    var = 4 * lam / rate**2
    assert abs(float(p.mean())) < 5 * np.sqrt(var / n)
    mu4 = (2 / rate) ** 4 * lam * (1 + 3 * lam)  # 4th central moment of 2N/rate
    assert abs(float(p.var()) - var) < 5 * np.sqrt((mu4 - var**2) / n)
    op = SuperResolution((8, 8, 3), 2)
    x = jnp.zeros((8, 8, 3))
    y = degrade(jax.random.key(9), op, x, 0.05)
    assert y.shape == (4, 4, 3)
    np.testing.assert_array_equal(y, degrade(jax.random.key(9), op, x, 0.05))  # same key, same y


def test_value_errors():
    with pytest.raises(ValueError, match="divisible by factor=2"):
        SuperResolution((7, 8, 3), 2)
    with pytest.raises(ValueError, match="factor"):
        BicubicSuperResolution((8, 8, 3), 0)
    with pytest.raises(ValueError, match="mask"):
        Inpainting(jnp.ones((8, 7)), shape=(8, 8, 3))
    with pytest.raises(ValueError, match=r"`x` must have shape \(8, 8, 3\)"):
        Colorization((8, 8, 3)).A(jnp.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"`y` must have shape \(4, 4, 3\)"):
        SuperResolution((8, 8, 3), 2).A_T(jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"`z` must have shape \(192,\)"):
        Identity((8, 8, 3)).V(jnp.zeros(10))
    with pytest.raises(ValueError, match="floating"):
        Identity((2,)).A(jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="dy <= d"):
        DenseMatrix(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="num_measurements"):
        CompressedSensing(K, (2, 2, 1), 5)
    with pytest.raises(ValueError, match="kernel_1d"):
        Blur((8, 8, 3), jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="kernel_2d"):
        CircularBlur((4, 4, 3), jnp.ones((5, 5)))
    with pytest.raises(ValueError, match="multiples of 8"):
        JPEGLike((12, 8, 3))
    with pytest.raises(ValueError, match="inner.y_shape"):
        compose(Identity((8, 8, 3)), SuperResolution((8, 8, 3), 2))
    with pytest.raises(ValueError, match="side"):
        half_mask((4, 4), "middle")
