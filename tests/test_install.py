"""hydra-eval as users install it: a built wheel (and sdist) holding every package file, installed into a fresh
venv outside the checkout, where a job, a judged job, a 2-model sweep with its comparison, an lm-eval task and
the UI command run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import DATA_DIR, ROOT

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist built from the checkout, then the wheel built from the unpacked sdist (no stale build/ folder
    of the checkout can slip into it), as `python -m build` does."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return next(out.glob("hydra_eval-*.whl")), next(out.glob("hydra_eval-*.tar.gz"))


def _tracked(*roots: str) -> list[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", *roots], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    return [p for p in listed.stdout.split() if "__pycache__" not in p]


def test_the_wheel_and_sdist_hold_every_tracked_package_file(built):
    wheel, sdist = built
    tracked = _tracked("hydra_eval", "hydra_plugins")
    assert any(p.startswith("hydra_eval/judging/") for p in tracked)  # the folder once left out
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(set(tracked) - in_wheel) == []
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert top.startswith("hydra_eval-")
    assert sorted(set(tracked) - in_sdist) == []


def test_the_version_is_the_packages(built):
    import hydra_eval

    assert built[0].name.startswith(f"hydra_eval-{hydra_eval.__version__}-")


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (lm-eval extra included), no path into the checkout."""
    home = tmp_path_factory.mktemp("wheel-venv")
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    pip = [str(home / "venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
    torch = f"torch=={_version('torch').split('+')[0]}"  # the CPU build this machine installs from disk
    for args in ([torch], [f"{built[0]}[lmeval]"]):
        done = subprocess.run([*pip, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _run(venv: Path, *args: str, cmd: str = "hydra-eval") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{venv / 'venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(venv),
        "HYDRA_EVAL_DATA_DIR": str(DATA_DIR),
        "HYDRA_EVAL_CACHE_DIR": str(venv / "cache"),
        **{k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "TMPDIR"))},
    }
    return subprocess.run(
        [str(venv / "venv" / "bin" / cmd), *args], cwd=venv, env=env, capture_output=True, text=True, timeout=900
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_the_installed_wheel_is_not_the_checkout(venv):
    where = _ok(
        _run(
            venv, "-c", "import hydra_eval, hydra_plugins.hydra_eval_plugins as p; print(p.__file__)", cmd="python"
        )
    )
    assert where.startswith(str(venv / "venv")) and str(ROOT) not in where
    assert _ok(_run(venv, "--version")).strip() == f"hydra-eval {_version('hydra-eval')}"  # no checkout: no commit


def test_a_job_and_a_judged_job_run_from_the_wheel(venv):
    _ok(_run(venv, "model=fake", "dataset=piqa", "dataset.limit=20", "hydra.run.dir=runs/piqa"))
    results = json.loads((venv / "runs/piqa/results/fake/piqa.json").read_text())
    assert results["n"] == 20 and results["provenance"] == {
        "hydra_eval": _version("hydra-eval"),
        "git_commit": None,
    }
    _ok(_run(venv, "model=fake", "dataset=mt_bench", "dataset.limit=2", "judge=fake", "hydra.run.dir=runs/mtb"))
    judged = json.loads((venv / "runs/mtb/results/fake/mt_bench.json").read_text())
    assert judged["provenance"]["judge"]["name"] == "fake"


def test_a_two_model_sweep_with_its_comparison_runs_from_the_wheel(venv):
    table = _ok(
        _run(venv, "-m", "model=fake,fake_b", "dataset=piqa", "dataset.limit=30", "hydra.sweep.dir=runs/sweep")
    )
    assert "fake_b" in table and "piqa" in table
    comparison = json.loads((venv / "runs/sweep/summary/comparison.json").read_text())
    assert len(comparison["pairs"]) == 1
    assert (venv / "runs/sweep/summary/report.html").is_file()


def test_an_lmeval_task_runs_from_the_wheel(venv):
    _ok(_run(venv, "model=fake", "dataset=truthfulqa", "dataset.limit=3", "hydra.run.dir=runs/tqa"))
    results = json.loads(next((venv / "runs/tqa/results/fake").glob("*.json")).read_text())
    assert results["provenance"]["lm_eval"] == "0.4.13"


def test_the_ui_command_runs_from_the_wheel(venv):
    assert "usage" in _ok(_run(venv, "--help", cmd="hydra-eval-ui")).lower()
