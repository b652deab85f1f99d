"""Degradation operators ``y = A(x) + n`` (DESIGN.md layer 6).

Images are single examples ``(H, W, C)`` float32 in [-1, 1] (vectors ``(d,)`` for exact
benchmarks); batch with ``jax.vmap``. Every operator is an immutable ``equinox.Module``.
See ``_base`` for the SVD layout used by DDRM.
"""

from ._base import LinearOperator as LinearOperator
from ._base import Operator as Operator
from ._blur import Blur as Blur
from ._blur import CircularBlur as CircularBlur
from ._blur import gaussian_kernel as gaussian_kernel
from ._blur import uniform_kernel as uniform_kernel
from ._color import Colorization as Colorization
from ._compose import compose as compose
from ._dense import CompressedSensing as CompressedSensing
from ._dense import DenseMatrix as DenseMatrix
from ._identity import Identity as Identity
from ._inpaint import Inpainting as Inpainting
from ._inpaint import box_mask as box_mask
from ._inpaint import half_mask as half_mask
from ._inpaint import random_mask as random_mask
from ._noise import degrade as degrade
from ._noise import gaussian_noise as gaussian_noise
from ._noise import poisson_noise as poisson_noise
from ._nonlinear import JPEGLike as JPEGLike
from ._nonlinear import LowLight as LowLight
from ._nonlinear import PhaseRetrieval as PhaseRetrieval
from ._spec import Degradation as Degradation, make_degradation as make_degradation
from ._sr import BicubicSuperResolution as BicubicSuperResolution
from ._sr import SuperResolution as SuperResolution

__all__ = [
    "BicubicSuperResolution",
    "Blur",
    "box_mask",
    "CircularBlur",
    "Colorization",
    "compose",
    "CompressedSensing",
    "Degradation",
    "degrade",
    "DenseMatrix",
    "gaussian_kernel",
    "gaussian_noise",
    "half_mask",
    "Identity",
    "Inpainting",
    "JPEGLike",
    "LinearOperator",
    "LowLight",
    "make_degradation",
    "Operator",
    "PhaseRetrieval",
    "poisson_noise",
    "random_mask",
    "SuperResolution",
    "uniform_kernel",
]
