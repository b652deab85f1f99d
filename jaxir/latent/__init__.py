"""Latent diffusion for restoration (SRLDM; Rombach et al. 2022, Sec. 4.4 and appendix).

Two stages. (1) A convolutional autoencoder (`jaxir.models.Autoencoder`, factor f ∈ {2, 4})
trained on reconstruction alone (:func:`train_autoencoder`; L1 or MSE plus a tiny L2 pull of
z towards 0, the role of LDM's KL weight 1e-6). (2) A conditional ε-network on its latents:
``z_0 = s·E(x_0)`` (s = :func:`latent_scale`, LDM's ``scale_factor`` = 1/std(z), so the latent
has unit variance like the diffusion prior), ``z_t = α z_0 + σ ε``, and the network sees
``concat[z_t, c]`` where ``c`` is **the LQ image resized to the latent resolution**
(H/f × W/f, by f×f block averaging; it is not encoded). This is SRLDM's conditioning: the
low-resolution image is concatenated to the U-Net's input (their τ_θ is the identity); with
4× SR and f = 4 it is the raw LQ image itself. Restoration (:func:`latent_restore`) runs any
core sampler in latent space with that condition and decodes: ``x̂ = D(z_0 / s)``.

Pieces:

- :class:`LatentCodec` — ``encode``/``decode`` as pure functions plus the factor and latent
  channels; :func:`autoencoder_codec` builds one from ``(graphdef, params)``. Any pair of
  functions works (tests use a linear codec with known matrices).
- :func:`latent_loss` — ``loss_fn(model_fn, batch, key)`` of the `jaxir.training` contract
  (encodes ``batch["image"]``, makes the LQ with ``degrade_fn`` unless the batch has it, and
  applies `jaxir.training.denoising_loss` to the latents); it is the loss of the "latent"
  kind "latent" of ``jaxir train``.
- :func:`autoencoder_loss` / :func:`autoencoder_model_fn` — stage 1 in the same contract, so
  ``jaxir train --config autoencoder_photos --workdir runs/ae`` trains the autoencoder like any
  other model (loss kind ``"autoencoder"``; checkpoints, resume, sharding) and writes
  ``runs/ae/autoencoder.npz`` (EMA params and latent scale) when it finishes; a latent run's
  ``loss.options["autoencoder"]`` may name that file or the workdir.
- :func:`train_autoencoder`, :func:`train_latent_diffusion` — training on images held in
  memory through `jaxir.training.fit` (the trainer's step), for tests and CPU demos.
- :func:`save_autoencoder` / :func:`load_autoencoder` — one ``.npz`` (arrays keyed by NNX path,
  the config and the latent scale as JSON bytes under ``"__config__"``; read with
  ``allow_pickle=False``), like `jaxir.priors`.

Why a latent prior does not plug into DDRM / ΠGDM
-------------------------------------------------
Training-free solvers for linear inverse problems (DDRM, DDNM, ΠGDM; `jaxir.inverse`) rely on
the measurement being a *linear* function of the variable being diffused, ``y = A x + n``:
DDRM runs its diffusion in the spectral basis of A's SVD and treats each singular direction in
closed form, and ΠGDM's guidance is a Gaussian likelihood whose covariance
``r² A Aᵀ + σ_y² I`` needs A to be a matrix. With a latent prior the diffused variable is z,
and the measurement is ``y = A(D(z)) + n`` with D the decoder, a deep nonlinear network.
``A∘D`` has no SVD, its Jacobian changes from point to point, and the linear-Gaussian
structure that makes those updates exact (or nearly so) is gone. Working around it in pixel
space — decode ``ẑ_0``, apply DDRM's / DDNM's projection onto ``{x : A x = y}``, re-encode —
does not fix this: the projected image generally leaves the decoder's range, ``E∘D`` is not a
projection, and the encode/decode round trip undoes part of the correction at every step, so
the iterates are neither consistent with y nor on the learned manifold. This is why the
literature reports that latent priors do not transfer to these solvers as they are, and why
latent-space posterior samplers change the algorithm instead: PSLD (Rout et al. 2023) adds to
a DPS-style gradient (taken through D) a "gluing" term that keeps ``D(ẑ_0)`` a fixed point of
encode∘decode, and ReSample (Song et al. 2024) enforces data consistency by an optimisation
over z through D at selected steps and then re-noises the result back onto the diffusion
trajectory (stochastic resampling). The supervised route of this module (SRLDM) sidesteps the
question: the LQ image is an input of the latent network, and no operator is ever inverted.

Example (tiny, runs in seconds):

>>> import jax
>>> from jaxir import latent, sdes
>>> from jaxir.models import AutoencoderConfig
>>> cfg = AutoencoderConfig(in_channels=1, base_channels=8, factor=2, latent_channels=2,
...                         num_groups=4)
>>> graphdef, params = latent.train_autoencoder("digits", size=8, steps=2, batch_size=4,
...                                             config=cfg, key=jax.random.key(0))
>>> codec = latent.autoencoder_codec(graphdef, params)
>>> codec.encode(jax.numpy.zeros((1, 8, 8, 1))).shape
(1, 4, 4, 2)
"""

from ._codec import LatentCodec as LatentCodec
from ._codec import autoencoder_codec as autoencoder_codec
from ._codec import autoencoder_loss as autoencoder_loss
from ._codec import autoencoder_model_fn as autoencoder_model_fn
from ._codec import latent_scale as latent_scale
from ._codec import to_latent_resolution as to_latent_resolution
from ._file import AUTOENCODER_FILE as AUTOENCODER_FILE
from ._file import AutoencoderFile as AutoencoderFile
from ._file import export_autoencoder as export_autoencoder
from ._file import load_autoencoder as load_autoencoder
from ._file import load_images as load_images
from ._file import resolve_autoencoder as resolve_autoencoder
from ._file import save_autoencoder as save_autoencoder
from ._sample import latent_restore as latent_restore

__all__ = [
    "AUTOENCODER_FILE",
    "AutoencoderFile",
    "LatentCodec",
    "autoencoder_codec",
    "autoencoder_loss",
    "autoencoder_model_fn",
    "export_autoencoder",
    "latent_loss",
    "latent_restore",
    "latent_scale",
    "load_autoencoder",
    "load_images",
    "resolve_autoencoder",
    "save_autoencoder",
    "to_latent_resolution",
    "train_autoencoder",
    "train_latent_diffusion",
]

# The training half (_train: the latent loss, the in-memory loops) uses jaxir.training, which
# itself uses the codec, the file and the sampler above: it is imported on first use, so that
# importing this package never imports jaxir.training.
_LAZY = {"latent_loss": "._train", "train_autoencoder": "._train",
         "train_latent_diffusion": "._train"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
