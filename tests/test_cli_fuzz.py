"""Bad input to every subcommand: exit code != 0, exactly one ``jaxir: error: ...`` line on
stderr (the whole of stderr), nothing on stdout, no traceback, and no file created or modified.

Each case runs ``jaxir.cli.main`` in-process (argparse errors raise ``SystemExit(2)``) inside a
workspace folder that is also the working directory, so default outputs (``jaxir-demo/``,
``jaxir-evaluate/``) would land in the snapshot too. Every case names a fragment its message
must contain, so a case that only fails by accident (a different error, or the catch-all
``unexpected ...`` line) fails the test. A few cases run as real subprocesses at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxir.cli import main


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims ``w × h`` RGB pixels, with a tiny (wrong) image body."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2,
                                                                       0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _rgb(path: Path, h: int, w: int, seed: int = 0) -> str:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return str(path)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace: every input file the cases need."""
    d = tmp_path_factory.mktemp("fuzz")
    _rgb(d / "ok.png", 24, 24)
    _rgb(d / "odd.png", 30, 30)
    _rgb(d / "tiny.png", 8, 8)
    _rgb(d / "wide.png", 20, 5000)
    Image.fromarray(np.full((24, 24), 128, np.uint8)).save(d / "gray.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(d / "mask20.png")
    Image.fromarray(np.random.default_rng(1).random((24, 24), np.float32)).save(d / "float.tif")
    (d / "text.png").write_text("not an image")
    (d / "notes.txt").write_text("some notes")
    data = (d / "ok.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    _png_header_only(d / "bomb.png", 100_000, 100_000)
    (d / "a_folder").mkdir()
    (d / "dir.png").mkdir()
    (d / "empty_images").mkdir()
    (d / "a_file").write_text("x")
    np.savez(d / "junk.npz", a=np.zeros(3))
    _rgb(d / "exists.png", 24, 24, seed=3)
    _rgb(d / "out2_compare.png", 24, 24, seed=4)
    (d / "cfg_syntax.py").write_text("def get_config(:\n    return 1\n")
    (d / "cfg_noget.py").write_text("x = 1\n")
    (d / "cfg_raises.py").write_text("raise RuntimeError('boom in the config')\n")
    ev = d / "evals"
    ev.mkdir()
    (ev / "evaluate_denoise.csv").write_text("method,image,psnr,ssim,consistency,nfe,seconds\n"
                                             "pinv,0,20,0.3,0.05,0,0.1\n")
    (d / "demo_out").mkdir()
    (d / "demo_out" / "report.html").write_text("<html></html>")
    (d / "empty_run").mkdir()
    fake = d / "fake_run"
    (fake / "checkpoints").mkdir(parents=True)
    (fake / "checkpoints" / "junk").write_text("not a checkpoint")
    from jaxir.training import config_to_dict, load_config

    (fake / "config.json").write_text(json.dumps(config_to_dict(load_config("digits_tiny"))))
    os.symlink(d / "ok.png", d / "link_to_ok.png")
    return d


def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with its size, mtime and content hash. Python's own bytecode
    cache (``__pycache__``, written when a config file is imported) is not jaxir's doing."""
    out = {}
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts:
            continue
        st = p.lstat()
        digest = (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink()
                  else None)
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return out


R = ["restore", "--method", "gaussian", "--task", "denoise"]
RD = ["restore", "--method", "ddrm", "--task", "denoise"]  # would run a sampler: must not
E = ["evaluate", "--task", "denoise", "--n", "2"]

CASES = [
    # restore: the input
    ("input-missing", R + ["nope.png", "-o", "o.png"], "does not exist"),
    ("input-folder", R + ["a_folder", "-o", "o.png"], "is a folder"),
    ("input-text", R + ["text.png", "-o", "o.png"], "cannot read"),
    ("input-truncated", R + ["truncated.png", "-o", "o.png"], "cannot read"),
    ("input-bomb", R + ["bomb.png", "-o", "o.png"], "too many pixels"),
    ("input-too-wide", R + ["wide.png", "-o", "o.png"], "at most 4096"),
    ("input-float-tiff", R + ["float.tif", "-o", "o.png"], "value range"),
    ("input-too-small", R + ["tiny.png", "-o", "o.png"], "pixels a side"),
    ("sr4-degrade-odd", ["restore", "--method", "bicubic", "--task", "sr4", "odd.png",
                         "--degrade", "-o", "o.png"], "divisible by 4"),
    ("colorize-degrade-gray", ["restore", "--method", "pinv", "--task", "colorize",
                               "gray.png", "--degrade", "-o", "o.png"], "needs a colour image"),
    # restore: the output (checked before the prior is loaded or anything computed)
    ("output-is-input", RD + ["ok.png", "-o", "ok.png"], "is the input"),
    ("output-is-input-issue", ["restore", "--method", "bicubic", "--task", "sr4", "ok.png",
                               "--degrade", "-o", "ok.png", "--overwrite"], "is the input"),
    ("output-same-file", ["restore", "--method", "bicubic", "--task", "sr4", "ok.png",
                          "--degrade", "-o", "link_to_ok.png", "--overwrite"], "is the input"),
    ("output-exists", RD + ["ok.png", "-o", "exists.png"], "--overwrite"),
    ("output-folder", RD + ["ok.png", "-o", "a_folder"], ".png"),
    ("output-folder-png", RD + ["ok.png", "-o", "dir.png"], "is a folder"),
    ("output-under-file", RD + ["ok.png", "-o", "a_file/out.png"], "is a file, not a folder"),
    ("output-jpg", R + ["ok.png", "-o", "o.jpg"], ".png"),
    ("compare-exists", RD + ["ok.png", "-o", "out2.png"], "out2_compare.png"),
    # restore: options that do not apply or do not exist
    ("mask-for-sr4", ["restore", "--method", "bicubic", "--task", "sr4", "ok.png", "-o",
                      "o.png", "--mask", "mask20.png"], "--mask applies"),
    ("mask-missing", ["restore", "--method", "biharmonic", "--task", "inpaint", "ok.png", "-o",
                      "o.png", "--mask", "nomask.png"], "does not exist"),
    ("mask-size", ["restore", "--method", "biharmonic", "--task", "inpaint", "ok.png", "-o",
                   "o.png", "--mask", "mask20.png"], "--mask is 20x20"),
    ("inpaint-needs-mask", ["restore", "--method", "biharmonic", "--task", "inpaint", "ok.png",
                            "-o", "o.png"], "--mask"),
    ("unknown-method", ["restore", "--method", "nosuch", "--task", "denoise", "ok.png", "-o",
                        "o.png"], "unknown method"),
    ("unknown-task", ["restore", "--method", "ddrm", "--task", "nosuch", "ok.png", "-o",
                      "o.png"], "unknown task"),
    ("method-task", ["restore", "--method", "repaint", "--task", "denoise", "ok.png", "-o",
                     "o.png"], "does not support"),
    ("samples-classical", R + ["ok.png", "-o", "o.png", "--samples", "4"], "deterministic"),
    ("steps-classical", R + ["ok.png", "-o", "o.png", "--steps", "10"], "has no steps"),
    ("steps-zero", RD + ["ok.png", "-o", "o.png", "--steps", "0"], "positive integer"),
    ("seed-negative", RD + ["ok.png", "-o", "o.png", "--seed", "-1"], "integer >= 0"),
    ("no-method", ["restore", "--task", "denoise", "ok.png", "-o", "o.png"], "--method"),
    ("unknown-option", R + ["ok.png", "-o", "o.png", "--colour"], "unrecognized"),
    ("prior-png", RD + ["ok.png", "-o", "o.png", "--prior", "text.png"], "not a .npz prior"),
    ("prior-real-png", RD + ["ok.png", "-o", "o.png", "--prior", "ok.png"], "not a .npz prior"),
    ("prior-missing", RD + ["ok.png", "-o", "o.png", "--prior", "none.npz"], "does not exist"),
    ("prior-folder", RD + ["ok.png", "-o", "o.png", "--prior", "a_folder"], "is a folder"),
    ("prior-junk", RD + ["ok.png", "-o", "o.png", "--prior", "junk.npz"], "not a jaxir prior"),
    # evaluate
    ("eval-out-file", E + ["--method", "gaussian", "--out", "a_file"], "is a file"),
    ("eval-exists", E + ["--method", "gaussian", "--out", "evals"], "--append"),
    ("eval-append-overwrite", E + ["--method", "gaussian", "--out", "evals", "--append",
                                   "--overwrite"], "exclude each other"),
    ("eval-append-n", E + ["--method", "gaussian", "--out", "evals", "--append"], "scores 1"),
    ("eval-data", E + ["--method", "gaussian", "--data", "nowhere", "--out", "e1"],
     "unknown data source"),
    ("eval-n", ["evaluate", "--task", "denoise", "--method", "gaussian", "--n", "1000", "--out",
                "e1"], "fewer than"),
    ("eval-empty-method", E + ["--method", ",", "--out", "e1"], "--method is empty"),
    ("eval-folder-missing", E + ["--method", "gaussian", "--data", "folder:no_dir", "--out",
                                 "e1"], "does not exist"),
    ("eval-folder-empty", E + ["--method", "gaussian", "--data", "folder:empty_images", "--out",
                               "e1"], "contains no"),
    ("eval-task", ["evaluate", "--task", "nosuch", "--method", "gaussian"], "unknown task"),
    # demo
    ("demo-out-file", ["demo", "--out", "a_file"], "is a file"),
    ("demo-exists", ["demo", "--out", "demo_out"], "--overwrite"),
    ("demo-prior", ["demo", "--out", "d1", "--prior", "none.npz"], "does not exist"),
    ("demo-samples", ["demo", "--samples", "-3"], "positive integer"),
    # bench
    ("bench-no-suite", ["bench"], "give a suite"),
    ("bench-bad-suite", ["bench", "nosuch"], "invalid choice"),
    ("bench-gmm-methods", ["bench", "gmm", "--methods", "foo"], "--methods: unknown 'foo'"),
    ("bench-gmm-dy", ["bench", "gmm", "--dy", "1,x"], "comma-separated integers"),
    ("bench-gmm-dy-dim", ["bench", "gmm", "--dim", "2", "--dy", "4"], "larger than"),
    ("bench-perf-net", ["bench", "perf", "--net", "huge"], "--net"),
    ("bench-perf-sections", ["bench", "perf", "--sections", "foo"], "--sections"),
    ("bench-perf-samplers", ["bench", "perf", "--samplers", "foo"], "--samplers"),
    ("bench-quick-gaussian", ["bench", "gaussian", "--quick"], "--quick applies"),
    ("bench-other-suite", ["bench", "gaussian", "--methods", "ddrm"], "another suite"),
    # train
    ("train-config-missing", ["train", "--config", "no_such", "--workdir", "w"], "not found"),
    ("train-config-syntax", ["train", "--config", "cfg_syntax.py", "--workdir", "w"],
     "syntax error at line 1"),
    ("train-config-noget", ["train", "--config", "cfg_noget.py", "--workdir", "w"],
     "get_config"),
    ("train-config-raises", ["train", "--config", "cfg_raises.py", "--workdir", "w"],
     "boom in the config"),
    ("train-set-type", ["train", "--config", "digits_tiny", "--workdir", "w", "--set",
                        "optim.lr=abc"], "optim.lr is a number"),
    ("train-set-key", ["train", "--config", "digits_tiny", "--workdir", "w", "--set",
                       "optim.lrr=1"], "unknown config key"),
    ("train-set-form", ["train", "--config", "digits_tiny", "--workdir", "w", "--set", "lr"],
     "section.field=value"),
    ("train-workdir-file", ["train", "--config", "digits_tiny", "--workdir", "a_file"],
     "is a file"),
    ("train-mesh", ["train", "--config", "digits_tiny", "--workdir", "w", "--mesh",
                    "data=two"], "integers"),
    ("train-mesh-devices", ["train", "--config", "digits_tiny", "--workdir", "w", "--mesh",
                            "data=64"], "device"),
    ("train-data", ["train", "--config", "digits_tiny", "--workdir", "w", "--data", "nosuch"],
     "unknown data source"),
    # sample
    ("sample-missing", ["sample", "--workdir", "no_run", "--output", "s.png"], "does not exist"),
    ("sample-empty", ["sample", "--workdir", "empty_run", "--output", "s.png"], "no training run"),
    ("sample-file", ["sample", "--workdir", "a_file", "--output", "s.png"], "is a file"),
    ("sample-txt", ["sample", "--workdir", "fake_run", "--output", "s.txt"], ".png"),
    ("sample-exists", ["sample", "--workdir", "fake_run", "--output", "exists.png"],
     "--overwrite"),
    ("sample-no-ckpt", ["sample", "--workdir", "fake_run", "--output", "s.png"],
     "no checkpoint"),
    ("sample-lq-prior", ["sample", "--workdir", "fake_run", "--output", "s.png", "--lq",
                         "ok.png"], "learned restoration model"),
    ("sample-label", ["sample", "--workdir", "fake_run", "--output", "s.png", "--label", "3"],
     "class-conditional"),
    ("sample-sampler", ["sample", "--workdir", "fake_run", "--output", "s.png", "--sampler",
                        "euler"], "invalid choice"),
]


def test_enough_cases_over_every_subcommand():
    assert len(CASES) >= 40
    assert {argv[0] for _, argv, _ in CASES} == {"restore", "evaluate", "demo", "bench",
                                                  "train", "sample"}
    assert len({name for name, _, _ in CASES}) == len(CASES)


def _run(argv, capsys) -> tuple[int, str]:
    code, _, err = _run_both(argv, capsys)
    return code, err


def _run_both(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("name,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(name, argv, fragment, ws, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    before = _snapshot(ws)
    code, out, err = _run_both(argv, capsys)
    lines = err.splitlines()
    assert code not in (0, None), (name, err)
    assert out == "", (name, out)  # no header, note or progress before the error
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("jaxir: error: "), err
    assert "unexpected" not in lines[0], lines[0]
    assert fragment in lines[0], (fragment, lines[0])
    assert _snapshot(ws) == before, f"{name} created or modified files"


@pytest.mark.parametrize("argv,fragment", [
    ([], "required"),
    (["restore", "--method", "gaussian", "--task", "denoise", "missing.png", "-o", "o.png"],
     "does not exist"),
    (["sample", "--workdir", "nowhere", "--output", "s.png"], "does not exist"),
], ids=["no-command", "restore-missing", "sample-missing"])
def test_bad_input_subprocess(argv, fragment, tmp_path):
    """The real process: exit code 2, stderr exactly one line, nothing written."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "jaxir.cli", *argv], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxir: error: ") and fragment in lines[0], \
        r.stderr
    assert list(tmp_path.iterdir()) == []


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch):
    """A bug (not a user mistake) is still one line, exit code 1; JAXIR_TRACEBACK=1 raises."""
    import jaxir.cli._bench as bench

    def boom(args):
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(bench, "_dispatch", boom)
    monkeypatch.delenv("JAXIR_TRACEBACK", raising=False)
    code, err = _run(["bench", "gaussian"], capsys)
    assert code == 1 and err.splitlines() == [
        "jaxir: error: unexpected RuntimeError: simulated bug (set JAXIR_TRACEBACK=1 for the "
        "traceback and please report it)"]
    monkeypatch.setenv("JAXIR_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["bench", "gaussian"])
