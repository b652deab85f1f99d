"""Sharded training equals single-device training; fsdp really shards; two-process jax.distributed.

Each check runs in a subprocess: the fake-device flag (XLA_FLAGS) and jax.distributed must be
set up before jax is imported, which the pytest process has already done.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxir.training import make_mesh, param_spec

ROOT = Path(__file__).resolve().parents[1]

COMMON = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jaxir.models import UNetConfig
from jaxir.training import (DataConfig, OptimConfig, TrainConfig, batch_sharding, build_loss,
    build_sde, global_batch, init_train_state, jit_train_step, make_apply_fn, make_mesh,
    make_train_step, step_layout, tree_shardings)
from jaxir.data import DataLoader, get_source

CFG = TrainConfig(
    model=UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1,),
                     num_res_blocks=1, attention_resolutions=(), image_size=8, num_groups=4),
    optim=OptimConfig(lr=1e-3, warmup_steps=0, ema_decay=0.9),
    data=DataConfig(source="digits", image_size=8, batch_size=16), steps=10,
    fsdp_min_size=256)

def run(mesh, steps=2, process_index=0, process_count=1, flat=True):
    """``steps`` train steps as `train` takes them (the flat layout unless fsdp > 1, or the
    tree layout with flat=False); the state comes back in the tree layout, and the layout."""
    graphdef, state, tree_sh, tx, sched = init_train_state(CFG, mesh)
    layout = None
    if flat:
        state, shardings, layout = step_layout(state, tx, mesh, CFG.fsdp_min_size)
    else:
        shardings = tree_sh
    step = make_train_step(build_loss(CFG, build_sde(CFG.sde)), make_apply_fn(graphdef), tx,
                           ema_decay=CFG.optim.ema_decay, layout=layout)
    bsh = batch_sharding(mesh)
    step = jit_train_step(step, shardings, bsh)
    loader = DataLoader(get_source("digits", size=8), 16, seed=0, process_index=process_index,
                        process_count=process_count)
    losses = []
    for _ in range(steps):
        state, m = step(state, global_batch({"image": next(loader)["image"]}, bsh))
        losses.append(float(m["loss"]))
    if layout is not None:
        state = jax.jit(layout.to_tree, out_shardings=tree_sh)(state)
    return state, losses, layout is not None

def host(tree):  # full value of every (possibly sharded / multi-host) leaf
    if jax.process_count() == 1:
        return [np.asarray(x) for x in jax.tree.leaves(tree)]
    from jax.experimental import multihost_utils
    return [np.asarray(x.addressable_data(0)) if x.is_fully_replicated
            else np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for x in jax.tree.leaves(tree)]
'''

SHARDED = COMMON + r'''
assert len(jax.devices()) == 8, jax.devices()
one = make_mesh(1, 1, devices=jax.devices()[:1])
ref, ref_losses, ref_flat = run(one)
tree, tree_losses, _ = run(one, flat=False)
out = {"ref_losses": ref_losses, "ref_flat": ref_flat, "tree_losses": tree_losses,
       "tree_max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(host(tree), host(ref)))}
for name, (d, f) in {"data8": (8, 1), "data4_fsdp2": (4, 2)}.items():
    st, losses, is_flat = run(make_mesh(d, f))
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(host(st), host(ref))]
    flat = jax.tree_util.tree_flatten_with_path(st.params)[0]
    big = max(flat, key=lambda kv: kv[1].size)
    mu = jax.tree.leaves(st.opt_state[1][0].mu)
    out[name] = {"losses": losses, "max_diff": max(diffs), "flat": is_flat,
                 "big_leaf": jax.tree_util.keystr(big[0]), "big_shape": list(big[1].shape),
                 "big_spec": str(big[1].sharding.spec),
                 "big_shard_shape": list(big[1].addressable_shards[0].data.shape),
                 "ema_spec": str(jax.tree.leaves(st.ema_params)[[x.size for x in jax.tree.leaves(st.params)].index(big[1].size)].sharding.spec),
                 "n_sharded": sum("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(st.params)),
                 "n_mu_sharded": sum("fsdp" in str(x.sharding.spec) for x in mu)}
print("RESULT" + json.dumps(out))
'''

DISTRIBUTED = COMMON + r'''
from jaxir.training import initialize_distributed
coord, pid = sys.argv[1], int(sys.argv[2])
initialize_distributed(coord, 2, pid)
print("INIT_OK", flush=True)
assert jax.process_count() == 2 and len(jax.devices()) == 2, (jax.process_count(), jax.devices())
st, losses, _ = run(make_mesh(2, 1), process_index=jax.process_index(), process_count=2)
leaves = host(st.params)
print("RESULT" + json.dumps({"pid": pid, "losses": losses,
                             "checksum": float(sum(np.sum(np.abs(x)) for x in leaves)),
                             "first": leaves[0].ravel()[:4].tolist()}))
jax.distributed.shutdown()
'''

SINGLE_2DEV = COMMON + r'''
st, losses, _ = run(make_mesh(2, 1))
leaves = host(st.params)
print("RESULT" + json.dumps({"losses": losses,
                             "checksum": float(sum(np.sum(np.abs(x)) for x in leaves))}))
'''


AUTOENCODER_2PROC = r'''
import dataclasses, json, sys
import jax, numpy as np
from jaxir.training import initialize_distributed, load_config, train
coord, pid, wd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
initialize_distributed(coord, 2, pid)
print("INIT_OK", flush=True)
cfg = load_config("autoencoder_photos")
cfg = dataclasses.replace(cfg, steps=2, log_every=1, save_every=0, fsdp_min_size=64,
                          model=dataclasses.replace(cfg.model, base_channels=8, num_groups=4),
                          data=dataclasses.replace(cfg.data, batch_size=4))
st = train(cfg, wd, mesh={"data": 1, "fsdp": 2}, progress=False)
from jax.experimental import multihost_utils
full = multihost_utils.process_allgather(st.ema_params, tiled=True)
print("RESULT" + json.dumps({
    "n_sharded": sum("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(st.ema_params)),
    "checksum": float(sum(np.sum(np.abs(np.asarray(x, np.float64))) for x in jax.tree.leaves(full)))}))
jax.distributed.shutdown()
'''


def _env(devices=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _result(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT")]
    return json.loads(lines[-1][len("RESULT"):]) if lines else None


def test_param_spec_rule():
    P = jax_P()
    assert param_spec((3, 3, 64, 128), 2, 1024) == P(None, None, None, "fsdp")
    assert param_spec((256, 6), 4, 1024) == P("fsdp")  # 6 is not divisible by 4
    assert param_spec((3, 5), 2, 1) == P()  # nothing divisible
    assert param_spec((512, 512), 1, 1) == P()  # no fsdp axis
    assert param_spec((16,), 2, 1024) == P()  # below the size threshold


def jax_P():
    from jax.sharding import PartitionSpec

    return PartitionSpec


def test_make_mesh_errors():
    with pytest.raises(ValueError, match="needs 16 devices"):
        make_mesh(8, 2)
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "fsdp")


def test_sharded_step_equals_single_device():
    """Data parallelism (8 devices; the flat layout) and FSDP (4 x 2; the tree layout, kernels
    split over "fsdp") give one device's result, and on one device the flat layout gives the
    tree layout's (both within float32 rounding of a reordered sum: the gradient norm of the
    clipping is one sum over all parameters in the flat layout, a sum of per-leaf sums in the
    tree layout)."""
    r = subprocess.run([sys.executable, "-c", SHARDED], cwd=ROOT, env=_env(8),
                       capture_output=True, text=True, timeout=300)
    out = _result(r.stdout)
    assert out is not None, r.stderr[-3000:]
    assert out["ref_flat"] and out["data8"]["flat"] and not out["data4_fsdp2"]["flat"]
    assert out["tree_max_diff"] < 1e-5
    assert out["tree_losses"] == pytest.approx(out["ref_losses"], rel=1e-5, abs=1e-6)
    for name in ("data8", "data4_fsdp2"):
        res = out[name]
        assert res["max_diff"] < 1e-5, (name, res)
        assert res["losses"] == pytest.approx(out["ref_losses"], rel=1e-5, abs=1e-6)
    assert out["data8"]["n_sharded"] == 0 and "fsdp" not in out["data8"]["big_spec"]
    fs = out["data4_fsdp2"]
    # the largest kernel is split in two along one axis; its Adam moment and EMA follow it
    assert "fsdp" in fs["big_spec"] and fs["ema_spec"] == fs["big_spec"], fs
    assert sorted(fs["big_shard_shape"]) != sorted(fs["big_shape"])
    assert fs["n_sharded"] > 0 and fs["n_mu_sharded"] == fs["n_sharded"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(script, *args, devices=None):
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_process_results(script, *args, also=()):
    """Run ``script coord pid *args`` as processes 0 and 1 of one jax.distributed job; return
    both RESULT dicts. Skips when jax.distributed cannot start here; fails on a timeout
    (killing ``also`` too) or a missing RESULT."""
    coord = f"127.0.0.1:{_free_port()}"
    procs = [_spawn(script, coord, str(i), *args) for i in range(2)]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300))
        except subprocess.TimeoutExpired:
            for q in (*procs, *also):
                q.kill()
            pytest.fail("two-process run timed out")
    errs = [e.strip().splitlines()[-1] if e.strip() else f"rc={p.returncode}"
            for (_, e), p in zip(outs, procs)]
    if not all("INIT_OK" in o for o, _ in outs):  # jax.distributed itself is unavailable
        pytest.skip(f"multi-process jax.distributed on CPU failed here: {errs}")
    results = [_result(o) for o, _ in outs]
    assert all(r is not None for r in results), [e[-3000:] for _, e in outs]
    return results


def test_two_process_distributed_training():
    # the reference: one process with two devices (same global batches, same math)
    single = _spawn(SINGLE_2DEV, devices=2)
    a, b = _two_process_results(DISTRIBUTED, also=(single,))
    ref_out, ref_err = single.communicate(timeout=300)
    assert a["checksum"] == b["checksum"] and a["first"] == b["first"]
    assert a["losses"] == b["losses"]
    ref = _result(ref_out)
    assert ref is not None, ref_err[-3000:]
    assert a["losses"] == pytest.approx(ref["losses"], rel=1e-5)
    assert a["checksum"] == pytest.approx(ref["checksum"], rel=1e-5)


def test_two_process_fsdp_autoencoder_export(tmp_path):
    """Stage 1 of latent diffusion on two processes with FSDP-sharded kernels: the export of
    ``autoencoder.npz`` gathers the params across hosts (process 0 alone cannot read them) and
    writes exactly the trained EMA params."""
    from jaxir.latent import load_autoencoder

    wd = str(tmp_path / "ae")
    results = _two_process_results(AUTOENCODER_2PROC, wd)
    assert results[0]["n_sharded"] > 0  # the kernels really were split across the processes
    saved = load_autoencoder(wd)
    checksum = float(sum(np.sum(np.abs(np.asarray(x, np.float64)))
                         for x in jax.tree.leaves(saved.params)))
    assert checksum == pytest.approx(results[0]["checksum"], rel=1e-6)
    assert results[0]["checksum"] == results[1]["checksum"]
