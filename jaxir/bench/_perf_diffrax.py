"""diffrax against a hand-written ``lax.scan`` loop (issue 7, item 2).

The same VP reverse SDE (Euler–Maruyama) and probability-flow ODE (Euler), integrated in
the reversed time ``u = T − t`` exactly as :func:`jaxir.samplers.sde_sample` /
:func:`~jaxir.samplers.ode_sample` do, once through those functions and once through the
plain scan loops below.

Equality of results:
* PF-ODE: deterministic given ``x_T``; the scan loop reproduces diffrax's time points
  (``u_{k+1} = u_k + Δu``, the last step clipped to the end), so the two agree to float32
  rounding (reported as the max abs difference).
* SDE: the timed scan loop draws the increment of step ``k`` as
  ``√Δu · normal(fold_in(key, k))``, exactly as ``sde_sample(..., brownian="step")`` does,
  so that path is compared exactly (float32 rounding; forward and parameter gradient).
  ``"unsafe"`` and ``"virtual"`` are compared in distribution only: feeding the loop
  diffrax's own ``UnsafeBrownianPath.evaluate(u, u + Δu)`` (``scan_euler(..., bm=bm)``)
  does not give the same numbers, since that path folds the bit patterns of ``u`` into its
  key and one ulp of difference in the accumulated times changes every increment.
* Gradients (``grad=True``): ``jax.grad`` of ``Σ x_end²`` with respect to the network
  parameters, through diffrax (``RecursiveCheckpointAdjoint``; default checkpoints, and
  ``checkpoints=N`` which stores every step like the scan) against ``jax.grad`` through the
  plain scan loop (every step's residuals stored).
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
               checkpoint: str | None = None, increments: str = "split"):
    """Euler (``key is None and bm is None``: PF-ODE) or Euler–Maruyama (reverse SDE) as a
    ``lax.scan`` over ``num_steps`` steps from ``u = 0`` to ``T − t_min``; returns ``x`` at
    the end (no final denoising). ``checkpoint``: None, ``"step"`` (remat every step) or
    ``"sqrt"`` (two nested scans of ~√N steps, each level rematerialised: memory O(√N)).
    ``increments``: ``"split"`` (step ``k`` uses ``jax.random.split(key, N)[k]``) or
    ``"fold_in"`` (``fold_in(key, k)``, the increments of ``sde_sample(brownian="step")``)."""
    if increments not in ("split", "fold_in"):
        raise ValueError(f"increments must be 'split' or 'fold_in', got {increments!r}")
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

    if key is None:
        keys = jnp.zeros((num_steps,))
    elif increments == "split":
        keys = jax.random.split(key, num_steps)
    else:
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_steps))
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


def _rel_diff(a, b) -> float:
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    num = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, b))
    return num / max(max(float(jnp.max(jnp.abs(x))) for x in a), 1e-30)


GRAD_ADJOINTS = ("recursive", "recursive_N")


def diffrax_vs_scan(net: Net, steps, *, repeats: int = 3, virtual: bool = True,
                    grad: tuple = GRAD_ADJOINTS, progress=None) -> dict:
    """Rows ``{path, n, ratio = T(diffrax)/T(scan), max_rel_diff, compile_s}`` for the
    PF-ODE and the reverse SDE with each Brownian path (``"virtual"`` only when
    ``virtual``), then parameter gradients through the SDE with ``brownian="step"``, one row
    per adjoint in ``grad`` (``"recursive"``: diffrax's default
    ``RecursiveCheckpointAdjoint()``; ``"recursive_N"``: ``checkpoints=N``, every step
    stored as in the scan), and with ``"virtual"`` when ``virtual`` and ``grad``."""
    unknown = set(grad) - set(GRAD_ADJOINTS)
    if unknown:
        raise ValueError(f"grad adjoints must be among {GRAD_ADJOINTS}, got {sorted(unknown)}")
    import diffrax

    from .. import samplers
    from ..sdes import VPSDE

    sde = VPSDE()
    rows = []
    key = jax.random.key(0)

    def add(path, n, c_target, c_base, args, *, exact=None, compared):
        run_once(c_target.fn, *args)
        run_once(c_base.fn, *args)
        r = interleaved(lambda: run_once(c_target.fn, *args),
                        lambda: run_once(c_base.fn, *args), repeats)
        diff = _rel_diff(c_target.fn(*args), c_base.fn(*args)) if exact else None
        rows.append({"path": path, "n": n, "diffrax_s": r["target_s"], "scan_s": r["base_s"],
                     "ratio": r["ratio"], "max_rel_diff": diff, "compared": compared,
                     "compile_s": c_target.lower_s + c_target.compile_s})
        if progress:
            progress(f"  {path:23s} N={n:5d} diffrax/scan={r['ratio']:.3f} rel diff={diff} "
                     f"compile={rows[-1]['compile_s']:.1f}s")

    for n in steps:
        # PF-ODE: deterministic from x_T (x_init), no final denoising on either side.
        x_T = sde.prior_sample(jax.random.key(3), net.shape)
        d_ode = compile_fn(lambda p, x: samplers.ode_sample(
            None, net.model_fn(p), sde, x_init=x, solver="euler", num_steps=n).x, net.params, x_T)
        s_ode = compile_fn(lambda p, x: scan_euler(sde, net.model_fn(p), x, n), net.params, x_T)
        add("pf_ode_euler", n, d_ode, s_ode, (net.params, x_T), exact=True,
            compared="exact (same x_T): max|diffrax - scan| / max|diffrax|")

        # Reverse SDE: diffrax as sde_sample builds it (same key split), denoise off; the
        # scan loop uses fold_in(k_bm, k) increments (those of brownian="step").
        def d_sde(p, k, brownian, adjoint=None):
            return samplers.sde_sample(k, net.model_fn(p), sde, net.shape, num_steps=n,
                                       brownian=brownian, denoise=False, adjoint=adjoint).x

        def s_sde(p, k):
            k_init, k_bm = jax.random.split(k)
            return scan_euler(sde, net.model_fn(p), sde.prior_sample(k_init, net.shape), n,
                              key=k_bm, increments="fold_in")

        sk = compile_fn(s_sde, net.params, key)
        for b in ("step", "unsafe", "virtual")[:3 if virtual else 2]:
            c = compile_fn(lambda p, k: d_sde(p, k, b), net.params, key)
            add(f"sde_em_{b}", n, c, sk, (net.params, key), exact=b == "step",
                compared="exact (same fold_in(key, k) increments)" if b == "step" else
                "in distribution only (same N(0, du) law, other numbers)")
        if not grad:
            continue

        # Parameter gradients of sum(x_end^2): diffrax (reverse mode) against the scan loop.
        def loss(f):
            return jax.grad(lambda p, k: jnp.sum(f(p, k) ** 2))

        gs = compile_fn(loss(s_sde), net.params, key)
        variants = [v for v in (
            ("grad_sde_em_step", "step", None, "recursive"),
            ("grad_sde_em_step_ckpt_N", "step",
             diffrax.RecursiveCheckpointAdjoint(checkpoints=n), "recursive_N")) if v[3] in grad]
        if virtual:
            variants.append(("grad_sde_em_virtual", "virtual", None, "recursive"))
        for path, b, adj, _ in variants:
            c = compile_fn(loss(lambda p, k: d_sde(p, k, b, adj)), net.params, key)
            add(path, n, c, gs, (net.params, key), exact=b == "step",
                compared="grad vs grad through the scan loop; " + (
                    "exact (same increments)" if b == "step" else "in distribution only"))
    return {"net": net.name, "batch": net.shape[0], "rows": rows}
