"""Summary statistics for result tables."""

from __future__ import annotations

import jax.numpy as jnp


def mean_ci(values, level: float = 0.95):
    """Mean and half-width of the Student-t confidence interval, over the leading axis.

    half_width = t_{(1+level)/2, n−1} · s / sqrt(n), with s the sample standard deviation
    (ddof = 1), so the interval is mean ± half_width. The t quantile comes from
    ``scipy.stats.t.ppf`` at trace time (n and ``level`` are static); the rest is jnp, so
    the function jits with ``level`` static.

    Args:
      values: shape (n, ...), n ≥ 2 repeats (e.g. one metric per seed).
      level: confidence level in (0, 1).

    Returns:
      ``(mean, half_width)``, each of shape ``values.shape[1:]``.

    Example:
      >>> m, h = mean_ci([1.0, 2.0, 3.0])
      >>> float(m), round(float(h), 4)
      (2.0, 2.4841)
    """
    from scipy.stats import t as student_t

    if not 0.0 < level < 1.0:
        raise ValueError(f"mean_ci: level must be in (0, 1), got {level}")
    v = jnp.asarray(values)
    v = v.astype(jnp.promote_types(v.dtype, jnp.float32))
    if v.ndim < 1 or v.shape[0] < 2:
        raise ValueError(f"mean_ci: values needs a leading axis of n >= 2 repeats, got {v.shape}")
    n = v.shape[0]
    quantile = float(student_t.ppf(0.5 * (1.0 + level), df=n - 1))
    half_width = quantile * jnp.std(v, axis=0, ddof=1) / jnp.sqrt(n)
    return jnp.mean(v, axis=0), half_width
