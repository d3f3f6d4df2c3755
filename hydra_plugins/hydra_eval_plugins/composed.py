"""What the sweeper and the launchers share: each job's config composed once, and the two places where
Hydra's public API falls short, each in one function pinned by a test (tests/test_config.py)."""

# No `from __future__ import annotations`: Hydra runs plugin modules before they are in sys.modules.

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig

_COMPOSED: dict[tuple[int, tuple[str, ...]], DictConfig] = {}


def sweep_config(context: HydraContext, config: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """A job's config, as Hydra's config loader composes it (public API), composed once per sweep process:
    the sweeper plans with it and the launcher reads the job's resources from the same object."""
    key = (id(config), tuple(overrides))
    if key not in _COMPOSED:
        _COMPOSED[key] = context.config_loader.load_sweep_config(config, list(overrides))
    return _COMPOSED[key]


def failed_return(overrides: Sequence[str], working_dir: str, error: BaseException) -> JobReturn:
    """A FAILED JobReturn carrying `error`, built through JobReturn's public fields and setter."""
    ret = JobReturn(overrides=list(overrides), working_dir=working_dir, status=JobStatus.FAILED)
    ret.return_value = error
    return ret


def failure_of(ret: JobReturn) -> Any:
    """The exception of a FAILED JobReturn. Hydra's public `return_value` re-raises it (and prints a line to
    stderr), so the stored value is read directly: hydra-core 1.3's `JobReturn._return_value` (pinned in
    pyproject.toml; tests/test_config.py::test_failure_of_reads_hydras_job_return fails if it moves)."""
    assert ret.status == JobStatus.FAILED, "failure_of is for failed jobs"
    return ret._return_value
