"""Checkpoints: round trip, crash safety, resume after SIGKILL / SIGTERM, clear errors.

Training runs happen in subprocesses (a tiny U-Net on 8x8 digits) that share a persistent
XLA compilation cache, so only the first one pays for compilation.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir.training import (
    Checkpointer,
    CheckpointError,
    TrainState,
    load_config,
    override,
    train,
)
from jaxir.training._checkpoint import abstract_state

ROOT = Path(__file__).resolve().parents[1]
K = 3  # save_every
STEPS = 12

CONFIG = f'''
from jaxir.models import UNetConfig
from jaxir.training import DataConfig, LossConfig, OptimConfig, TrainConfig

def get_config():
    return TrainConfig(
        model=UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1,),
                         num_res_blocks=1, attention_resolutions=(), image_size=8, num_groups=4),
        loss=LossConfig(prediction="eps"),
        optim=OptimConfig(lr=1e-3, warmup_steps=2, ema_decay=0.9),
        data=DataConfig(source="digits", image_size=8, batch_size=8, prefetch=2),
        steps={STEPS}, log_every=1, save_every={K}, keep=10, sample_every=0,
        async_save=False)
'''

RUNNER = r'''
import os, sys, time
import numpy as np, jax
import jaxir.training._trainer as T
from jaxir.training import load_config, train
cfg_path, wd, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
if delay > 0:  # slow the loop down so that the parent can signal it mid-run
    class Slow(T.DataLoader):
        def __next__(self):
            time.sleep(delay)
            return super().__next__()
    T.DataLoader = Slow
state = train(load_config(cfg_path), wd, progress=False)
np.savez(os.path.join(wd, "final.npz"), *[np.asarray(x) for x in jax.tree.leaves(state)])
print("FINAL", int(state.step), flush=True)
'''


def _env(cache):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _start(base, wd, delay=0.0):
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(base / "cfg.py"), str(wd), str(delay)],
                            cwd=ROOT, env=_env(base / "xla_cache"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows(wd):
    p = Path(wd) / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _wait_for_step(proc, wd, step, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        rows = _rows(wd)
        if rows and rows[-1]["step"] >= step:
            return rows[-1]["step"]
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the run")


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _final(wd):
    with np.load(Path(wd) / "final.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda s: int(s.split("_")[1]))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A: uninterrupted; B: SIGKILLed after step >= 7, then restarted to the end."""
    base = tmp_path_factory.mktemp("ckpt_runs")
    (base / "cfg.py").write_text(CONFIG)
    a, b = base / "A", base / "B"
    pa = _start(base, a)
    _finish(pa)  # first: fills the compilation cache
    pb = _start(base, b, delay=0.3)
    killed_after = _wait_for_step(pb, b, 7)
    pb.send_signal(signal.SIGKILL)
    pb.wait()
    steps_at_kill = Checkpointer(b / "checkpoints").all_steps()
    tmp_dirs = glob.glob(str(b / "checkpoints" / "*tmp*"))
    out = _finish(_start(base, b))
    return dict(base=base, a=a, b=b, killed_after=killed_after, steps_at_kill=steps_at_kill,
                tmp_dirs=tmp_dirs, out=out)


def test_sigkill_resume_matches_uninterrupted_run(runs):
    a, b = runs["a"], runs["b"]
    # at most K steps lost: the newest committed checkpoint is within K of the last step done
    assert runs["steps_at_kill"], "no checkpoint committed before the kill"
    assert runs["killed_after"] - max(runs["steps_at_kill"]) <= K, runs
    assert f"FINAL {STEPS}" in runs["out"]
    # identical final state: params, optimizer state, EMA, step, rng
    fa, fb = _final(a), _final(b)
    assert len(fa) == len(fb) > 10
    for x, y in zip(fa, fb):
        np.testing.assert_array_equal(x, y)
    # identical data stream: every step's loss (the resumed run re-logs from the checkpoint)
    la = {r["step"]: r["loss"] for r in _rows(a)}
    lb = {r["step"]: r["loss"] for r in _rows(b)}  # later rows (after resume) win
    assert sorted(la) == sorted(lb) == list(range(1, STEPS + 1))
    assert la == lb
    assert max(Checkpointer(b / "checkpoints").all_steps()) == STEPS


def test_sigterm_saves_a_final_checkpoint(runs):
    wd = runs["base"] / "C"
    proc = _start(runs["base"], wd, delay=0.3)
    _wait_for_step(proc, wd, 4)
    proc.send_signal(signal.SIGTERM)
    out = _finish(proc)
    done = int(out.split("FINAL")[1])
    assert 4 <= done < STEPS
    steps = Checkpointer(wd / "checkpoints").all_steps()
    assert max(steps) == done == _rows(wd)[-1]["step"]  # saved at the step boundary, not before


def test_config_mismatch_names_the_key(runs):
    cfg = load_config(str(runs["base"] / "cfg.py"))
    changed = override(cfg, ["model.base_channels=16", "model.num_groups=8"])
    with pytest.raises(CheckpointError) as e:
        train(changed, runs["a"], progress=False)
    msg = str(e.value)
    assert "model.base_channels: 8 in the checkpoint, 16 now" in msg
    assert "params/" in msg and "has shape" in msg and "(8,)" in msg and "(16,)" in msg
    # a change that keeps every shape but changes the model is refused too
    with pytest.raises(CheckpointError, match="model.time_embedding"):
        train(override(cfg, ["model.time_embedding=fourier"]), runs["a"], progress=False)


# ---- in-process: round trip, damage, crash mid-save ------------------------------------------
def _state(v, shape=(64, 64)):
    return TrainState(step=jnp.asarray(v, jnp.int32),
                      params={"w": jnp.full(shape, float(v)), "b": jnp.arange(3.0) * v},
                      opt_state=({"mu": jnp.full(shape, 0.5 * v)}, {"count": jnp.asarray(v)}),
                      ema_params={"w": jnp.full(shape, 0.1 * v), "b": jnp.arange(3.0)},
                      rng=jax.random.key_data(jax.random.key(v)))


def test_round_trip(tmp_path):
    ck = Checkpointer(tmp_path / "ck", keep=2)
    for v in (1, 2, 3):
        ck.save(_state(v), data_state={"epoch": v, "position": 8 * v}, config={"name": f"run{v}"})
    ck.wait()
    assert ck.all_steps() == [2, 3]  # keep=2
    target = abstract_state(_state(0))
    state, data_state, config = Checkpointer(tmp_path / "ck").restore(target)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(_state(3))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert x.dtype == y.dtype
    assert data_state == {"epoch": 3, "position": 24} and config == {"name": "run3"}
    state, data_state, _ = ck.restore(target, step=2)
    assert int(state.step) == 2 and data_state["position"] == 16
    ck.close()


def test_shape_mismatch_names_the_first_differing_key(tmp_path):
    ck = Checkpointer(tmp_path / "ck")
    ck.save(_state(1))
    ck.close()
    with pytest.raises(CheckpointError, match=r"params/w has shape \(64, 64\) in the checkpoint "
                                              r"but \(64, 32\) in the current model"):
        Checkpointer(tmp_path / "ck").restore(_state(0, shape=(64, 32)))


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_checkpoint_gives_a_clear_error(tmp_path, damage):
    ck = Checkpointer(tmp_path / "ck")
    ck.save(_state(1))
    ck.close()
    step_dir = tmp_path / "ck" / "1"
    if damage == "truncate":
        files = glob.glob(str(step_dir / "params" / "d" / "*"))
        assert files
        for f in files:
            with open(f, "r+b") as fh:
                fh.truncate(10)
    else:
        os.remove(step_dir / "params" / "_METADATA")
    with pytest.raises(CheckpointError) as e:
        Checkpointer(tmp_path / "ck").restore(_state(0))
    msg = str(e.value)
    assert str(step_dir) in msg and ("damaged" in msg) and "Traceback" not in msg
    assert len(msg) < 1000


CRASH = r'''
import os, signal, sys
import jax.numpy as jnp
from orbax.checkpoint._src.path import atomicity
from jaxir.training import Checkpointer, TrainState
d = sys.argv[1]
def st(v):
    w = {"w": jnp.full((256, 256), float(v))}
    return TrainState(jnp.asarray(v, jnp.int32), w, {"mu": w["w"] * 0}, w, jnp.zeros((2,), jnp.uint32))
ck = Checkpointer(d)
ck.save(st(1), data_state={"epoch": 0, "position": 8})
ck.wait()
orig = atomicity.AtomicRenameTemporaryPath.finalize
async def crash(self):  # die after step 2's files are written, before the commit (rename)
    if self.get_final().name == "2":
        os.kill(os.getpid(), signal.SIGKILL)
    return await orig(self)
atomicity.AtomicRenameTemporaryPath.finalize = crash
ck.save(st(2), data_state={"epoch": 0, "position": 16})
ck.wait()
print("NOT REACHED")
'''


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path):
    d = tmp_path / "ck"
    r = subprocess.run([sys.executable, "-c", CRASH, str(d)], cwd=ROOT, capture_output=True,
                       text=True, env=_env(tmp_path / "cache"), timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    leftovers = [p.name for p in d.iterdir() if "tmp" in p.name]
    assert leftovers and leftovers[0].startswith("2."), sorted(p.name for p in d.iterdir())
    ck = Checkpointer(d)
    assert ck.all_steps() == [1]
    w = {"w": jnp.zeros((256, 256))}
    target = TrainState(jnp.asarray(0), w, {"mu": w["w"]}, w, jnp.zeros((2,), jnp.uint32))
    state, data_state, _ = ck.restore(target)
    assert int(state.step) == 1 and float(state.params["w"][0, 0]) == 1.0
    assert data_state == {"epoch": 0, "position": 8}
    # and saving step 2 again works
    ck.save(target._replace(step=jnp.asarray(2)))
    ck.close()
    assert Checkpointer(d).all_steps() == [1, 2]


def test_a_tree_layout_checkpoint_resumes_on_the_flat_step(runs, tmp_path):
    """Checkpoints hold the tree layout (one array per parameter, optimizer moment and EMA
    entry), whatever layout the step runs on. A checkpoint written from a tree-layout state
    after 3 steps of the per-leaf step (what the trainer ran and saved before the flat layout)
    resumes in `train`, which steps on the flat layout, and the run ends where the
    uninterrupted run A ends (A ran all 12 steps on the flat layout). Tolerance: the layouts
    differ only in the order of the clip's global-norm sum (tests/test_training.py's flat-layout
    test), i.e. by a uniform relative change δ ≤ γ_P of the clipped gradient, and AdamW's
    update m̂/(√v̂ + ε) is invariant to a uniform scale of the gradients up to ε; what remains
    is rounding of the parameters' own arithmetic (a few ulp per step, ~1e-6 relative over 12
    steps), within rtol 1e-5 / atol 1e-6·max|w|. A resume from the wrong step, data position
    or optimizer moments is off by O(lr) = 1e-3 per coordinate, 1000 times the tolerance."""
    from jaxir.data import DataLoader, get_source
    from jaxir.training import (
        build_loss,
        build_sde,
        config_to_dict,
        init_train_state,
        make_apply_fn,
        make_mesh,
        make_train_step,
    )

    cfg = load_config(str(runs["base"] / "cfg.py"))
    graphdef, state, _, tx, schedule = init_train_state(cfg, make_mesh(1, 1))
    step = jax.jit(make_train_step(build_loss(cfg, build_sde(cfg.sde)), make_apply_fn(graphdef),
                                   tx, ema_decay=cfg.optim.ema_decay, lr_schedule=schedule))
    loader = DataLoader(get_source("digits", size=8), cfg.data.batch_size, seed=cfg.seed,
                        prefetch=0)
    for _ in range(3):
        state, _ = step(state, {"image": jnp.asarray(next(loader)["image"])})
    wd = tmp_path / "old"
    ck = Checkpointer(wd / "checkpoints")
    ck.save(state, data_state=loader.state, config=config_to_dict(cfg))
    ck.close()
    loader.close()
    final = train(cfg, wd, progress=False)
    assert int(final.step) == STEPS
    want = _final(runs["a"])
    got = [np.asarray(x) for x in jax.tree.leaves(final)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * max(np.abs(w).max(), 1.0))
