"""Train a prior within a wall-clock budget, then export its EMA weights to one .npz file.

    python experiments/priors/train_prior.py --config experiments/configs/photos64.py \
        --workdir runs/photos64 --seconds 330 --out jaxir/assets/photos64.npz

A short probe run measures steps per second on this machine; the real run then gets as many
steps as fit in ``--seconds`` (so the learning-rate schedule and EMA finish properly instead of
being cut off), capped by the config's ``steps``. Writes ``train_summary.json`` beside the log.
"""

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax

from jaxir.priors import export_prior
from jaxir.training import load_config, train


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--probe", type=int, default=60)
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    cfg = load_config(a.config)
    wd = Path(a.workdir)
    t_start = time.time()
    probe_wd = wd.with_name(wd.name + "_probe")
    shutil.rmtree(probe_wd, ignore_errors=True)
    t0 = time.time()
    train(dataclasses.replace(cfg, steps=a.probe, save_every=0, log_every=10), probe_wd,
          progress=False)
    t_probe = time.time() - t0
    # time per step after compilation, from the probe's log (rows carry cumulative wall time)
    rows = [json.loads(r) for r in (probe_wd / "metrics.jsonl").read_text().splitlines() if r]
    sps = rows[-1].get("steps_per_sec") or a.probe / max(t_probe, 1e-3)
    left = a.seconds - (time.time() - t_start) - 0.5 * t_probe  # compile again + export
    steps = int(max(100, min(cfg.steps, 0.9 * sps * left)))
    print(f"probe: {t_probe:.1f} s for {a.probe} steps (steady {sps:.2f} steps/s); "
          f"training {steps} steps", flush=True)
    t1 = time.time()
    state = train(dataclasses.replace(cfg, steps=steps), wd, progress=False)
    t_train = time.time() - t1
    out = export_prior(wd, a.out, dtype=a.dtype)
    summary = {"config": a.config, "steps": int(state.step), "train_seconds": t_train,
               "probe_steps_per_sec": sps, "device": str(jax.devices()[0].device_kind),
               "jax": jax.__version__, "out": str(out), "bytes": out.stat().st_size}
    (wd / "train_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
