"""jaxir side of the side-by-side benchmark (runs in jaxir's venv; see README.md).

jaxir.samplers.ddpm_sample / ddim_sample on a DiscreteVPSDE (linear β 1e-4..0.02, 1000
steps), jitted as a whole (the loop is a lax.scan), with the toy network as a Flax NNX
module whose weights come from the shared .npz.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import _common as C  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxir import samplers, schedules, sdes  # noqa: E402

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(C.N_TRAIN, *C.BETA))
FREQS = jnp.asarray(C.emb_freqs())


class ToyNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        c = C.IMG[0]
        self.conv1 = nnx.Conv(c, C.CH, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(C.CH, C.CH, (3, 3), padding="SAME", rngs=rngs)
        self.conv3 = nnx.Conv(C.CH, c, (3, 3), padding="SAME", rngs=rngs)
        self.dense1 = nnx.Linear(C.EMB, C.HID, rngs=rngs)
        self.dense2 = nnx.Linear(C.HID, C.CH, rngs=rngs)

    def __call__(self, x, t):  # x (B, H, W, C) NHWC, t (B,) float DDPM index
        a = t[:, None] * FREQS[None, :]
        emb = jnp.concatenate([jnp.sin(a), jnp.cos(a)], axis=-1)
        temb = self.dense2(jax.nn.silu(self.dense1(emb)))
        h = jax.nn.silu(self.conv1(x) + temb[:, None, None, :])
        h = jax.nn.silu(self.conv2(h))
        return self.conv3(h)


def load_net(path):
    w = np.load(path)
    net = ToyNet(nnx.Rngs(0))
    for name in ("conv1", "conv2", "conv3"):
        layer = getattr(net, name)
        layer.kernel.value = jnp.asarray(w[f"{name}.weight"].transpose(2, 3, 1, 0))  # OIhw -> hwIO
        layer.bias.value = jnp.asarray(w[f"{name}.bias"])
    for name in ("dense1", "dense2"):
        layer = getattr(net, name)
        layer.kernel.value = jnp.asarray(w[f"{name}.weight"].T)
        layer.bias.value = jnp.asarray(w[f"{name}.bias"])
    return net


def trivial(x, t):
    return 0.9 * x + 1e-3 * t.reshape((-1,) + (1,) * (x.ndim - 1))


NET = {}
CASES = {}


def nhwc(a):
    return jnp.asarray(np.ascontiguousarray(a.transpose(0, 2, 3, 1)))


def nchw(a):
    return np.asarray(a).transpose(0, 3, 1, 2)


def make_sampler(net_name, sampler, steps, clip=None):
    graphdef, state = nnx.split(NET["toy"])

    def sample(state, key, x_init):
        if net_name == "toy":
            net = nnx.merge(graphdef, state)
        else:
            net = trivial

        def model_fn(x, t, cond):  # jaxir passes t = (i + 1) / N; the network wants the index i
            i = SDE.time_to_index(t).astype(jnp.float32)
            return net(x, jnp.broadcast_to(i, (x.shape[0],)))

        if sampler == "forward":  # the network alone, jitted, at t = 500
            return model_fn(x_init, SDE.index_to_time(500), None)
        if sampler == "ddim":
            return samplers.ddim_sample(key, model_fn, SDE, x_init=x_init, num_steps=steps, eta=0.0,
                                        clip_x0=False if clip is None else clip).x
        return samplers.ddpm_sample(key, model_fn, SDE, x_init=x_init, num_steps=steps,
                                    clip_x0=True if clip is None else clip).x

    return jax.jit(sample), state


def op_init(req):
    NET["toy"] = load_net(req["weights"])
    import flax
    import jaxlib
    return {"versions": {"python": sys.version.split()[0], "jax": jax.__version__,
                         "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                         "numpy": np.__version__},
            "devices": [str(d) for d in jax.devices()],
            "affinity": sorted(os.sched_getaffinity(0))}


def op_net(req):
    d = np.load(req["in"])
    x, t = nhwc(d["x"]), jnp.asarray(d["t"], jnp.float32)
    np.savez(req["out"], toy=nchw(NET["toy"](x, t)), trivial=nchw(trivial(x, t)))
    return {}


def op_check(req):
    """DDIM (η = 0) or DDPM from the given x_T; DDPM also returns the noise jaxir drew."""
    d = np.load(req["in"])
    x = nhwc(d["x"])
    f, state = make_sampler("toy", req["sampler"], req["steps"])
    key = jax.random.key(req["seed"])
    out = {"x": nchw(f(state, key, x))}
    if req["sampler"] == "ddpm":
        # the same split as jaxir.samplers._ancestral._run: k_init, k_steps = split(key);
        # keys = split(k_steps, steps); step k draws normal(keys[k], x.shape)
        _, k_steps = jax.random.split(key)
        keys = jax.random.split(k_steps, req["steps"])
        z = jax.vmap(lambda k: jax.random.normal(k, x.shape, x.dtype))(keys)
        out["noise"] = np.asarray(z).transpose(0, 1, 4, 2, 3)
    np.savez(req["out"], **out)
    return {}


def op_prepare(req):
    c = req["case"]
    f, state = make_sampler(c["net"], c["sampler"], c["steps"])
    x = nhwc(C.x_T(c["seed"], c["batch"]))
    key = jax.random.key(c["seed"])
    t0 = time.perf_counter()
    f(state, key, x).block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    f(state, key, x).block_until_ready()
    second = time.perf_counter() - t0
    CASES[c["id"]] = lambda: f(state, key, x).block_until_ready()
    return {"first_call_s": first, "second_call_s": second}


def op_time(req):
    wall, cpu = C.timed(CASES[req["id"]], req["inner"])
    return {"wall_s": wall, "cpu_s": cpu}


if __name__ == "__main__":
    C.serve({"init": op_init, "net": op_net, "check": op_check, "prepare": op_prepare, "time": op_time})
