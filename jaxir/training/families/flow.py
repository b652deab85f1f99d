"""Flow matching / rectified flow (Liu et al. 2023; Lipman et al. 2023) from the LQ to the HQ
image along straight paths, sampled by Euler steps; reflow trains a student on a teacher's
own ODE outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..._utils import bcast
from ._pieces import degrade_fn, lq_of, mean_per_example, x0_of
from .._registry import Family, FamilyOptions, register_family


@dataclasses.dataclass(frozen=True)
class FlowOptions(FamilyOptions):
    """``source_noise``: x_1 = LQ + source_noise·ε; ``condition``: the network also sees the LQ;
    ``t_min``: the smallest training time; reflow: ``teacher`` (a flow run's workdir, whose
    EMA velocity makes the targets) with ``teacher_steps`` of ``teacher_solver``."""

    source_noise: float = 0.0
    condition: bool = True
    t_min: float = 0.0
    teacher: str | None = None
    teacher_steps: int = 10
    teacher_solver: str = "euler"


def flow_loss(sde=None, *, source_noise: float = 0.0, condition: bool = True,
              cond_key: str = "lq", degrade_fn: Callable | None = None,
              t_min: float = 0.0, teacher: Callable | None = None, teacher_steps: int = 10,
              teacher_solver: str = "euler") -> Callable:
    """Flow matching for restoration (rectified flow, Liu et al. 2023, Eq. 1; Lipman et al.
    2023, Eq. 23 with σ_min = 0): ``x_1 = LQ + source_noise · ε``, ``t ~ U(t_min, 1)``,
    ``x_t = (1 − t) x_0 + t x_1``, MSE of ``model_fn(x_t, t, LQ)`` against ``x_1 − x_0``.
    Sample with :func:`jaxir.samplers.flow_sample` (``x1 = LQ``, same ``source_noise``,
    ``cond = LQ``). ``sde`` is unused (accepted for the factory contract).

    Reflow (Liu et al. 2023, Sec. 2.2): with ``teacher``, a trained flow's
    ``velocity_fn(x, t, cond)``, the target ``x_0`` is not the batch's HQ image but the
    teacher's own output from the same start, ``x_0 = Φ(x_1)`` (:func:`flow_sample`,
    ``teacher_steps`` of ``teacher_solver``, no gradient). The pairs ``(x_1, Φ(x_1))`` are the
    teacher's coupling, straightened: the student's paths are straighter, so fewer steps
    suffice. The paper draws a fixed set of pairs once; here they are drawn afresh each step
    (the same law, an unlimited set). The student must use the teacher's ``source_noise`` and
    LQ. Through the trainer: ``loss.options={"teacher": "runs/flow", ...}`` (a flow workdir;
    its EMA params).
    """
    del sde
    if teacher is not None:
        from ...samplers import flow_sample

        if not isinstance(teacher_steps, int) or teacher_steps < 1:
            raise ValueError(f"teacher_steps must be a positive int, got {teacher_steps!r}")

    def loss_fn(model_fn, batch, key):
        x0 = x0_of(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        lq = lq_of(batch, x0, k_lq, cond_key, degrade_fn)
        x1 = lq + source_noise * jax.random.normal(k_e, x0.shape, x0.dtype) if source_noise else lq
        if teacher is not None:
            x0 = jax.lax.stop_gradient(flow_sample(
                None, teacher, x1, num_steps=teacher_steps, solver=teacher_solver,
                cond=lq if condition else None).x).astype(x1.dtype)
        t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32, t_min, 1.0)
        tb = bcast(t, x0)
        x_t = (1.0 - tb) * x0 + tb * x1
        pred = model_fn(x_t, t, lq if condition else None)
        mse = jnp.mean(mean_per_example((pred.astype(jnp.float32) - (x1 - x0)) ** 2))
        return mse, {"mse": mse}

    return loss_fn


def _reflow_teacher(config, o: FlowOptions):
    """The EMA velocity of the flow run in ``o.teacher``, checked against the student's config
    (same degradation, source noise and condition: the reflow pairs start where the teacher's
    did)."""
    from .._workdir import load_model_fn

    model_fn, _, teacher = load_model_fn(o.teacher)
    if teacher.loss.kind != "flow":
        raise ValueError(f"loss.options['teacher'] = {str(o.teacher)!r} holds a "
                         f"{teacher.loss.kind!r} model; reflow needs a flow model")
    theirs = FAMILY.parse_options(teacher.loss.options)
    for what, a, b in [("degradation", config.loss.degradation, teacher.loss.degradation),
                       ("options['source_noise']", o.source_noise, theirs.source_noise),
                       ("options['condition']", o.condition, theirs.condition)]:
        if a != b:
            raise ValueError(f"reflow: loss.{what} is {a!r} but the teacher "
                             f"{str(o.teacher)!r} was trained with {b!r}")
    return model_fn


def _loss(config, o: FlowOptions, sde):
    opts = dataclasses.asdict(o)
    if o.teacher is not None:
        opts["teacher"] = _reflow_teacher(config, o)
    return flow_loss(degrade_fn=degrade_fn(config), **opts)


def _sample(model, lq, key, steps, o: FlowOptions, known):
    from ...samplers import flow_sample

    return flow_sample(key, model.model_fn, lq, num_steps=steps, source_noise=o.source_noise,
                       cond=lq if o.condition else None)


FAMILY = register_family(Family(
    name="flow", options=FlowOptions, factory=flow_loss, loss=_loss, sample=_sample,
    default_steps=10,
    conditioned=lambda o: o.condition))
