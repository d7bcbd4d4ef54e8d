"""The package works outside its checkout: a wheel ships ``conf/`` and runs the demo preset from an
unrelated folder; users add their own solver (a config folder and a module of theirs) without
forking, through the standard pipeline; ``python -m reddiff_bench COMMAND`` reaches every command."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from reddiff_bench.cli import COMMANDS
from reddiff_bench.run.pipeline import run

from .conftest import REPO, SMALL_GMM
from .helpers import compose_config

FAST = SMALL_GMM + ["dataset.num_images=2", "progress=false", "logger=none", "metrics.fid=false"]


def write_user_solver(root: Path) -> tuple[Path, Path]:
    """A package of the user's (``my_solvers``) with a solver, and a config folder naming it."""
    package = root / "code" / "my_solvers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent('''
        from reddiff_bench.solvers import SolverResult


        class HalfPinv:
            """Half the pseudo-inverse: a solver no one else ships."""

            def __init__(self, scale: float = 0.5):
                self.scale = scale

            def solve(self, prior, operator, y, *, sigma_y, generators, callback=None):
                return SolverResult(x0=self.scale * operator.init_estimate(y))
        '''))
    configs = root / "my_conf"
    (configs / "solver").mkdir(parents=True)
    (configs / "solver" / "half_pinv.yaml").write_text("_target_: my_solvers.HalfPinv\nscale: 0.5\n")
    return package.parent, configs


def test_a_users_solver_runs_through_the_standard_pipeline(tmp_path, monkeypatch):
    code, configs = write_user_solver(tmp_path)
    monkeypatch.syspath_prepend(str(code))
    run_dir = tmp_path / "run"
    cfg = compose_config(FAST + [f"hydra.searchpath=[file://{configs}]", "solver=half_pinv"], run_dir=run_dir)
    run(cfg, run_dir)
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert list(rows["solver"]) == ["half_pinv"] * 2 and (rows["status"] == "ok").all()
    pinv_dir = tmp_path / "pinv"
    run(compose_config(FAST + ["solver=pinv"], run_dir=pinv_dir), pinv_dir)
    pinv = pd.read_csv(pinv_dir / "metrics.csv")
    assert (rows["psnr"] != pinv["psnr"]).all()  # its own estimate, not the shipped pseudo-inverse


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"train"}))  # train is a Hydra app
def test_every_command_answers_help(command, capsys):
    module = importlib.import_module(f"reddiff_bench.cli.{COMMANDS[command]}")
    try:
        code = module.main(["--help"])
    except SystemExit as done:  # argparse's --help
        code = done.code
    assert code in (0, None)
    assert f"python -m reddiff_bench {command}" in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_dispatches_a_command_and_lists_them():
    proc = subprocess.run([sys.executable, "-m", "reddiff_bench", "report", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and "usage: python -m reddiff_bench report" in proc.stdout, proc.stderr[-2000:]
    listed = subprocess.run([sys.executable, "-m", "reddiff_bench", "commands"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert listed.returncode == 0 and all(c in listed.stdout for c in COMMANDS)


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_the_demo_from_an_unrelated_folder(tmp_path):
    """``pip wheel`` of a copy of the checkout, installed alone into a new virtual environment (its
    dependencies come from the test's environment, read-only), then the demo preset (every
    solver) from a folder that is not the checkout; and a user's solver through ``--config-dir``."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".venv", "outputs", "experiments", "tests", "__pycache__",
                                                  "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("reddiff_bench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "reddiff_bench/conf/config.yaml" in names and "reddiff_bench/conf/experiment/demo.yaml" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
                   check=True, timeout=300)
    # the dependencies (torch, hydra, ...) of this environment, without its editable reddiff_bench
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "deps.pth").write_text("\n".join(deps) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": "", "PYTHONUNBUFFERED": "1"}
    where = subprocess.run([str(python), "-c", "import reddiff_bench; print(reddiff_bench.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(Path(site).resolve()) in str(Path(where.strip()).resolve()), where
    proc = subprocess.run([str(python), "-m", "reddiff_bench", "+experiment=demo", "dataset.num_images=2",
                           "metrics.fid=false", "progress=false"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = list((elsewhere / "outputs").rglob("metrics.csv"))
    solvers = {pd.read_csv(path)["solver"].iloc[0] for path in tables}
    assert len(solvers) >= 10, solvers  # every solver of the demo, under the current folder
    code, configs = write_user_solver(tmp_path / "user")
    proc = subprocess.run([str(python), "-m", "reddiff_bench", "--config-dir", str(configs), "solver=half_pinv",
                           "logger=none", *FAST, "hydra.run.dir=mine"], cwd=elsewhere,
                          env={**env, "PYTHONPATH": str(code)}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(pd.read_csv(elsewhere / "mine" / "metrics.csv")["solver"]) == ["half_pinv"] * 2
