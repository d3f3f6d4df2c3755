"""What produced a result: `hydra-eval --version`, and the provenance block of every results file."""

from __future__ import annotations

import subprocess
import sys

import hydra_eval
from hydra_eval.pipeline import run
from tests.conftest import ROOT


def _head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout


def test_version_prints_the_package_version_and_the_checkouts_commit(monkeypatch, capsys):
    from hydra_eval import cli
    from hydra_eval.provenance import git_commit

    git_commit.cache_clear()  # HEAD as it is now
    monkeypatch.setattr(sys, "argv", ["hydra-eval", "--version"])
    cli.main()
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"hydra-eval {hydra_eval.__version__} (git {_head().strip()}")


def test_every_results_file_records_hydra_evals_version_and_commit(compose_cfg):
    from hydra_eval.provenance import git_commit

    git_commit.cache_clear()
    results = run(compose_cfg("model=fake", "dataset=piqa", "dataset.limit=4"))
    assert results is not None
    prov = results.provenance
    assert prov["hydra_eval"] == hydra_eval.__version__
    assert prov["git_commit"].removesuffix("+dirty") == _head().strip()


def test_a_judged_results_file_names_its_judge(compose_cfg):
    results = run(compose_cfg("model=fake", "dataset=mt_bench", "dataset.limit=2", "judge=fake"))
    assert results is not None
    assert results.provenance["judge"]["name"] == "fake"
    assert results.provenance["judge"]["identity"]["judge"]  # the judge backend's own identity
