"""Sweeps on a real Slurm (scripts/slurm-local.sh: slurmctld, slurmd, slurmdbd, munge on this host) through
hydra/launcher=submitit_slurm, hydra-eval's extension of the plugin's launcher (hydra_eval_plugins)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from hydra_eval.outputs import read_json
from tests.conftest import ROOT
from tests.helpers import summary_lines
from tests.test_sweep import hydra_eval, results_by_pair

pytestmark = pytest.mark.slurm


def _slurm_up() -> bool:
    if not shutil.which("scontrol"):
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def slurm() -> Iterator[None]:
    """Use a running Slurm, or start one for these tests and stop it after them."""
    started = False
    if not _slurm_up():
        subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "up"], check=True, timeout=600)
        started = True
    yield
    if started:
        subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "down"], check=True, timeout=120)


def test_two_models_by_two_datasets_on_slurm(tmp_path):
    sweep = tmp_path / "sweep"
    proc = hydra_eval(
        "-m",
        "hydra/launcher=submitit_slurm",  # the design card's name gives the extended launcher
        "model=tiny_llama,tiny_llama_b",
        "dataset=piqa,siqa",
        "dataset.limit=6",
        f"hydra.sweep.dir={sweep}",
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = results_by_pair(sweep)
    assert set(results) == {(m, d) for m in ("tiny_llama", "tiny_llama_b") for d in ("piqa", "siqa")}
    assert all(r["n"] == 6 for r in results.values())
    slurm_ids = {read_json(sweep / str(i) / "job.json")["slurm_job_id"] for i in range(4)}
    assert None not in slurm_ids and len(slurm_ids) == 4  # four real Slurm jobs
    table = [line.split() for line in summary_lines(proc.stdout)]
    assert table[0] == ["dataset", "version", "metric", "mode", "tiny_llama", "tiny_llama_b"]
    assert {row[0] for row in table[2:]} == {"piqa", "siqa"} and not any("-" in row[4:] for row in table[2:])
    assert list(sweep.glob("summary/summary_*.md"))
    assert read_json(sweep / "failed.json") == []


def test_a_cancelled_job_ends_the_sweep_and_is_reported(tmp_path):
    sweep = tmp_path / "sweep"
    proc = hydra_eval(
        "-m",
        "hydra/launcher=submitit_slurm",  # the design card's name gives the extended launcher
        "model=tiny_llama",
        "dataset=piqa",
        "dataset.limit=6",
        "dataset.read_local=hydra_eval.data.files.read_rows_with_labels,tests.helpers.hang",
        "retry=0",
        f"hydra.sweep.dir={sweep}",
        tmp=tmp_path,
        background=True,
    )
    job_file = sweep / "1" / "job.json"  # job #1 reads its data with tests.helpers.hang
    deadline = time.time() + 180
    while not job_file.is_file():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the hanging job never started"
        time.sleep(0.5)
    slurm_id = read_json(job_file)["slurm_job_id"]
    time.sleep(2)
    subprocess.run(["scancel", slurm_id], check=True)
    cancelled = time.time()
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the sweep did not end within 2 minutes of scancel") from None
    assert time.time() - cancelled < 120
    assert proc.returncode == 1
    failed = read_json(sweep / "failed.json")
    assert [f["job"] for f in failed] == [1]
    assert "CANCELLED" in failed[0]["error"] and "1 job(s) failed" in stderr
    assert set(results_by_pair(sweep)) == {  # the other job's result is kept, named by its setting
        ("tiny_llama", "piqa[read_local=hydra_eval.data.files.read_rows_with_labels]")
    }


def test_a_judge_sweep_runs_the_judge_job_after_the_judged_jobs_with_the_judges_resources(tmp_path):
    sweep = tmp_path / "sweep"
    proc = hydra_eval(
        "-m",
        "hydra/launcher=submitit_slurm",
        "model=fake,fake_b",
        "model.chat_template=true",
        "dataset=arena_hard",
        "dataset.limit=3",
        "dataset.judge.baseline=fake",
        "judge=fake",
        "judge.reply='[[B>A]]'",
        "judge.num_cpus=2",
        f"hydra.sweep.dir={sweep}",
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [read_json(sweep / str(i) / "job.json")["slurm_job_id"] for i in range(2)]
    judge_id = read_json(sweep / "1" / "judge.job.json")["slurm_job_id"]  # beside the judged job's own record
    assert None not in ids and judge_id is not None and judge_id not in ids  # three real Slurm jobs
    judge_log = (sweep / "2" / "hydra-eval.log").read_text()
    assert "judge: 0 reused from cache" in judge_log
    scripts = {p.parent.name: p.read_text() for p in (sweep / ".submitit").rglob("*_submission.sh")}
    cpus = sorted(line for text in scripts.values() for line in text.splitlines() if "--cpus-per-task" in line)
    # the two judged jobs (one job array) ask for fake's 1 CPU, the judge job for the judge's 2
    assert cpus == ["#SBATCH --cpus-per-task=1", "#SBATCH --cpus-per-task=2"]
    result = read_json(sweep / "1" / "results" / "fake_b" / "arena_hard.json")
    assert result["metrics"]["win_rate"] == 50.0 and result["diagnostics"]["judge_calls"] == 6
    table = [line.split() for line in summary_lines(proc.stdout)]
    assert table[0] == ["dataset", "version", "metric", "mode", "fake_b"]
    assert read_json(sweep / "failed.json") == []
