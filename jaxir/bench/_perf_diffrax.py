"""diffrax against a hand-written ``lax.scan`` loop (issue 7, item 2).

The same VP reverse SDE (Euler–Maruyama) and probability-flow ODE (Euler), integrated in
the reversed time ``u = T − t`` exactly as :func:`jaxir.samplers.sde_sample` /
:func:`~jaxir.samplers.ode_sample` do, once through those functions and once through the
plain scan loops below.

Equality of results:
* PF-ODE: deterministic given ``x_T``; the scan loop reproduces diffrax's time points
  (``u_{k+1} = u_k + Δu``, the last step clipped to the end), so the two agree to float32
  rounding (reported as the max abs difference).
* SDE: compared in distribution only. The timed scan loop draws ``N(0, Δu)`` increments
  with ``jax.random.normal`` on split keys. Feeding it diffrax's own
  ``UnsafeBrownianPath.evaluate(u, u + Δu)`` (``scan_euler(..., bm=bm)``) does not give
  the same numbers: that path folds the bit patterns of ``u`` into its key, and one ulp of
  difference in the accumulated times changes every increment.
"""

# ruff: noqa: B023 -- timing lambdas made in a loop are called within the same iteration

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._perf_common import Net, compile_fn, interleaved, run_once


def _rev_drift(sde, model_fn, probability_flow):
    from .. import predictions
    from ..sdes import reverse

    score = predictions.score_fn_from_model(model_fn, sde, "eps")
    rev = reverse(sde, score, probability_flow=probability_flow)
    return lambda u, x: -rev.drift(x, sde.T - u, None)


def scan_euler(sde, model_fn, x0, num_steps: int, *, key=None, bm=None,
               checkpoint: str | None = None):
    """Euler (``key is None and bm is None``: PF-ODE) or Euler–Maruyama (reverse SDE) as a
    ``lax.scan`` over ``num_steps`` steps from ``u = 0`` to ``T − t_min``; returns ``x`` at
    the end (no final denoising). ``checkpoint``: None, ``"step"`` (remat every step) or
    ``"sqrt"`` (two nested scans of ~√N steps, each level rematerialised: memory O(√N))."""
    sde_mode = key is not None or bm is not None
    drift = _rev_drift(sde, model_fn, probability_flow=not sde_mode)
    span = sde.T - sde.t_min
    dt = jnp.float32(span / num_steps)
    end = jnp.float32(span)

    def step(carry, k):
        x, u = carry
        u1 = jnp.minimum(u + dt, end)
        h = u1 - u
        x1 = x + drift(u, x) * h
        if sde_mode:
            dw = bm.evaluate(u, u1) if bm is not None else jnp.sqrt(h) * jax.random.normal(k, x.shape)
            x1 = x1 + sde.diffusion(sde.T - u) * dw
        return (x1, u1), None

    keys = jax.random.split(key, num_steps) if key is not None else jnp.zeros((num_steps,))
    carry = (x0, jnp.float32(0.0))
    if checkpoint is None:
        return jax.lax.scan(step, carry, keys)[0][0]
    if checkpoint == "step":
        return jax.lax.scan(jax.checkpoint(step), carry, keys)[0][0]
    if checkpoint != "sqrt":
        raise ValueError(f"checkpoint must be None, 'step' or 'sqrt', got {checkpoint!r}")
    inner = max(1, int(round(num_steps ** 0.5)))
    while num_steps % inner:
        inner -= 1
    ks = keys.reshape(num_steps // inner, inner, *keys.shape[1:])

    @jax.checkpoint
    def block(c, kb):
        return jax.lax.scan(jax.checkpoint(step), c, kb)[0], None

    return jax.lax.scan(block, carry, ks)[0][0]


def diffrax_vs_scan(net: Net, steps, *, repeats: int = 3, virtual: bool = True,
                    progress=None) -> dict:
    """Rows ``{path, n, ratio = T(diffrax)/T(scan), max_abs_diff}`` for the ODE and the SDE."""
    from .. import samplers
    from ..sdes import VPSDE

    sde = VPSDE()
    rows = []
    key = jax.random.key(0)
    for n in steps:
        # PF-ODE: deterministic from x_T (x_init), no final denoising on either side.
        x_T = sde.prior_sample(jax.random.key(3), net.shape)
        d_ode = compile_fn(lambda p, x: samplers.ode_sample(
            None, net.model_fn(p), sde, x_init=x, solver="euler", num_steps=n).x, net.params, x_T)
        s_ode = compile_fn(lambda p, x: scan_euler(sde, net.model_fn(p), x, n), net.params, x_T)
        a, b = d_ode.fn(net.params, x_T), s_ode.fn(net.params, x_T)
        diff = float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(a)), 1e-30))
        r = interleaved(lambda: run_once(d_ode.fn, net.params, x_T),
                        lambda: run_once(s_ode.fn, net.params, x_T), repeats)
        rows.append({"path": "pf_ode_euler", "n": n, "diffrax_s": r["target_s"],
                     "scan_s": r["base_s"], "ratio": r["ratio"], "max_rel_diff": diff,
                     "compared": "exact (same x_T): max|diffrax - scan| / max|diffrax|"})

        # Reverse SDE: diffrax as sde_sample builds it (same key split), denoise off.
        def d_sde(p, k, brownian):
            return samplers.sde_sample(k, net.model_fn(p), sde, net.shape, num_steps=n,
                                       brownian=brownian, denoise=False).x

        def s_sde(p, k):
            k_init, k_bm = jax.random.split(k)
            return scan_euler(sde, net.model_fn(p), sde.prior_sample(k_init, net.shape), n,
                              key=k_bm)

        du = compile_fn(lambda p, k: d_sde(p, k, "unsafe"), net.params, key)
        dv = compile_fn(lambda p, k: d_sde(p, k, "virtual"), net.params, key)
        sk = compile_fn(s_sde, net.params, key)
        for name, c in (("sde_em_unsafe", du), ("sde_em_virtual", dv))[:2 if virtual else 1]:
            run_once(c.fn, net.params, key)
            r = interleaved(lambda: run_once(c.fn, net.params, key),
                            lambda: run_once(sk.fn, net.params, key), repeats)
            rows.append({"path": name, "n": n, "diffrax_s": r["target_s"], "scan_s": r["base_s"],
                         "ratio": r["ratio"], "max_rel_diff": None,
                         "compared": "in distribution only (same N(0, du) law, other numbers)"})
        if progress:
            for row in rows[-(3 if virtual else 2):]:
                progress(f"  {row['path']:15s} N={n:5d} diffrax/scan={row['ratio']:.3f} "
                         f"rel diff={row['max_rel_diff']}")
    return {"net": net.name, "batch": net.shape[0], "rows": rows}
