"""The restoration methods of ``jaxir restore``: training-free diffusion samplers and baselines.

Diffusion methods run :mod:`jaxir.inverse` samplers with their official defaults (the
number of steps can be overridden); they work on prior-sized patches (see ``_patches``).
Classical baselines work on the whole image, on the host, with scikit-image / scipy.
jax and :mod:`jaxir.inverse` are imported inside the methods, so the table itself loads without
jax (`jaxir --help` lists it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ._tasks import BLUR_SIGMA, BLUR_SIZE, TASKS, Task

_ALL = tuple(TASKS)
_INPAINT = ("inpaint", "inpaint_box")


class Method(NamedTuple):
    """A restoration method.

    Attributes:
      name: registry key.
      kind: ``"diffusion"`` (patch-wise, needs a prior) or ``"classical"`` (whole image).
      tasks: the task names it supports.
      default_steps: the official number of sampling steps (diffusion only).
      run: diffusion: ``run(key, prior, op, y, sigma_y, task, steps)`` with ``y``
        ``(B, *op.y_shape)`` returns the sampler's :class:`~jaxir.samplers.Samples` (``.x``
        ``(B, *op.x_shape)``, ``.nfe`` per sample) or just the ``(B, *op.x_shape)`` array;
        classical: ``run(y, task, mask) -> (H, W, C)`` on one numpy image in [-1, 1].
      description: one line.
      particles: network evaluations per call of the model (a particle method evaluates its
        particles as one batch and counts each in ``.nfe``): the progress bar, which ticks
        once per call, expects ``nfe / particles`` ticks per batch.
    """

    name: str
    kind: str
    tasks: tuple[str, ...]
    default_steps: int | None
    run: Callable
    description: str
    particles: int = 1


def _shape(op, y):
    return (y.shape[0], *op.x_shape)


def _dps(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.dps_sample(key, prior.model_fn, prior.sde, op, y, sigma_y, _shape(op, y),
                              prediction=prior.prediction, num_steps=steps,
                              zeta=task.dps_zeta)


def _pigdm(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.pigdm_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                                _shape(op, y), prediction=prior.prediction, num_steps=steps)


def _ddrm(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.ddrm_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                               _shape(op, y), prediction=prior.prediction, num_steps=steps)


def _ddnm(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.ddnm_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                               _shape(op, y), prediction=prior.prediction, num_steps=steps)


def _repaint(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.repaint_sample(key, prior.model_fn, prior.sde, op, y, sigma_y, _shape(op, y),
                                  prediction=prior.prediction, num_steps=steps)


def _gdp(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    # The official scales assume D = 256·256·3; GDP's docstring: keep s/D about the same.
    d = float(np.prod(op.x_shape))
    scale = inverse.GDP_SCALES[task.gdp_scale] * d / (256 * 256 * 3)
    return inverse.gdp_sample(key, prior.model_fn, prior.sde, op, y, sigma_y, _shape(op, y),
                              scale=scale, prediction=prior.prediction, num_steps=steps)


def _diffpir(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.diffpir_sample(key, prior.model_fn, prior.sde, op, y, sigma_y, _shape(op, y),
                                  prediction=prior.prediction, num_steps=steps)



def _daps(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.daps_sample(key, prior.model_fn, prior.sde, op, y, sigma_y, _shape(op, y),
                               prediction=prior.prediction, num_steps=steps)


def _reddiff(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.reddiff_sample(key, prior.model_fn, prior.sde, op, y, sigma_y, _shape(op, y),
                                  prediction=prior.prediction, num_steps=steps)


def _pnpdm(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    return inverse.pnpdm_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                                _shape(op, y), prediction=prior.prediction, num_steps=steps)


#: EnKG's ensemble per patch here (the official 1,024 particles are far beyond a CPU).
ENKG_PARTICLES = 4


def _enkg(key, prior, op, y, sigma_y, task, steps):
    import jax
    import jax.numpy as jnp

    from .. import inverse
    from ..inverse._enkg import enkg_plan
    from ..samplers import Samples

    def one(k, yi):  # one ensemble per patch; its mean is the estimate
        return jnp.mean(inverse.enkg_sample(k, prior.model_fn, prior.sde, op, yi, None,
                                            (ENKG_PARTICLES, *op.x_shape),
                                            prediction=prior.prediction, num_steps=steps).x, 0)

    x = jax.vmap(one)(jax.random.split(key, y.shape[0]), y)
    g, m, _ = enkg_plan(steps)
    nfe = ENKG_PARTICLES * (steps + 2 * int(np.sum(m[g])))
    return Samples(x, None, nfe, jnp.all(jnp.isfinite(x)))


def _fps(particles):
    def run(key, prior, op, y, sigma_y, task, steps):
        from .. import inverse

        out = inverse.fps_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                                 _shape(op, y), num_particles=particles,
                                 prediction=prior.prediction, num_steps=steps)
        return out._replace(nfe=out.nfe * particles)  # network passes per restored patch
    return run


#: TDS's particles per patch (the official 4)
TDS_PARTICLES = 4


def _tds(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    out = inverse.tds_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                             _shape(op, y), num_particles=TDS_PARTICLES,
                             prediction=prior.prediction, num_steps=steps)
    return out._replace(nfe=out.nfe * TDS_PARTICLES)  # network passes per patch, a VJP each


def _dcps(key, prior, op, y, sigma_y, task, steps):
    from .. import inverse

    # the official lr = 1.5 moves a 256² × 3 image by 1.5 in L2 per SGD step: the same step
    # per pixel on a patch (the official trajectory demo's 0.05 is in line with this rule)
    lr = 1.5 * float(np.sqrt(np.prod(op.x_shape) / (256 * 256 * 3)))
    return inverse.dcps_sample(key, prior.model_fn, prior.sde, op, y, float(sigma_y),
                               _shape(op, y), lr=lr, prediction=prior.prediction,
                               num_steps=steps)

# ---- classical baselines (numpy in [-1, 1], one whole image) ----

def _pinv(y, task: Task, mask):
    import jax.numpy as jnp

    op = task.make_operator(task.x_shape(y.shape), None if mask is None else mask)
    return np.asarray(op.A_pinv(jnp.asarray(y)))


def _upsample(order):
    def run(y, task, mask):
        from skimage.transform import resize

        h, w, c = y.shape
        return resize(y, (h * task.factor, w * task.factor, c), order=order, mode="edge",
                      anti_aliasing=False)
    return run


def _gaussian(y, task, mask):
    from skimage.filters import gaussian

    return gaussian(y, sigma=1.0, channel_axis=-1, preserve_range=True)


def _wiener_denoise(y, task, mask):
    from scipy.signal import wiener

    noise = task.sigma_y**2
    return np.stack([wiener(y[..., c], 5, noise) for c in range(y.shape[-1])], -1)


def _psf():
    from .. import operators

    k = np.asarray(operators.gaussian_kernel(BLUR_SIZE, BLUR_SIGMA))
    return np.outer(k, k)


def _wiener_deblur(y, task, mask):
    from skimage.restoration import wiener

    # balance = noise-to-signal power ratio; 0.05 suits σ_y = 0.05 on natural images
    return np.stack([wiener(y[..., c], _psf(), balance=0.05, clip=False)
                     for c in range(y.shape[-1])], -1)


def _unsharp(y, task, mask):
    from skimage.filters import gaussian

    # y + amount · (y − G_radius * y), amount 1.5, radius 2 px (skimage's unsharp_mask formula)
    return y + 1.5 * (y - gaussian(y, sigma=2.0, channel_axis=-1, preserve_range=True))


def _biharmonic(y, task, mask):
    from skimage.restoration import inpaint_biharmonic

    missing = np.asarray(mask)[..., 0] < 0.5
    return inpaint_biharmonic(y, missing, channel_axis=-1)


def _wrap(fn):
    def run(y, task, mask):
        return np.clip(np.asarray(fn(np.asarray(y, np.float64), task, mask), np.float32), -1, 1)
    return run


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("dps", "diffusion", _ALL, 1000, _dps,
               "DPS (Chung et al. 2023): DDPM + ζ∇‖y − A x̂0‖; official ζ per task"),
        Method("pigdm", "diffusion", _ALL, 100, _pigdm,
               "ΠGDM (Song et al. 2023): DDIM η = 0 + pseudo-inverse guidance"),
        Method("ddrm", "diffusion", _ALL, 20, _ddrm,
               "DDRM (Kawar et al. 2022): spectral, η = 0.85, η_b = 1"),
        Method("ddnm", "diffusion", _ALL, 100, _ddnm,
               "DDNM+ (Wang et al. 2023): null-space correction, η = 0.85"),
        Method("repaint", "diffusion", _INPAINT, 250, _repaint,
               "RePaint (Lugmayr et al. 2022): jump length 10, 10 resamplings"),
        Method("gdp", "diffusion", tuple(t for t in _ALL if TASKS[t].gdp_scale), 1000, _gdp,
               "GDP-x0 (Fei et al. 2023): official scale per task, rescaled to the patch size"),
        Method("diffpir", "diffusion", _ALL, 100, _diffpir,
               "DiffPIR (Zhu et al. 2023): ζ = 0.1, λ = 7 (deepinv defaults)"),
        Method("daps", "diffusion", _ALL, 200, _daps,
               "DAPS (Zhang et al. 2025): 200 annealing levels × 5 ODE steps, Langevin, τ = 0.01"),
        Method("reddiff", "diffusion", _ALL, 1000, _reddiff,
               "RED-diff (Mardani et al. 2024): Adam lr 0.1, λ = 0.25, from A⁺y"),
        Method("pnpdm", "diffusion", _ALL, 100, _pnpdm,
               "PnP-DM (Wu et al. 2024): split Gibbs, EDM SDE prior step, ρ 10 → 0.3"),
        Method("enkg", "diffusion", _ALL, 20, _enkg,
               "EnKG (Zheng et al. 2024): derivative-free; mean of 4 particles, 20 steps (CPU)",
               ENKG_PARTICLES),
        Method("fps", "diffusion", _ALL, 1000, _fps(1),
               "FPS (Dou & Song 2024): filtering a bridged y_t sequence, 1 particle, c = 0.95"),
        Method("fps-smc", "diffusion", _ALL, 200, _fps(5),
               "FPS-SMC (Dou & Song 2024): 5 particles, 200 steps (CPU; official 1000)", 5),
        Method("tds", "diffusion", _ALL, 100, _tds,
               "TDS (Wu et al. 2023): twisted SMC, 4 particles, τ² = 0.12, systematic resampling",
               TDS_PARTICLES),
        Method("dcps", "diffusion", _ALL, 300, _dcps,
               "DCPS (Janati et al. 2024): 3 blocks, Langevin + Gaussian fits, lr per pixel"),
        Method("pinv", "classical", _ALL, None, _wrap(_pinv),
               "the degraded input A⁺y (nearest upsampling for sr4, holes at 0 for inpaint)"),
        Method("bicubic", "classical", ("sr4",), None, _wrap(_upsample(3)), "bicubic upsampling"),
        Method("nearest", "classical", ("sr4",), None, _wrap(_upsample(0)), "nearest upsampling"),
        Method("gaussian", "classical", ("denoise",), None, _wrap(_gaussian),
               "Gaussian filter, σ = 1 px"),
        Method("wiener", "classical", ("denoise", "deblur"), None,
               _wrap(lambda y, t, m: (_wiener_denoise if t.name == "denoise" else
                                      _wiener_deblur)(y, t, m)),
               "Wiener filter (adaptive 5×5 for denoise, known PSF for deblur)"),
        Method("unsharp", "classical", ("deblur",), None, _wrap(_unsharp),
               "unsharp mask (radius 2, amount 1.5)"),
        Method("biharmonic", "classical", _INPAINT, None, _wrap(_biharmonic),
               "biharmonic inpainting (scikit-image)"),
    )
}
DIFFUSION_METHODS = tuple(m for m in METHODS.values() if m.kind == "diffusion")

#: The best classical baseline of each task on the held-out evaluation
#: (``experiments/evaluate/``, 20 crops of ``photos:test``, PSNR): denoise ``gaussian`` (27.55 dB;
#: wiener 26.67), sr4 ``bicubic`` (25.50; ``nearest`` is A⁺y, 23.88), inpaint ``biharmonic``
#: (28.15), inpaint_box ``biharmonic`` (the only one, 25.75), deblur ``wiener`` (26.51; unsharp
#: 23.59), colorize: none besides A⁺y (``pinv``, 18.49).
BEST_BASELINES: dict[str, str] = {
    "denoise": "gaussian", "sr4": "bicubic", "deblur": "wiener", "inpaint": "biharmonic",
    "inpaint_box": "biharmonic", "colorize": "pinv",
}


#: (task, method) -> (steps, samples) where the held-out evaluation (``experiments/evaluate/``,
#: 20 crops of ``photos:test``) shows other settings than the method's official ones better;
#: every other pair runs the official steps and one sample. The rule: among the evaluated
#: settings whose paired PSNR gain over the official setting has a 95 % CI (Student t) that
#: excludes 0, the one with the largest mean gain (``tests/test_restore.py`` recomputes it
#: from the CSVs):
#: inpaint ddrm 100 steps: +4.03 ± 0.90 dB over the official 20 (20 of 20 crops; the mean of 8
#: samples gains +1.46 ± 0.33);
#: inpaint_box ddrm 100 steps: +1.53 ± 1.41 dB over 20 (12 of 20; SSIM +0.063 ± 0.021);
#: deblur ddrm 100 steps: +0.52 ± 0.24 dB over 20 (16 of 20);
#: sr4 ddrm, mean of 8 samples: +1.26 ± 0.44 dB over one sample (20 of 20; +0.89 ± 0.41 over
#: bicubic, which one sample ties); 100 steps: +0.37 ± 0.38, not significant.
#: Not changed: colorize ddrm 100 steps, +2.08 ± 2.90 dB over 20 (15 of 20; the CI includes 0,
#: although SSIM gains +0.129 ± 0.090): the official 20 stay, ``--steps 100`` is the option.
TASK_SETTINGS: dict[tuple[str, str], tuple[int, int]] = {
    ("inpaint", "ddrm"): (100, 1),
    ("inpaint_box", "ddrm"): (100, 1),
    ("deblur", "ddrm"): (100, 1),
    ("sr4", "ddrm"): (20, 8),
}


def default_settings(task: str, method) -> tuple[int | None, int]:
    """``(steps, samples)`` that ``method`` (a name or a `Method`) runs with on ``task`` unless
    told otherwise: :data:`TASK_SETTINGS`, else the official step count and one sample
    (classical methods: ``(None, 1)``)."""
    m = method if isinstance(method, Method) else METHODS[method]
    if m.kind == "classical":
        return None, 1
    return TASK_SETTINGS.get((task, m.name), (m.default_steps, 1))


def best_baseline(task: str) -> str:
    """The classical method to compare a restoration of ``task`` with (:data:`BEST_BASELINES`)."""
    return BEST_BASELINES[task]


def get_method(name: str, task: str | None = None) -> Method:
    """The `Method` called ``name``, checked against ``task``; ``ValueError`` otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    m = METHODS[name]
    if task is not None and task not in m.tasks:
        ok = [k for k, v in METHODS.items() if task in v.tasks]
        raise ValueError(f"method {name!r} does not support task {task!r} (it supports "
                         f"{', '.join(m.tasks)}); methods for {task!r}: {', '.join(ok)}")
    return m
