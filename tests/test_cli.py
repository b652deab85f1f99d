import json
import subprocess
import sys

from jaxir import cli


def test_bench_gaussian_json_small(capsys):
    rc = cli.main(["bench", "gaussian", "--json", "--samples", "4000", "--steps", "200", "--dim", "2"])
    rows = json.loads(capsys.readouterr().out)
    assert {"sampler", "nfe", "mean_err", "cov_err", "z_mean", "z_cov", "seconds"} <= set(rows[0])
    assert len(rows) == 10
    assert all(r["finite"] for r in rows)
    assert rc in (0, 1)


def test_cli_usage_errors_are_one_line():
    r = subprocess.run([sys.executable, "-m", "jaxir.cli", "bench", "nosuch"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "jaxir.cli", "demo", "--samples", "-3"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "positive integer" in r.stderr and "Traceback" not in r.stderr


def test_bench_gmm_json_small(capsys):
    """``jaxir bench gmm --json``: the published metric (max-sliced W2) and seconds per method
    and dy; DDRM on a fully observed coordinate beats the prior by far."""
    rc = cli.main(["bench", "gmm", "--json", "--dim", "4", "--dy", "1,4", "--problems", "1",
                   "--samples", "200", "--steps", "20", "--methods", "ddrm,mcgdiff-32"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {(s["method"], s["dy"]) for s in out["summary"]} == {
        (m, d) for m in ("ddrm", "mcgdiff-32") for d in (1, 4)}
    for r in out["rows"]:
        assert r["metric"] == "max" and r["finite"] and r["seconds"] > 0
        assert r["sw"] < r["sw_prior"], r  # the posterior sampler moved towards the data
    assert out["published"] == []  # not the published setting (d = 8, 100 steps, η = 0.6)


def test_compare_published_reads_each_cell_against_the_problem_spread():
    from jaxir.bench.gmm import compare_published

    rows = [{"method": m, "dim": 8, "dy": 1, "num_steps": 100, "eta": 0.6, "metric": "max",
             "sw": v} for m, vs in (("ddrm", (20.0, 25.0, 40.0, 10.0)), ("pigdm", (1.0, 2.0)))
            for v in vs]
    rows.append({**rows[0], "num_steps": 20})  # another setting: ignored
    (c,) = compare_published(rows)  # pigdm has no published cell
    assert (c["method"], c["dy"], c["published_mean"], c["n"]) == ("ddrm", 1, 29.7, 4)
    assert c["share_below"] == 0.75 and c["inside_range"] and (c["min"], c["max"]) == (10, 40)


def test_bench_gmm_rejects_bad_lists(capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "gmm", "--dy", "1,x"])
    assert e.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err
