"""What both workers share (numpy only, imported from each framework's venv).

The toy network, written once here as a specification and twice in the workers::

    emb  = [sin(t f), cos(t f)],  f_k = 10000^(-k/16), k = 0..15     (t: DDPM index 0..999)
    temb = dense2(silu(dense1(emb)))                                  (32 -> 64 -> CH)
    h    = silu(conv1(x) + temb[:, :, None, None])                    (3x3, 3 -> CH)
    h    = silu(conv2(h))                                             (3x3, CH -> CH)
    eps  = conv3(h)                                                   (3x3, CH -> 3)

and the trivial network ``eps = 0.9 x + 1e-3 t``, where the sampler's own work dominates.
Weights are stored in an ``.npz`` in PyTorch layout (conv ``(O, I, kh, kw)``, linear
``(out, in)``); the JAX worker transposes them to Flax layout. Images are NCHW on the
torch side and NHWC on the JAX side; arrays crossing between them are NCHW.

The workers speak one JSON object per line: requests on stdin, replies on the original
stdout (everything the frameworks print goes to stderr).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback

import numpy as np

IMG = (3, 32, 32)  # C, H, W
CH = 32
EMB = 32
HID = 64
N_TRAIN = 1000
BETA = (1e-4, 0.02)


def make_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """He-style initialisation, scaled so the toy ε has O(1) entries."""
    rng = np.random.default_rng(seed)

    def conv(o, i, gain=1.0):
        return (rng.standard_normal((o, i, 3, 3)) * gain * math.sqrt(2.0 / (9 * i))).astype(np.float32)

    def lin(o, i):
        return (rng.standard_normal((o, i)) * math.sqrt(1.0 / i)).astype(np.float32)

    c = IMG[0]
    return {
        "conv1.weight": conv(CH, c), "conv1.bias": (0.1 * rng.standard_normal(CH)).astype(np.float32),
        "conv2.weight": conv(CH, CH), "conv2.bias": (0.1 * rng.standard_normal(CH)).astype(np.float32),
        "conv3.weight": conv(c, CH, 0.5), "conv3.bias": np.zeros(c, np.float32),
        "dense1.weight": lin(HID, EMB), "dense1.bias": np.zeros(HID, np.float32),
        "dense2.weight": lin(CH, HID), "dense2.bias": np.zeros(CH, np.float32),
    }


def emb_freqs() -> np.ndarray:
    half = EMB // 2
    return np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half).astype(np.float32)


def x_T(seed: int, batch: int) -> np.ndarray:
    """The initial noise, NCHW float32, from numpy (so both frameworks start from the same x_T)."""
    return np.random.default_rng(1000 + seed).standard_normal((batch, *IMG)).astype(np.float32)


def settle_malloc() -> None:
    """Allocate and free one 30 MiB buffer, as loading any real model does.

    glibc serves large blocks with mmap and raises that threshold (up to 32 MiB) when such a
    block is freed. Until it is raised past the size of the activations, every network call
    maps and unmaps its buffers: torch's batch-64 forward ran 2.4× slower that way (seconds
    of system time). Both workers call this first, so neither timing depends on what the
    process happened to allocate before.
    """
    buf = np.ones(30 << 20, np.uint8)
    del buf


def serve(handlers: dict) -> None:
    """Answer JSON-line requests ``{"op": name, ...}`` with ``handlers[name](req) -> dict``."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by the frameworks goes to stderr
    sys.stdout = sys.stderr
    settle_malloc()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            rep = handlers[req["op"]](req)
            rep["ok"] = True
        except Exception as e:  # report to the driver instead of dying silently
            rep = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        out.write(json.dumps(rep) + "\n")


def timed(fn, inner: int):
    """Wall and process-CPU seconds per call of ``fn`` (``inner`` calls in a row)."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(inner):
        fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return (t1 - t0) / inner, (c1 - c0) / inner
