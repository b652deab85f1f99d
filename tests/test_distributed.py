"""jaxir.distributed: the same key gives the same samples on any number of devices and hosts.

One subprocess with 8 fake CPU devices builds meshes of 1, 2, 4 and 8 of them and draws, with
one key, 12 examples (per_device=2, so the meshes run 6, 3, 2 and 1 blocks, the last two with
padding) of an unconditional sampler (DDIM), a posterior sampler (DDRM, 2x super-resolution,
one y per example) and a learned restoration sampler (SR3: `restore_learned`, a conditional
U-Net); two processes joined by `jax.distributed` (one CPU device each) draw them again on
their two-device mesh. All must be **bitwise** equal, and equal to float rounding to each
example sampled alone (`fold_in(key, i)` on a batch of one, no mesh at all). The same runs
check `start=` (a run resumed at example 5), `gather=False` (each process's own rows), FID
feature moments over every mesh and merged across the two processes against `feature_stats` of
all the features, a PSNR / SSIM table gathered on process 0 (`gather_rows`), patch-wise
restoration on 1 and 8 devices, and the GMM benchmark mapped over 2 and 4 devices. In process:
`jaxir sample --out-dir` killed and resumed, `jaxir restore` / `jaxir evaluate --mesh` resumed;
and in two processes `jaxir sample --coordinator` (process 0 writes the one-device shards) and
`jaxir evaluate --coordinator` (the table gathered on process 0).

The fake-device flag and jax.distributed must be set before jax is imported, hence the
subprocesses (spawned with tests/test_sharding.py's helpers). The whole file: ~200 s of CPU
time (subprocesses included); 2 min wall on the shared 2 cores at a light load, 8-9 min at a
load average of 16 (each test's docstring has its share).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import distributed
from jaxir.metrics import FeatureMoments, feature_stats
from test_sharding import ROOT, _env, _result, _spawn, _two_process_results

EPS32 = float(np.finfo(np.float32).eps)
FTOL = 4 * 12 * float(np.finfo(np.float64).eps) * 4.0**2  # see the FID checks

# ---- what every subprocess computes ------------------------------------------------------------
COMMON = r'''
import dataclasses, hashlib, json, sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jaxir import distributed, operators
from jaxir.inverse import ddrm_sample
from jaxir.models import UNet, UNetConfig, make_model_fn, split_model
from jaxir.restore import LearnedModel
from jaxir.samplers import ddim_sample
from jaxir.training import build_sde, load_config

N = 12
UCFG = UNetConfig(in_channels=1, out_channels=1, base_channels=8, channel_mults=(1,),
                  num_res_blocks=1, attention_resolutions=(), image_size=8, num_groups=4)

def setup():
    gd, params = split_model(UNet(UCFG, rngs=nnx.Rngs(0)))
    cfg = load_config("sr3_photos")
    sde = build_sde(cfg.sde)
    scfg = dataclasses.replace(UCFG, cond_channels=1)
    gd2, p2 = split_model(UNet(scfg, rngs=nnx.Rngs(1)))
    learned = LearnedModel(make_model_fn(gd2, p2), sde, dataclasses.replace(
        cfg, model=scfg, data=dataclasses.replace(cfg.data, image_size=8, random_crop=None)))
    rng = np.random.default_rng(0)
    y = np.tanh(rng.normal(size=(N, 4, 4, 1))).astype(np.float32)
    lq = np.tanh(rng.normal(size=(N, 8, 8, 1))).astype(np.float32)
    return make_model_fn(gd, params), sde, learned, y, lq

KEYS = {"ddim": 0, "ddrm": 1, "sr3": 2}

def draw(kind, mesh, per_device=2, start=0, n=N, gather=True):
    key = jax.random.key(KEYS[kind])
    kw = dict(mesh=mesh, per_device=per_device, start=start, gather=gather)
    if kind == "ddim":
        return distributed.sample(ddim_sample, key, MF, SDE, n, (8, 8, 1), num_steps=3,
                                  eta=0.5, **kw)
    if kind == "ddrm":
        return distributed.posterior_sample(ddrm_sample, key, MF, SDE, OP, Y[start:start + n],
                                            0.1, num_steps=3, **kw)
    return distributed.restore_learned(LEARNED, LQ[start:start + n], key, steps=3, **kw)

def digest(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(a.tobytes()).hexdigest()[:16] + str(a.shape)

FEAT_W = np.random.default_rng(5).normal(size=(64, 6)).astype(np.float32)
IMAGES = np.random.default_rng(6).normal(size=(N, 8, 8, 1)).astype(np.float32)

def features(x):  # a traceable (B, 8, 8, 1) -> (B, 6) feature map
    return jnp.tanh(x.reshape(x.shape[0], -1) @ FEAT_W) + 3.0

def table(indices, xs):  # a PSNR / SSIM row per restored image (against its LQ input; SSIM on
    from jaxir.metrics import psnr, ssim  # 2x nearest upsampling: it needs 11 x 11 windows)
    up = lambda a: jnp.repeat(jnp.repeat(jnp.asarray(a)[None], 2, 1), 2, 2)
    return [{"image": int(i), "psnr": float(psnr(x, LQ[i])), "ssim": float(ssim(up(x), up(LQ[i]))[0])}
            for i, x in zip(indices, xs)]
'''

SETUP = r'''
MF, SDE, LEARNED, Y, LQ = setup()  # after jax.distributed.initialize where there is one
OP = operators.SuperResolution((8, 8, 1), 2)
'''

MESHES = COMMON + SETUP + r'''
assert len(jax.devices()) == 8, jax.devices()
out = {"samples": {}, "nfe": {}}
full = {}
for kind in KEYS:
    for d in (1, 2, 4, 8):
        r = draw(kind, d)
        full[kind, d] = r.x
        out["samples"][f"{kind}/{d}"] = digest(r.x)
        out["nfe"][kind] = int(r.nfe)
        out.setdefault("finite", []).append(bool(r.finite))
    # each example alone: fold_in(key, i), a batch of one, plain jit (no vmap, no mesh)
    key = jax.random.key(KEYS[kind])
    if kind == "ddim":
        one = jax.jit(lambda k, y: ddim_sample(k, MF, SDE, (1, 8, 8, 1), num_steps=3, eta=0.5).x)
    elif kind == "ddrm":
        one = jax.jit(lambda k, y: ddrm_sample(k, MF, SDE, OP, y, 0.1, (1, 8, 8, 1), num_steps=3).x)
    else:
        from jaxir.restore import restore_learned
        one = jax.jit(lambda k, y: restore_learned(LEARNED, y, k, steps=3).x)
    src = LQ if kind == "sr3" else Y
    alone = np.stack([np.asarray(one(jax.random.fold_in(key, i), src[i:i + 1])[0]) for i in range(N)])
    out.setdefault("alone_maxdiff", {})[kind] = float(np.max(np.abs(alone - full[kind, 1])))
    out.setdefault("scale", {})[kind] = float(np.max(np.abs(full[kind, 1])))
    # resumed at example 5 on 8 devices; this process's rows without gathering
    out["samples"][f"{kind}/start5"] = digest(draw(kind, 8, start=5, n=N - 5).x)
    out["samples"][f"{kind}/full_5:"] = digest(full[kind, 1][5:])
    loc = draw(kind, 4, gather=False)
    out["samples"][f"{kind}/local"] = digest(loc.values.x)
    out.setdefault("local_indices", loc.indices.tolist())
# FID feature moments over each mesh
moms = [distributed.feature_moments(features, IMAGES, mesh=d, per_device=2) for d in (1, 2, 4, 8)]
ref_mu, ref_cov = [np.asarray(a) for a in __import__("jaxir.metrics", fromlist=["x"]).feature_stats(np.asarray(features(jnp.asarray(IMAGES)), np.float64))]
out["fid_stats"] = [[float(np.max(np.abs(m.stats()[0] - ref_mu))), float(np.max(np.abs(m.stats()[1] - ref_cov)))] for m in moms]
out["fid_counts"] = [m.count for m in moms]
out["table"] = table(range(N), full["sr3", 1])
# patch-wise restoration (DDRM, 4x SR, the tiny 16-px prior of argv[1]) on 1 and 8 devices,
# and the one-device function with one window per call (the same keys: fold_in(key, w))
from jaxir.priors import load_prior
from jaxir.restore import restore_images
PRIOR = load_prior(sys.argv[1])
YR = np.random.default_rng(7).uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32)
rest = {d: distributed.restore_images(YR, "sr4", "ddrm", prior=PRIOR, steps=2, samples=1,
                                      mesh=d, per_device=1) for d in (1, 8)}
one_dev = restore_images(YR, "sr4", "ddrm", prior=PRIOR, steps=2, samples=1, batch_size=1)
out["restore"] = {"equal_1_8": bool(np.array_equal(rest[1], rest[8])), "shape": list(rest[1].shape),
                  "maxdiff_one_device": float(np.max(np.abs(rest[1] - one_dev)))}
# the GMM benchmark over 1 and 4 devices, and serially
from jaxir.bench.gmm import run_gmm_benchmark, make_problem, pad_problem, gmm_sde, METHODS
from jaxir.bench._gmm_devices import run_on_devices
kw = dict(dim=4, dys=(1, 2), num_problems=2, methods=("ddrm",), num_samples=32,
          num_reference=200, num_steps=10, num_projections=20)
serial = run_gmm_benchmark(**kw)
on4 = run_gmm_benchmark(**kw, mesh=4)
probs = {dy: [make_problem(jax.random.key(1000 * dy + i), 4, dy) for i in range(2)] for dy in (1, 2)}
keys = {(dy, i): jax.random.fold_in(jax.random.key(101 * dy), i) for dy in (1, 2) for i in range(2)}
sde = gmm_sde(10)
pad = {(dy, i): pad_problem(probs[dy][i], 2) for dy, i in keys}
m2 = run_on_devices(METHODS, ["ddrm"], pad, keys, sde, 32, 10, 0.6, 2)
m4 = run_on_devices(METHODS, ["ddrm"], pad, keys, sde, 32, 10, 0.6, 4)
one_run = jax.jit(lambda key, p: METHODS["ddrm"](key, p, sde, 32, 10, 0.6))
direct = {k: np.asarray(one_run(keys[k], pad[k])) for k in keys}
out["gmm"] = {"mesh2_eq_mesh4": all(np.array_equal(m2["ddrm", dy, i][0], m4["ddrm", dy, i][0]) for dy, i in keys),
              "max_dx_vs_serial": max(float(np.max(np.linalg.norm(m4["ddrm", dy, i][0] - direct[dy, i], axis=-1))) for dy, i in keys),
              "rows": [[a["sw"], b["sw"]] for a, b in zip(serial, on4)],
              "same_keys": [[a[k] for k in ("method", "dy", "problem")] == [b[k] for k in ("method", "dy", "problem")] for a, b in zip(serial, on4)]}
print("RESULT" + json.dumps(out))
'''

TWO_PROCESSES = COMMON + r'''
from jaxir.training import initialize_distributed
coord, pid = sys.argv[1], int(sys.argv[2])
initialize_distributed(coord, 2, pid)
print("INIT_OK", flush=True)
assert jax.process_count() == 2 and len(jax.devices()) == 2
''' + SETUP + r'''
out = {"pid": pid, "samples": {}}
for kind in KEYS:
    out["samples"][f"{kind}/2proc"] = digest(draw(kind, None).x)
    loc = draw(kind, None, gather=False)
    out[f"{kind}/local_indices"] = loc.indices.tolist()
    out[f"{kind}/local"] = digest(loc.values.x)
# rows 0..6 on process 0, 7..11 on process 1; moments merged across the two processes
feats = np.asarray(features(jnp.asarray(IMAGES)), np.float64)
mine = feats[:7] if pid == 0 else feats[7:]
from jaxir.metrics import FeatureMoments, allreduce_feature_moments, allgather_features
merged = allreduce_feature_moments(FeatureMoments.of(mine))
mu, cov = merged.stats()
out["moments"] = {"count": merged.count, "mu": mu.tolist(), "cov": cov.tolist()}
out["gathered_features"] = digest(allgather_features(mine))
sharded = distributed.feature_moments(features, IMAGES, per_device=2)
out["sharded_moments"] = {"count": sharded.count, "mu": sharded.stats()[0].tolist(),
                          "cov": sharded.stats()[1].tolist()}
# the PSNR / SSIM table of each process's own SR3 restorations, gathered on process 0
out["rows"] = distributed.gather_rows(table(loc.indices, loc.values.x))
print("RESULT" + json.dumps(out))
jax.distributed.shutdown()
'''


def _features_np():
    rng_w = np.random.default_rng(5).normal(size=(64, 6)).astype(np.float32)
    imgs = np.random.default_rng(6).normal(size=(12, 8, 8, 1)).astype(np.float32)
    return np.asarray(jnp.tanh(jnp.asarray(imgs).reshape(12, -1) @ rng_w) + 3.0, np.float64)


def test_same_samples_on_1_2_4_8_devices_and_two_processes(tmp_path):
    """Bitwise-equal DDIM / DDRM / SR3 draws on meshes of 1, 2, 4, 8 fake devices, in two
    processes, and example by example; resumed runs, local rows, FID moments, the PSNR / SSIM
    table gathered on process 0, patch-wise restoration and the GMM grid. ~110 s of CPU time
    (subprocesses included; mostly compiling 3 samplers x 5 programs); 55 s wall at a light
    load, 5 min at the team's heaviest (load average 16 on 2 cores). The 8-device and two-process runs overlap."""
    from test_restore import write_tiny_prior

    meshes = _spawn(MESHES, str(write_tiny_prior(tmp_path / "tiny16.npz")), devices=8)
    try:
        procs = _two_process_results(TWO_PROCESSES, also=(meshes,))
    except pytest.skip.Exception:
        procs = None
    m_out, m_err = meshes.communicate(timeout=600)
    res = _result(m_out)
    assert res is not None, m_err[-3000:]
    s = res["samples"]
    for kind in ("ddim", "ddrm", "sr3"):
        ref = s[f"{kind}/1"]
        for d in (2, 4, 8):
            assert s[f"{kind}/{d}"] == ref, (kind, d)
        # each example on its own (plain jit, no vmap): the same example to float32 rounding
        # (the vmapped program is compiled apart; DDIM and SR3 were bitwise equal, DDRM's
        # spectral transforms not): 64 ulp of the largest value over 3 steps
        assert res["alone_maxdiff"][kind] <= 64 * EPS32 * res["scale"][kind], kind
        assert s[f"{kind}/start5"] == s[f"{kind}/full_5:"], kind  # resumed at example 5
        assert s[f"{kind}/local"] == ref, kind  # one process: its rows are all rows
    assert res["local_indices"] == list(range(12))
    assert res["nfe"] == {"ddim": 3, "ddrm": 3, "sr3": 3}
    assert all(res["finite"])
    # FID statistics: feature_stats of all rows to float64 rounding: the features lie in [2, 4]
    # (tanh + 3), and both two-pass formulas carry at most ~N eps max|f|² of error
    for dmu, dcov in res["fid_stats"]:
        assert dmu <= FTOL and dcov <= FTOL
    assert res["fid_counts"] == [12] * 4
    # patch-wise restoration: the same windows on 1 and 8 devices; the one-device function
    # restoring one window per call draws them with the same keys (rounding apart: 64 ulp)
    r = res["restore"]
    assert r["equal_1_8"] and r["shape"] == [2, 24, 20, 3]
    assert r["maxdiff_one_device"] <= 64 * EPS32
    g = res["gmm"]
    assert g["mesh2_eq_mesh4"] and all(g["same_keys"])
    # the sliced distance is 1-Lipschitz in the sample positions (same projections): the
    # mapped rows differ from the serial ones by at most the largest sample displacement
    for a, b in g["rows"]:
        assert abs(a - b) <= g["max_dx_vs_serial"] + 1e-5 * max(abs(a), 1.0)
    if procs is None:
        pytest.skip("jax.distributed unavailable here; the single-process meshes passed")
    a, b = procs
    for kind in ("ddim", "ddrm", "sr3"):
        assert a["samples"][f"{kind}/2proc"] == b["samples"][f"{kind}/2proc"] == s[f"{kind}/1"]
        # each process holds its own rows (per_device=2, two devices: blocks of 4 rows)
        assert a[f"{kind}/local_indices"] == [0, 1, 4, 5, 8, 9]
        assert b[f"{kind}/local_indices"] == [2, 3, 6, 7, 10, 11]
    feats = _features_np()
    mu, cov = feature_stats(feats)
    for p in (a, b):
        for key in ("moments", "sharded_moments"):
            assert p[key]["count"] == 12
            np.testing.assert_allclose(p[key]["mu"], mu, rtol=0, atol=FTOL)
            np.testing.assert_allclose(p[key]["cov"], cov, rtol=0, atol=FTOL)
    assert a["gathered_features"] == b["gathered_features"]
    # process 0 holds the whole table (each process's rows, in process order), equal to the
    # one-process table; the other process gets None
    assert sorted(a["rows"], key=lambda r: r["image"]) == res["table"]
    assert [r["image"] for r in a["rows"]] == [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]
    assert b["rows"] is None


# ---- in-process checks (one device) -------------------------------------------------------------


def test_feature_moments_merge_is_stable_and_exact():
    """Chan et al.'s merge of any split equals np.cov of all rows to float64 rounding, even with
    a mean 1e4 times the spread, where accumulating Σ f fᵀ would cancel 8 digits (the naive
    estimate is checked to be that far off, so this test tells the two apart). <0.1 s."""
    rng = np.random.default_rng(0)
    f = 1e4 + rng.normal(size=(1001, 5))
    mu, cov = feature_stats(f)
    for cuts in ([500], [1, 2, 3, 999], [0, 0, 1000], list(range(100, 1000, 100))):
        parts = np.split(f, cuts)
        m = FeatureMoments.of(parts[0])
        for p in parts[1:]:
            m = m.add(p)
        got_mu, got_cov = m.stats()
        assert m.count == 1001
        np.testing.assert_allclose(got_mu, mu, rtol=1e-15 * 10)
        # the covariance's entries are O(1); two-pass np.cov and the merge both carry errors
        # ~N eps |entries| relative to the O(1e8) squared mean removed only once per part
        np.testing.assert_allclose(got_cov, cov, rtol=0, atol=1e-9)
    naive = (f.T @ f - 1001 * np.outer(mu, mu)) / 1000
    assert np.max(np.abs(naive - cov)) > 1e-8  # the cancellation the merge avoids (~4e-7)
    with pytest.raises(ValueError, match="at least 2"):
        FeatureMoments.of(f[:1]).stats()
    with pytest.raises(ValueError, match="dimensions differ"):
        FeatureMoments.of(f).merge(FeatureMoments.of(f[:, :2]))


def test_map_examples_contract_on_one_device():
    """Keys are fold_in(key, global index) whatever the block size; padding is dropped;
    on_block sees every block; bad arguments are ValueErrors naming them. ~2 s."""
    key = jax.random.key(3)

    def fn(k, x):
        return {"z": jax.random.normal(k, (2,)), "x2": 2.0 * x}

    x = np.arange(7, dtype=np.float32)
    seen = []
    out = distributed.map_examples(fn, key, inputs=x, per_device=3,
                                   on_block=lambda first, v: seen.append((first, len(v["z"]))))
    want = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(key, i), (2,)))
                     for i in range(7)])
    np.testing.assert_array_equal(out["z"], want)
    np.testing.assert_array_equal(out["x2"], 2 * x)
    assert seen == [(0, 3), (3, 3), (6, 1)]
    later = distributed.map_examples(fn, key, inputs=x[4:], start=4, per_device=2)
    np.testing.assert_array_equal(later["z"], want[4:])
    loc = distributed.map_examples(fn, key, inputs=x, per_device=4, gather=False)
    assert loc.indices.tolist() == list(range(7))
    np.testing.assert_array_equal(loc.values["z"], want)
    with pytest.raises(ValueError, match="n must be"):
        distributed.map_examples(fn, key)
    with pytest.raises(ValueError, match="but inputs have"):
        distributed.map_examples(fn, key, 3, inputs=x)
    with pytest.raises(ValueError, match="per_device"):
        distributed.map_examples(fn, key, inputs=x, per_device=0)
    with pytest.raises(ValueError, match="start"):
        distributed.map_examples(fn, key, inputs=x, start=-1)
    with pytest.raises(ValueError, match="needs 2 devices"):
        distributed.map_examples(fn, key, inputs=x, mesh=2)
    with pytest.raises(ValueError, match="mesh must be"):
        distributed.as_mesh("data=8")


def test_hoisted_parameters_are_arguments_not_constants():
    """Arrays a sampler closes over reach the compiled block as arguments: a 4 MB parameter is
    a hoisted constant of the traced program (not inline data), and other parameter values
    reuse the compiled block. ~1 s."""
    w1 = jnp.asarray(np.random.default_rng(0).normal(size=(1000, 1000)) * 0.01, jnp.float32)

    def make(w):  # a fresh closure per call, as the wrappers (sample, ...) build them
        return lambda k, x: jnp.tanh(x @ w)[:3] + jax.random.normal(k, (3,))

    x = np.ones((4, 1000), np.float32)
    jaxpr, consts, _ = distributed._map._hoist(make(w1), (jax.random.key(0), x[0]))
    assert any(getattr(c, "shape", None) == (1000, 1000) for c in consts)
    assert len(str(jaxpr)) < 20_000  # 4 MB of weights would print as far more
    before = len(distributed._map._COMPILED)
    a = distributed.map_examples(make(w1), jax.random.key(0), inputs=x, per_device=2)
    run = next(reversed(distributed._map._COMPILED.values()))
    assert len(distributed._map._COMPILED) == before + 1
    b = distributed.map_examples(make(2 * w1), jax.random.key(0), inputs=x, per_device=2)
    assert len(distributed._map._COMPILED) == before + 1  # the same program: reused
    assert run._cache_size() == 1
    # the same noise, the new weights
    np.testing.assert_allclose(b - a, np.tanh(x @ (2 * np.asarray(w1)))[:, :3]
                               - np.tanh(x @ np.asarray(w1))[:, :3], atol=1e-5)


# ---- jaxir sample --out-dir: killed, resumed, the same files ------------------------------------


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    import dataclasses

    from jaxir.training import load_config, train

    wd = tmp_path_factory.mktemp("dist") / "digits"
    cfg = load_config("digits_tiny")
    train(dataclasses.replace(cfg, steps=1, log_every=1, save_every=0), str(wd), progress=False)
    return wd


def _shards(folder):
    out = {}
    for p in sorted(folder.glob("samples_*.npz")):
        with np.load(p) as z:
            out[p.name] = {k: z[k] for k in z.files}
    return out


def test_cli_sample_killed_and_resumed_writes_the_same_files(tiny_workdir, tmp_path, capsys):
    """``jaxir sample --n 64 --out-dir D --shard-size 16`` on 2 fake devices, SIGKILLed by the
    test hook right after its first shard; a stale half-written file is planted; the rerun (one
    device, in process) writes only shards 1–3, leaves shard 0 untouched and removes the stale
    file, and the four shards equal those of an uninterrupted run. ~25 s of CPU time (a 1-step
    training, one subprocess); 85 s wall under the team's load."""
    from jaxir.cli import main

    d = tmp_path / "resumed"
    args = ["sample", "--workdir", str(tiny_workdir), "--n", "64", "--steps", "2",
            "--sampler", "ddpm", "--shard-size", "16", "--seed", "3"]
    env = dict(JAXIR_TEST_KILL_AFTER_SHARDS="1")
    code = (f"import sys; from jaxir.cli import main; "
            f"sys.exit(main({args + ['--out-dir', str(d), '--mesh', 'data=2']!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**_env(2), **env},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == -9, r.stderr[-2000:]  # killed, not a clean exit
    assert sorted(x.name for x in d.iterdir()) == ["manifest.json", "samples_00000.npz"]
    first = (d / "samples_00000.npz").stat()
    (d / ".samples_00001.npz.tmp1234.npz").write_bytes(b"half a file")
    assert main(args + ["--out-dir", str(d)]) == 0
    text = capsys.readouterr().out
    assert "3 written now, 1 already there" in text
    assert sorted(x.name for x in d.iterdir()) == ["manifest.json"] + [
        f"samples_0000{s}.npz" for s in range(4)]
    again = (d / "samples_00000.npz").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    fresh = tmp_path / "fresh"
    assert main(args + ["--out-dir", str(fresh)]) == 0
    a, b = _shards(d), _shards(fresh)
    assert list(a) == list(b) and len(a) == 4
    for name in a:
        for k in ("images", "index", "finite"):
            np.testing.assert_array_equal(a[name][k], b[name][k])
    assert a["samples_00003.npz"]["index"].tolist() == list(range(48, 64))
    images = distributed.load_shards(d)
    assert images.shape == (64, 8, 8, 1) and images.dtype == np.uint8
    assert len({im.tobytes() for im in images}) == 64  # every example its own draw
    capsys.readouterr()
    assert main(args[:-2] + ["--seed", "4", "--out-dir", str(d)]) == 2
    assert "seed is 3 there, 4 now" in capsys.readouterr().err


# ---- jaxir restore / evaluate --mesh: outputs by shard, a rerun skips what is done ------------


def test_cli_restore_folder_and_evaluate_by_shard_resume(tmp_path, capsys):
    """``jaxir restore DIR -o OUT --mesh data=1`` writes one PNG per image; after one output is
    deleted (a job stopped before it) the rerun restores only that image, to the same bytes,
    and leaves the others untouched; other settings in the same folder are refused.
    ``jaxir evaluate --mesh data=1`` scores one method per shard file; with a shard and the
    tables deleted the rerun recomputes only that method and writes the same rows. One device,
    in process (the mesh-independence of the windows is checked in the subprocess test). ~15 s
    of CPU time, 30 s wall under load (DDRM, 2 steps, the tiny 16-px prior)."""
    from PIL import Image
    from test_restore import write_tiny_prior

    from jaxir.cli import main
    from jaxir.restore import read_results

    prior = str(write_tiny_prior(tmp_path / "tiny16.npz"))
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (6, 5), "b": (4, 4), "c": (5, 7)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"{name}.png")
    out = tmp_path / "out"
    args = ["restore", str(src), "-o", str(out), "--method", "ddrm", "--task", "sr4",
            "--prior", prior, "--steps", "2", "--samples", "1", "--mesh", "data=1",
            "--per-device", "2"]
    assert main(args) == 0
    assert "restored 3 image(s)" in capsys.readouterr().out
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["a.png", "b.png", "c.png"]
    assert Image.open(out / "c.png").size == (28, 20)
    first = {n: (out / n).read_bytes() for n in names}
    stat_a = (out / "a.png").stat()
    (out / "b.png").unlink()
    assert main(args) == 0
    assert "restored 1 image(s)" in capsys.readouterr().out
    assert {n: (out / n).read_bytes() for n in names} == first
    assert (out / "a.png").stat().st_mtime_ns == stat_a.st_mtime_ns
    assert main(args[:-4] + ["--seed", "1", "--mesh", "data=1"]) == 2
    assert "seed is 0 there, 1 now" in capsys.readouterr().err

    ev = tmp_path / "ev"
    eargs = ["evaluate", "--method", "ddrm,bicubic", "--task", "sr4", "--n", "2", "--prior",
             prior, "--steps", "2", "--samples", "1", "--mesh", "data=1", "--out", str(ev)]
    assert main(eargs) == 0
    capsys.readouterr()
    rows = read_results(ev / "evaluate_sr4.csv")
    assert [r["method"] for r in rows] == ["pinv"] * 2 + ["ddrm (2 steps)"] * 2 + ["bicubic"] * 2
    shards = ev / "evaluate_sr4.shards"
    stat_0 = (shards / "000.json").stat()
    for f in (shards / "001.json", ev / "evaluate_sr4.csv", ev / "evaluate_sr4.md"):
        f.unlink()
    assert main(eargs) == 0
    again = read_results(ev / "evaluate_sr4.csv")
    assert (shards / "000.json").stat().st_mtime_ns == stat_0.st_mtime_ns
    # NaN != NaN, so LPIPS (NaN below 31 px) is compared as a string
    drop = lambda rs: [{k: repr(v) for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert drop(again) == drop(rows)
    assert all(r["lpips"] != r["lpips"] for r in rows)  # 16 px crops: LPIPS is NaN, not 0
    assert main(eargs) == 2  # the table exists: --overwrite (which reuses every shard)
    assert "exists" in capsys.readouterr().err


def test_cli_sample_in_two_processes_writes_the_one_device_files(tiny_workdir, tmp_path):
    """``jaxir sample --out-dir D --coordinator 127.0.0.1:PORT --num-processes 2 --process-id
    i`` in two processes (one CPU device each): process 0 alone writes the manifest and the
    shards (no shared filesystem assumed), and they equal the one-device run's. ~20 s of CPU
    time (two jax processes), 1 min wall under the team's load."""
    from test_sharding import _free_port

    from jaxir.cli import main

    args = ["sample", "--workdir", str(tiny_workdir), "--n", "12", "--steps", "2",
            "--sampler", "ddim", "--shard-size", "8", "--seed", "5", "--per-device", "2"]
    one = tmp_path / "one"
    assert main(args + ["--out-dir", str(one), "--mesh", "data=1"]) == 0
    two = tmp_path / "two"
    coord = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from jaxir.cli import main; sys.exit(main("
         + repr(args + ["--out-dir", str(two), "--coordinator", coord, "--num-processes", "2",
                        "--process-id", str(i)]) + "))"],
        cwd=ROOT, env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    if any(p.returncode for p in procs) and any("distributed" in e.lower() and "initial" in
                                                e.lower() for _, e in outs):
        pytest.skip(f"jax.distributed unavailable here: {outs[0][1][-300:]}")
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert "2 written now, 0 already there; 2 devices, 2 process(es)" in outs[0][0]
    assert "written now" not in outs[1][0]  # process 1 reports and writes nothing
    a, b = _shards(one), _shards(two)
    assert list(a) == list(b) == ["samples_00000.npz", "samples_00001.npz"]
    for name in a:
        for k in ("images", "index", "finite"):
            np.testing.assert_array_equal(a[name][k], b[name][k])


def test_cli_evaluate_in_two_processes_gathers_the_table_on_process_0(tmp_path):
    """``jaxir evaluate --coordinator ...`` in two processes: each scores its share of the
    images, process 0 gathers the rows and writes the table; it equals the one-device table
    (method, image and NFE exactly; PSNR, SSIM and consistency, float32 means over the 16 x 16
    x 3 = 768 values of an image computed in another batch shape, within the worst-case
    summation bound 768 eps32 (x max(1, |value|)); the measured gaps: PSNR 0, SSIM ~2e-9).
    ~25 s of CPU time."""
    from test_restore import write_tiny_prior
    from test_sharding import _free_port

    from jaxir.cli import main
    from jaxir.restore import read_results

    prior = str(write_tiny_prior(tmp_path / "tiny16.npz"))
    args = ["evaluate", "--method", "ddrm,gaussian", "--task", "denoise", "--n", "3",
            "--prior", prior, "--steps", "2", "--per-device", "1"]
    assert main(args + ["--mesh", "data=1", "--out", str(tmp_path / "one")]) == 0
    coord = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from jaxir.cli import main; sys.exit(main("
         + repr(args + ["--out", str(tmp_path / "two"), "--coordinator", coord,
                        "--num-processes", "2", "--process-id", str(i)]) + "))"],
        cwd=ROOT, env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert "2 devices, 2 process(es)" in outs[0][0] and "wrote" not in outs[1][0]
    a = read_results(tmp_path / "one" / "evaluate_denoise.csv")
    b = read_results(tmp_path / "two" / "evaluate_denoise.csv")
    assert len(a) == len(b) == 9
    for r, s in zip(a, b):
        assert [r[k] for k in ("method", "image", "nfe")] == [s[k] for k in ("method", "image",
                                                                              "nfe")]
        for k in ("psnr", "ssim", "consistency"):  # psnr: 10/ln 10 x the MSE's relative error
            assert abs(r[k] - s[k]) <= 768 * EPS32 * max(1.0, abs(r[k])), (k, r, s)
