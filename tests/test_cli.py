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
