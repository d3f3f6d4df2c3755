"""Where and how a job runs: Hydra job number, sweep folder, Slurm job id, host, git revision."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from hydra_eval.schema import Config


def git_revision(root: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def job_context(cfg: Config) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "git_revision": git_revision(cfg.paths.root_dir),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "hydra_job_num": None,
        "sweep_dir": None,
    }
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        info["hydra_job_num"] = OmegaConf.select(hc, "job.num", default=None)  # type: ignore[arg-type]
        if hc.mode is RunMode.MULTIRUN:
            info["sweep_dir"] = str(Path(hc.sweep.dir).resolve())
    return info
