"""Test helpers: the one function that runs the `hydra-eval` command, and dataset readers that misbehave on
purpose, for sweep tests (named in overrides as dataset.read_local)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra_eval.data.files import read_rows_with_labels

ROOT = Path(__file__).resolve().parents[1]
# This module is also imported by jobs (dataset.read_local=tests.helpers.hang): it stays light, no pytest
DATA_DIR = Path(os.environ.get("HYDRA_EVAL_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def run_cli(
    *args: str,
    outputs: Path | None = None,
    cache: Path | None = None,
    env: dict[str, str] | None = None,
    background: bool = False,
    timeout: float = 600,
    cwd: Path = ROOT,
    python: str | Path = sys.executable,
) -> Any:
    """`python -m hydra_eval.cli ARGS` on the real data, its outputs (and cache) where given: the finished
    process (capture_output, text), or with background=True the running Popen. `python`: another venv's
    interpreter (vLLM's)."""
    full_env = {**os.environ, "HYDRA_EVAL_DATA_DIR": str(DATA_DIR), "HYDRA_FULL_ERROR": "0"}
    if outputs is not None:
        full_env["HYDRA_EVAL_OUTPUT_ROOT"] = str(outputs)
    if cache is not None:
        full_env["HYDRA_EVAL_CACHE_DIR"] = str(cache)
    full_env.update(env or {})
    cmd = [str(python), "-m", "hydra_eval.cli", *args]
    if background:
        return subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def kill_after_first_block(proc: subprocess.Popen[str], folder: Path, pattern: str, timeout: float = 120) -> int:
    """kill -9 a running job as soon as the first file matching `pattern` below `folder` holds a saved block;
    returns the lines saved by then."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        files = list(folder.glob(pattern))
        if files and files[0].stat().st_size > 0:
            proc.kill()
            proc.wait()
            return sum(1 for _ in files[0].open())
        assert proc.poll() is None, "the job ended before it could be killed"
        time.sleep(0.02)
    raise AssertionError("no block was saved in time")


def fail_once(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """Fails the first time (when the marker file $HYDRA_EVAL_TEST_MARKER does not exist yet), then reads."""
    marker = Path(os.environ["HYDRA_EVAL_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("failed once\n")
        raise OSError("simulated failure of a first attempt")
    return read_rows_with_labels(directory, files)


def hang(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """Never finishes on its own (a job for the scheduler to kill)."""
    time.sleep(3600)
    return read_rows_with_labels(directory, files)


def summary_lines(stdout: str) -> list[str]:
    """The summary table's lines (header, rule, rows): the paired comparison printed after a blank line is not
    part of it."""
    lines = stdout.splitlines()
    return lines[: lines.index("")] if "" in lines else lines


def record(model: str, dataset: str, version: str, mode: str, metrics: dict[str, float], **fields: Any) -> Any:
    """A Results record with only what the summary table shows (no rows, no CIs)."""
    from hydra_eval.results import Results

    base: dict[str, Any] = {"n": 0, "data_source": "", "fingerprints": {}, "convention": ""}
    return Results(model=model, dataset=dataset, version=version, mode=mode, metrics=metrics, **{**base, **fields})
