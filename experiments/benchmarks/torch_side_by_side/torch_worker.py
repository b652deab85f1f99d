"""PyTorch side of the side-by-side benchmark (runs in its own venv, never jaxir's).

diffusers' DDPMScheduler / DDIMScheduler in the usual pipeline loop (``set_timesteps``,
then for each timestep a network call and ``scheduler.step``), eager PyTorch under
``torch.inference_mode()``, the same toy network and weights as the JAX worker.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

FREQS = torch.from_numpy(C.emb_freqs())


class ToyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c = C.IMG[0]
        self.conv1 = torch.nn.Conv2d(c, C.CH, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(C.CH, C.CH, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(C.CH, c, 3, padding=1)
        self.dense1 = torch.nn.Linear(C.EMB, C.HID)
        self.dense2 = torch.nn.Linear(C.HID, C.CH)

    def forward(self, x, t):  # x (B, C, H, W), t (B,) float DDPM index
        a = t[:, None] * FREQS[None, :]
        emb = torch.cat([torch.sin(a), torch.cos(a)], dim=-1)
        temb = self.dense2(F.silu(self.dense1(emb)))
        h = F.silu(self.conv1(x) + temb[:, :, None, None])
        h = F.silu(self.conv2(h))
        return self.conv3(h)


def trivial(x, t):
    return 0.9 * x + 1e-3 * t.reshape((-1,) + (1,) * (x.dim() - 1))


NET = {}
CASES = {}


def scheduler(sampler, clip=None):
    if sampler == "forward":
        return None
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = dict(num_train_timesteps=C.N_TRAIN, beta_start=C.BETA[0], beta_end=C.BETA[1],
              beta_schedule="linear", prediction_type="epsilon", timestep_spacing="leading",
              steps_offset=0)
    if sampler == "ddim":  # official DDIM: no clipping; x̂0 at the last step (ᾱ_prev = 1)
        return DDIMScheduler(clip_sample=False if clip is None else clip, set_alpha_to_one=True, **kw)
    return DDPMScheduler(clip_sample=True if clip is None else clip, variance_type="fixed_small", **kw)


def make_sampler(net_name, sampler, steps, seed):
    net = NET["toy"] if net_name == "toy" else trivial
    sched = scheduler(sampler)

    @torch.inference_mode()
    def sample(x, gen=None):
        if sampler == "forward":  # the network alone, at t = 500
            return net(x, torch.full((x.shape[0],), 500.0))
        sched.set_timesteps(steps)
        b = x.shape[0]
        for t in sched.timesteps:
            eps = net(x, t.to(torch.float32).expand(b))
            if sampler == "ddim":
                x = sched.step(eps, t, x, eta=0.0).prev_sample
            else:
                x = sched.step(eps, t, x, generator=gen).prev_sample
        return x

    return sample, sched


def op_init(req):
    torch.set_num_threads(req["threads"])
    torch.set_num_interop_threads(1)
    w = np.load(req["weights"])
    net = ToyNet()
    net.load_state_dict({k: torch.from_numpy(w[k]) for k in w.files})
    net.eval()
    NET["toy"] = net
    import diffusers
    return {"versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "diffusers": diffusers.__version__, "numpy": np.__version__},
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "affinity": sorted(os.sched_getaffinity(0))}


def op_net(req):
    d = np.load(req["in"])
    x, t = torch.from_numpy(d["x"]), torch.from_numpy(d["t"]).to(torch.float32)
    with torch.inference_mode():
        np.savez(req["out"], toy=NET["toy"](x, t).numpy(), trivial=trivial(x, t).numpy())
    return {}


def op_check(req):
    """DDIM (η = 0) from x_T, or DDPM from x_T with the noise jaxir drew (patched in)."""
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod

    d = np.load(req["in"])
    x = torch.from_numpy(d["x"])
    sample, sched = make_sampler("toy", req["sampler"], req["steps"], req["seed"])
    if req["sampler"] == "ddim":
        out = sample(x)
    else:
        noise = torch.from_numpy(d["noise"])  # (steps, B, C, H, W), step k uses noise[k]
        sched.set_timesteps(req["steps"])
        index = {int(t): k for k, t in enumerate(sched.timesteps)}
        current = {}
        orig_step = sched.step

        def step(eps, t, x, generator=None):
            current["k"] = index[int(t)]
            return orig_step(eps, t, x, generator=generator)

        def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
            z = noise[current["k"]]
            assert tuple(z.shape) == tuple(shape)
            return z.to(dtype)

        sched.step = step
        saved = ddpm_mod.randn_tensor
        ddpm_mod.randn_tensor = fake_randn
        try:
            out = sample(x)
        finally:
            ddpm_mod.randn_tensor = saved
    np.savez(req["out"], x=out.numpy())
    return {}


def op_prepare(req):
    c = req["case"]
    sample, _ = make_sampler(c["net"], c["sampler"], c["steps"], c["seed"])
    x = torch.from_numpy(C.x_T(c["seed"], c["batch"]))
    gen = torch.Generator().manual_seed(c["seed"])
    t0 = time.perf_counter()
    sample(x, gen)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample(x, gen)
    second = time.perf_counter() - t0
    CASES[c["id"]] = lambda: sample(x, gen)
    return {"first_call_s": first, "second_call_s": second}


def op_time(req):
    wall, cpu = C.timed(CASES[req["id"]], req["inner"])
    return {"wall_s": wall, "cpu_s": cpu}


if __name__ == "__main__":
    C.serve({"init": op_init, "net": op_net, "check": op_check, "prepare": op_prepare, "time": op_time})
