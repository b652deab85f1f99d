"""``jaxir restore | evaluate | demo`` from the command line: outputs and every user-error path
(exit code 2, exactly one ``jaxir: error: ...`` line, no traceback)."""


import numpy as np
import pytest
from PIL import Image
from test_restore import SHIPPED, write_tiny_prior

from jaxir.cli import main


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    return str(write_tiny_prior(tmp_path_factory.mktemp("cli_prior") / "tiny16.npz"))


def _png(path, h, w, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return str(path)


def _fails(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("jaxir: error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


def test_restore_degrade_writes_outputs_and_metrics(tmp_path, capsys, prior_file):
    src = _png(tmp_path / "in.png", 24, 20)
    out = tmp_path / "res" / "out.png"
    code = main(["restore", "--method", "ddrm", "--task", "denoise", src, "--degrade",
                 "--output", str(out), "--prior", prior_file, "--steps", "2"])
    text = capsys.readouterr().out
    assert code == 0
    assert Image.open(out).size == (20, 24)
    cmp = Image.open(tmp_path / "res" / "out_compare.png")
    assert cmp.size[0] > 3 * 20  # input | restored | ground truth
    assert "PSNR" in text and "SSIM" in text


def test_restore_real_lq_image_sr_and_classical(tmp_path, capsys):
    src = _png(tmp_path / "lq.png", 10, 12)
    out = tmp_path / "up.png"
    assert main(["restore", "--method", "bicubic", "--task", "sr4", src, "-o", str(out)]) == 0
    assert Image.open(out).size == (48, 40)
    assert "PSNR" not in capsys.readouterr().out  # no ground truth, no metrics


def test_restore_inpaint_with_mask_file(tmp_path, capsys):
    src = _png(tmp_path / "img.png", 20, 20)
    m = np.zeros((20, 20), np.uint8)
    m[::2] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    out = tmp_path / "o.png"
    assert main(["restore", "--method", "biharmonic", "--task", "inpaint", src, "-o", str(out),
                 "--mask", str(tmp_path / "mask.png")]) == 0
    restored = np.asarray(Image.open(out))
    np.testing.assert_array_equal(restored[::2], np.asarray(Image.open(src))[::2])


def test_restore_errors(tmp_path, capsys, prior_file):
    ok = _png(tmp_path / "ok.png", 24, 24)
    odd = _png(tmp_path / "odd.png", 30, 30)
    tiny = _png(tmp_path / "tiny.png", 8, 8)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = str(tmp_path / "o.png")
    base = ["restore", "--output", out]
    _fails(capsys, base + ["--method", "ddrm", "--task", "denoise", str(tmp_path / "no.png"),
                           "--prior", prior_file], "does not exist")
    _fails(capsys, base + ["--method", "ddrm", "--task", "denoise", str(bad),
                           "--prior", prior_file], "cannot read")
    _fails(capsys, base + ["--method", "ddrm", "--task", "sr4", odd, "--degrade",
                           "--prior", prior_file], "divisible by 4")
    _fails(capsys, base + ["--method", "gaussian", "--task", "denoise", tiny], "pixels a side")
    _fails(capsys, base + ["--method", "nosuch", "--task", "denoise", ok], "unknown method")
    _fails(capsys, base + ["--method", "ddrm", "--task", "nosuch", ok], "unknown task")
    _fails(capsys, base + ["--method", "repaint", "--task", "denoise", ok], "does not support")
    _fails(capsys, base + ["--method", "ddrm", "--task", "denoise", ok,
                           "--prior", str(tmp_path / "missing.npz")], "does not exist")
    np.savez(tmp_path / "junk.npz", a=np.zeros(3))
    _fails(capsys, base + ["--method", "ddrm", "--task", "denoise", ok,
                           "--prior", str(tmp_path / "junk.npz")], "not a jaxir prior")
    _fails(capsys, base + ["--method", "biharmonic", "--task", "inpaint", ok], "--mask")
    _fails(capsys, ["restore", "--method", "gaussian", "--task", "denoise", ok, "-o",
                    str(tmp_path / "o.jpg")], ".png")
    if not SHIPPED.exists():
        _fails(capsys, base + ["--method", "ddrm", "--task", "denoise", ok], "not installed")


def test_restore_bad_steps_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["restore", "--method", "ddrm", "--task", "denoise", "x.png", "-o", "o.png",
              "--steps", "0"])
    assert e.value.code == 2 and "positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["restore", "evaluate"])
def test_samples_must_be_positive(cmd, capsys):
    argv = (["restore", "x.png", "-o", "o.png"] if cmd == "restore" else ["evaluate"])
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--method", "ddrm", "--task", "denoise", "--samples", bad])
        assert e.value.code == 2 and "--samples" in capsys.readouterr().err


def test_samples_with_only_classical_methods_is_a_usage_error(tmp_path, capsys):
    ok = _png(tmp_path / "ok.png", 24, 24)
    _fails(capsys, ["restore", "--method", "gaussian", "--task", "denoise", ok, "-o",
                    str(tmp_path / "o.png"), "--samples", "4"], "deterministic")
    _fails(capsys, ["evaluate", "--method", "gaussian,wiener", "--task", "denoise", "--n", "2",
                    "--samples", "4", "--out", str(tmp_path)], "deterministic")


def test_restore_with_samples(tmp_path, capsys, prior_file):
    src = _png(tmp_path / "in.png", 16, 16)
    out = tmp_path / "out.png"
    code = main(["restore", "--method", "ddrm", "--task", "denoise", src, "--degrade", "-o",
                 str(out), "--prior", prior_file, "--steps", "2", "--samples", "3"])
    assert code == 0 and Image.open(out).size == (16, 16)
    assert "ddrm (2 steps, mean of 3)" in capsys.readouterr().out


def test_evaluate_samples_and_append(tmp_path, capsys, prior_file):
    base = ["evaluate", "--task", "denoise", "--n", "2", "--steps", "2", "--prior", prior_file,
            "--out", str(tmp_path)]
    assert main(base + ["--method", "ddrm,gaussian"]) == 0
    capsys.readouterr()
    assert main(base + ["--method", "ddrm", "--samples", "2", "--append"]) == 0
    text = capsys.readouterr().out
    md = (tmp_path / "evaluate_denoise.md").read_text()
    for row in ("| pinv | 2 |", "| ddrm (2 steps) | 2 |", "| gaussian | 2 |",
                "| ddrm (2 steps, mean of 2) | 2 |"):
        assert row in md and row in text
    assert "NFE / image" in md and "s / image" in md
    csv_text = (tmp_path / "evaluate_denoise.csv").read_text()
    assert csv_text.count("\n") == 1 + 4 * 2 and csv_text.startswith("method,image,")
    ddrm2 = [ln for ln in csv_text.splitlines() if ln.startswith('"ddrm (2 steps, mean of 2)"')]
    assert len(ddrm2) == 2
    assert all(ln.split(",")[-2] == "4.0" for ln in ddrm2)  # NFE: 2 steps × 2 samples
    # appending a run on a different number of images is refused
    _fails(capsys, base[:3] + ["--n", "3"] + base[5:] + ["--method", "ddrm", "--append"],
           "--append")


def test_evaluate_writes_tables(tmp_path, capsys, prior_file):
    code = main(["evaluate", "--method", "ddrm,gaussian", "--task", "denoise", "--n", "2",
                 "--steps", "2", "--prior", prior_file, "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0
    assert "| ddrm (2 steps) | 2 |" in text and "| gaussian | 2 |" in text
    assert "| pinv | 2 |" in text
    assert (tmp_path / "evaluate_denoise.csv").exists()
    assert (tmp_path / "evaluate_denoise.md").exists()


def test_evaluate_errors(tmp_path, capsys, prior_file):
    base = ["evaluate", "--task", "denoise", "--out", str(tmp_path)]
    _fails(capsys, base + ["--method", "ddrm,nosuch", "--prior", prior_file], "unknown method")
    _fails(capsys, base + ["--method", "gaussian", "--data", "nowhere"], "unknown data source")
    _fails(capsys, base + ["--method", "gaussian", "--n", "1000"], "fewer than")
    _fails(capsys, base + ["--method", "ddrm", "--prior", str(tmp_path / "x.npz")],
           "does not exist")


def test_demo_errors(tmp_path, capsys):
    _fails(capsys, ["demo", "--prior", str(tmp_path / "none.npz"), "--out", str(tmp_path)],
           "does not exist")
    with pytest.raises(SystemExit) as e:
        main(["demo", "--samples", "-3"])
    assert e.value.code == 2
