"""The torch side of ``authors_instances.py``: rebuild the MCGdiff authors' GMM instances.

Needs torch (not a jaxir dependency; a throw-away venv, see ``authors_instances.py``). It
repeats the torch calls of their ``datasets/gaussian_mixture.py`` (seed 27 per dy) with the one
draw whose algorithm changed across torch versions, ``prior.sample()``, made as the MKL-era
torch of their run made it (:func:`mkl_era_prior_draw`), and stores the instances, the exact
posterior, the 10,000 reference samples and the solvers' grids in ``authors_instances.npz``.
"""

from __future__ import annotations

import struct

import numpy as np

from authors_instances import DIM, DYS, N_REF, NPZ, SEED, mcg31_exponentials


def _alphas_cumprod_torch(torch):
    betas = torch.linspace(0.02, 1e-4, steps=999)
    return torch.cumprod(torch.tensor([1.0] + [1.0 - b for b in betas]), dim=0)


def _mcgdiff_grid(torch, abar, s, var, n_steps=100):
    """The authors' MCGdiff grid (``get_optimal_timesteps_from_singular_values``, mode 'else')."""
    flat = torch.unique(var * abar[None, :] - (1.0 - abar)[None, :] * s[:, None] ** 2)
    extra = sorted(set(flat.abs().argmin(dim=-1, keepdims=True).tolist()))  # one flat position
    if extra[0] == 0:
        extra = extra[1:]
    root = abar**0.5
    end = int(torch.where(root < 1e-2)[0][0])
    step = (root[0] - root[end]) / (n_steps - 1 - len(extra))
    grid, last = [0], root[0]
    for i in range(1, end):
        if last - root[i] >= step or i in extra:
            grid.append(i)
            last = root[i]
    tail = torch.ceil(torch.linspace(grid[-1], len(abar) - 1, n_steps - len(grid) + 1)).tolist()[1:]
    return np.asarray(torch.tensor(grid + tail).long())


def _next_uint32(torch):
    """The next 32-bit output of torch's CPU generator (a Mersenne twister), without drawing it:
    read from ``torch.get_rng_state()`` (the legacy layout: ``left`` at byte 8, ``next`` at 16,
    the 624 words as uint64 from 24) into NumPy's MT19937."""
    raw = bytes(torch.get_rng_state().numpy())
    left, = struct.unpack_from("<i", raw, 8)
    nxt, = struct.unpack_from("<Q", raw, 16)
    key = np.frombuffer(raw, "<u8", 624, 24).astype(np.uint32)
    mt = np.random.MT19937()
    mt.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624 if left == 1 else int(nxt)}}
    return int(mt.random_raw())


def mkl_era_prior_draw(torch, prior):
    """``prior.sample()`` as torch's MKL path (x86, before pytorch #132395) drew it:
    returns ``(x, component)``."""
    seed = _next_uint32(torch)
    u_check = float(torch.rand(()))  # the one 32-bit draw the MKL path consumed as its seed
    if u_check != (seed & 0xFFFFFF) / 2**24:
        raise RuntimeError("could not read torch's generator state (layout changed?)")
    probs = prior.mixture_distribution.probs.numpy()  # float32; MKL's doubles cast to float32
    q = mcg31_exponentials(seed, len(probs)).astype(np.float32)
    k = int(np.argmax(probs / q))
    return prior.component_distribution.sample()[k], k


def regenerate(path=NPZ):
    import torch
    from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

    abar = _alphas_cumprod_torch(torch)
    out = {"alphas_cumprod": abar.numpy()}
    for dy in DYS:
        torch.manual_seed(SEED)
        means = torch.stack([torch.tensor([-8.0 * i, -8.0 * j] * (DIM // 2))
                             for i in range(-2, 3) for j in range(-2, 3)])
        weights = torch.randn(len(means)) ** 2
        weights = weights / weights.sum()
        prior = MixtureSameFamily(Categorical(weights, validate_args=False),
                                  MultivariateNormal(means, torch.eye(DIM).repeat(len(means), 1, 1),
                                                     validate_args=False), validate_args=False)
        a0 = torch.randn((dy, DIM))
        u, s, vh = torch.linalg.svd(a0, full_matrices=True)
        s = torch.sort(torch.rand_like(s), descending=True).values
        A = u @ (torch.diag(s) @ vh[:dy])
        x_star, component = mkl_era_prior_draw(torch, prior)
        sigma_y = torch.rand((1,))[0] * max(s)
        y = A @ x_star
        y += torch.randn_like(y) * sigma_y
        # exact posterior, per component N(μ_k, I) × N(y; A x, σ² I), in the generator's float32 order
        noise_prec = torch.linalg.inv(torch.eye(dy) * sigma_y**2)
        post_means, logw = [], []
        for mu, w in zip(means, weights):
            cov = torch.linalg.inv(torch.eye(DIM) + A.T @ noise_prec @ A)
            m = cov @ (A.T @ noise_prec @ y + torch.eye(DIM) @ mu)  # mean before symmetrising
            post_cov = (cov + cov.T) / 2
            r = y - A @ m
            log_c = (-(r[None, :] @ noise_prec @ r[:, None]) / 2
                     + MultivariateNormal(mu, torch.eye(DIM)).log_prob(m)
                     - MultivariateNormal(m, post_cov, validate_args=False).log_prob(m))
            post_means.append(m)
            logw.append(torch.log(w).item() + log_c)
        logw = torch.tensor(logw)
        logw = logw - torch.logsumexp(logw, dim=0)
        post_means = torch.stack(post_means)
        posterior = MixtureSameFamily(Categorical(logits=logw),
                                      MultivariateNormal(post_means, post_cov.repeat(len(means), 1, 1)))
        reference = posterior.sample((N_REF,))
        grid = _mcgdiff_grid(torch, abar, s, sigma_y**2)
        arrays = {"weights": weights, "means": means, "A": A, "singular_values": s, "x_star": x_star,
                  "x_star_component": torch.tensor(component), "sigma_y": sigma_y, "y": y,
                  "post_weights": logw.exp(), "post_means": post_means, "post_cov": post_cov,
                  "reference": reference}
        for k, v in arrays.items():
            out[f"dy{dy}/{k}"] = v.detach().numpy()
        out[f"dy{dy}/mcgdiff_grid"] = grid
    out["ddrm_grid"] = np.concatenate([[0], np.asarray(torch.linspace(0, 1000, 100).long())[:-1] + 1])
    out["dps_grid"] = np.asarray(torch.linspace(0, 999, 100).long())
    np.savez_compressed(path, **out)
    print(f"wrote {path}; x* components", [int(out[f"dy{dy}/x_star_component"]) for dy in DYS])
    return path
