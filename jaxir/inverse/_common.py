"""Steps the training-free posterior samplers share."""

from __future__ import annotations

import jax

from .. import predictions


def x0_and_vjp(model_fn, sde, prediction, x, t, cond=None):
    """Tweedie ``x̂_0(x_t)`` and ``ε̂`` together with the VJP of ``x̂_0`` w.r.t. ``x_t``.

    Returns ``(x0, eps, vjp)`` where ``vjp(v)`` is ``(∂x̂_0/∂x_t)ᵀ v`` — the one backward
    pass that DPS, ΠGDM, MCG and GDP-x_t need per step.
    """
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    (x0, eps), pullback = jax.vjp(lambda y: denoise(y, t, cond), x)

    def vjp(v):
        return pullback((v, jax.numpy.zeros_like(eps)))[0]

    return x0, eps, vjp


# ---- shape checks and batched operator application (shared by the posterior samplers) ----


def check_x_shape(op, shape, x_init, who: str) -> tuple:
    """The batch shape ``(B, *op.x_shape)`` from ``shape`` or ``x_init``, or a ``ValueError``."""
    x_shape = tuple(op.x_shape)
    if x_init is not None:
        got = tuple(jax.numpy.shape(x_init))
        if len(got) != len(x_shape) + 1 or got[1:] != x_shape:
            raise ValueError(f"{who}: x_init must have shape (B, *op.x_shape) = (B, {x_shape}), got {got}")
        return got
    if shape is None:
        raise ValueError(f"{who}: give shape=(B, *op.x_shape) or x_init")
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(x_shape) + 1 or shape[1:] != x_shape:
        raise ValueError(f"{who}: shape must be (B, *op.x_shape) = (B, {x_shape}), got {shape}")
    return shape


def batch_y(op, y, batch: int, who: str):
    """``y`` of shape ``op.y_shape`` (one measurement shared by the batch: posterior samples)
    or ``(B, *op.y_shape)`` (one per example) → ``(B, *op.y_shape)``."""
    y = jax.numpy.asarray(y)
    y_shape = tuple(op.y_shape)
    if y.shape == y_shape:
        return jax.numpy.broadcast_to(y, (batch, *y_shape))
    if y.shape == (batch, *y_shape):
        return y
    raise ValueError(
        f"{who}: y must have shape op.y_shape = {y_shape} (shared) or (B, *op.y_shape) = "
        f"{(batch, *y_shape)}, got {y.shape}"
    )


def check_shapes(name, op, shape, x_init, y):
    """``(B, *x_shape)`` and ``y`` batched (:func:`check_x_shape`, :func:`batch_y`); for an
    elementwise ``op`` (``x_shape`` None) or none, ``y`` has the shape of one ``x`` or of the batch."""
    if op is not None and op.x_shape is not None:
        shape = check_x_shape(op, shape, x_init, name)
        return shape, batch_y(op, y, shape[0], name)
    if x_init is not None:
        shape = tuple(jax.numpy.shape(x_init))
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name}: give shape=(B, *x_shape) or x_init")
    shape = tuple(int(d) for d in shape)
    y_b = jax.numpy.asarray(y)
    if y_b.shape == shape[1:]:
        return shape, jax.numpy.broadcast_to(y_b, shape)
    if y_b.shape != shape:
        raise ValueError(f"{name}: with no operator shapes (an elementwise op, or none as with "
                         f"learn_degradation) y must have shape x_shape = {shape[1:]} or "
                         f"(B, *x_shape) = {shape}, got {y_b.shape}")
    return shape, y_b


def vmapped(op, name: str):
    """``jax.vmap`` of the single-example method ``op.<name>`` over a leading batch axis."""
    return jax.vmap(getattr(op, name))


def own_steps(options, who: str, default: int, minimum: int, sets: str) -> int:
    """``options["num_steps"]`` (``default`` when None) for a method that sets its own grid:
    `ValueError` naming ``who`` for an explicit ``timesteps`` (the method sets ``sets``) or a
    ``num_steps`` that is not an int ``>= minimum``."""
    if options.get("timesteps") is not None:
        raise ValueError(f"{who}: timesteps is not supported; {sets}")
    n = default if options.get("num_steps") is None else options["num_steps"]
    if not isinstance(n, int) or n < minimum:
        need = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{who}: num_steps must be {need}, got {n!r}")
    return n


def require_svd(op, who: str):
    """``ValueError`` unless ``op`` is a linear operator with a matrix-free SVD."""
    if not getattr(op, "has_svd", False):
        raise ValueError(
            f"{who}: needs a linear operator with an SVD (op.has_svd, V_T/V/U_T/U/"
            f"singular_values); {type(op).__name__} has none"
        )


def spectral_y(op, y_b):
    """``(Uᵀy, s, ȳ)`` for a batch ``y_b`` ``(B, *y_shape)``: ``Uᵀy`` is ``(B, dy)``, ``s`` the
    ``(D,)`` singular values, ``ȳ = Uᵀy / s`` padded with zeros to ``(B, D)`` (0 where s = 0)."""
    jnp = jax.numpy
    s = jnp.asarray(op.singular_values)
    uty = vmapped(op, "U_T")(y_b)
    dy = uty.shape[-1]
    s_dy = s[:dy]
    pos = s_dy > 0
    ybar = jnp.where(pos, uty / jnp.where(pos, s_dy, 1.0), 0.0)
    ybar = jnp.concatenate([ybar, jnp.zeros((ybar.shape[0], s.shape[0] - dy), ybar.dtype)], -1)
    return uty, s, ybar


def pad_to(v, size: int):
    """Pad the last axis of ``v`` with zeros to ``size`` (y-space spectral → x-space spectral)."""
    jnp = jax.numpy
    pad = size - v.shape[-1]
    return jnp.concatenate([v, jnp.zeros((*v.shape[:-1], pad), v.dtype)], -1) if pad else v


def safe_norm(r):
    """Euclidean norm over all but the leading axis, with a zero (not NaN) gradient at 0."""
    jnp = jax.numpy
    sq = jnp.sum(r.reshape(r.shape[0], -1) ** 2, -1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def clip_x0(x0, clip):
    """``x̂_0`` clipped to [-1, 1] (``clip=True``), to ``(lo, hi)``, or unchanged (False/None)."""
    if clip is False or clip is None:
        return x0
    lo, hi = (-1.0, 1.0) if clip is True else clip
    return jax.numpy.clip(x0, lo, hi)


def replace_observed(op, key, x, ybar, s, a, sigma, offset=0.0):
    """Replace the observed spectral part of ``x`` by the noised measurement at level ``(a, σ)``.

    With ``z = Vᵀ(x − m)``, every coefficient ``i`` with ``s_i > 0`` becomes
    ``a ȳ_i + σ ε_i`` (``ȳ = Uᵀy / s``, from :func:`spectral_y`; ``ε ~ N(0, 1)`` fresh), the
    others are kept; returns ``V z + m``. This is a draw of the known part from the forward
    marginal ``x_t = a x_0 + m + σ ε`` given ``A x_0 = y``. For :class:`Inpainting` (``V`` the
    flattening, ``s`` the mask) it is the pixel blend ``mask ⊙ (a y + σ ε) + (1 − mask) ⊙ x``.
    Shapes: ``x`` ``(B, *op.x_shape)``, ``ybar`` ``(B, D)``, ``s`` ``(D,)``, ``a``/``σ`` scalars.
    """
    jnp = jax.numpy
    z = vmapped(op, "V_T")(x - offset)
    eps = jax.random.normal(key, z.shape, z.dtype)
    z = jnp.where(s > 0, a * ybar + sigma * eps, z)
    return vmapped(op, "V")(z) + offset
