"""hydra-submitit-launcher's two launchers, extended, and stored in ConfigStore under the plugin's own names
(hydra/launcher=submitit_local|submitit_slurm) and as local|slurm.

What they add to the plugin's launchers, which they subclass:
- resources per job: the launcher settings are resolved in each job's own config, so
  `gpus_per_node: ${model.num_gpus}` gives a 7B model a GPU and a tiny one none, within one sweep;
- no lost sweep: a job that ends without a result (scancel, time limit, OOM kill, a dead node) comes back
  as a FAILED JobReturn carrying the reason and its log folder, instead of an exception that aborts the
  collection of every other job's result;
- local: at most `max_num_workers` jobs at once (OpenCompass's --max-num-workers), and each job pinned to its
  own GPUs (submitit alone gives every local job GPUs 0..n-1).
"""

# No `from __future__ import annotations`: Hydra runs plugin modules before they are in sys.modules, where
# dataclasses would look their string annotations up.

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import II, OmegaConf

from hydra_plugins.hydra_eval_plugins.composed import failed_return, sweep_config

log = logging.getLogger(__name__)

OURS = {"_target_", "max_num_workers", "gpus"}  # keys of ours, not submitit's


# Resources per job, resolved in each job's own config (so one sweep can mix model sizes)
SWEEP_FOLDER = "${hydra.sweep.dir}/.submitit/%j"


@dataclass
class LocalConf(LocalQueueConf):
    """Local processes through submitit: one process per job, at most max_num_workers at once, each job
    pinned to its own GPUs when its model asks for some."""

    _target_: str = "hydra_plugins.hydra_eval_plugins.launchers.LocalLauncher"
    max_num_workers: int | None = None  # jobs running at once (null: all)
    gpus: list[int] | None = None  # GPU ids to hand out (null: all visible, when a job asks for GPUs)
    gpus_per_node: int = II("model.num_gpus")
    timeout_min: int = 1440
    submitit_folder: str = SWEEP_FOLDER


@dataclass
class SlurmConf(SlurmQueueConf):
    """A Slurm cluster through submitit. Every field of submitit's slurm executor can be set on the command
    line (hydra.launcher.partition=gpu, hydra.launcher.setup=[...], ...)."""

    _target_: str = "hydra_plugins.hydra_eval_plugins.launchers.SlurmLauncher"
    partition: str | None = None  # null = the cluster's default partition
    timeout_min: int = 240
    cpus_per_task: int | None = II("model.num_cpus")
    gpus_per_node: int | None = II("model.num_gpus")
    mem_gb: int | None = II("model.mem_gb")
    array_parallelism: int = 64  # jobs of one sweep running at once
    max_num_timeout: int = 3  # a job that hits its time limit is requeued this often; it resumes from its cache
    signal_delay_s: int = 120
    setup: list[str] | None = field(default_factory=list)  # shell lines run before the job, e.g. module load
    submitit_folder: str = SWEEP_FOLDER


def register_configs() -> None:
    """hydra/launcher=submitit_local|submitit_slurm (the plugin's own names, which users know) and =local|slurm
    all select these. The plugin registered its plain launchers under the same names when this module
    imported its config module above; storing ours now replaces them (ConfigStore.store, public API)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name in ("submitit_local", "local"):
        cs.store(group="hydra/launcher", name=name, node=LocalConf, provider="hydra_eval")
    for name in ("submitit_slurm", "slurm"):
        cs.store(group="hydra/launcher", name=name, node=SlurmConf, provider="hydra_eval")


class JobEndedWithoutResult(RuntimeError):
    """The scheduler ended the job before it returned (cancelled, timed out, killed)."""


def visible_gpus() -> list[int]:
    """The GPU ids this process may use: those in CUDA_VISIBLE_DEVICES (submitit's local executor sets that
    variable to the ids it hands out, so they must be the real ids), else every GPU torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        entries = [x.strip() for x in env.split(",") if x.strip()]
        if not all(x.isdecimal() for x in entries):
            raise ValueError(
                f"CUDA_VISIBLE_DEVICES={env} names GPUs by UUID or MIG id: give hydra.launcher.gpus=[...] instead"
            )
        return [int(x) for x in entries]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except ImportError:
        return []


class _Extended(BaseSubmititLauncher):
    def _job_params(self, overrides: Sequence[str]) -> dict[str, Any]:
        """This job's launcher settings, resolved in its own config (so ${model...} refers to its model)."""
        assert self.hydra_context is not None and self.config is not None
        cfg = sweep_config(self.hydra_context, self.config, overrides)
        params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        assert isinstance(params, dict)
        return {str(k): v for k, v in params.items() if k not in OURS}

    def _executor(self, params: dict[str, Any], gpus: Sequence[int] = ()) -> Any:
        import submitit

        params = dict(params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in generic else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
        )
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        specs = []
        for k, overrides in enumerate(job_overrides):
            idx = initial_job_idx + k
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            call = (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
            specs.append((idx, list(overrides), self._job_params(overrides), call))
        return self._run(specs, sweep_dir)

    def _run(
        self, specs: list[tuple[int, list[str], dict[str, Any], tuple[Any, ...]]], sweep_dir: Path
    ) -> list[JobReturn]:
        raise NotImplementedError

    def _collect(self, job: Any, idx: int, overrides: list[str], sweep_dir: Path) -> JobReturn:
        import submitit

        try:
            ret: JobReturn = job.results()[0]
            return ret
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as e:
            state = getattr(job, "state", "UNKNOWN")
            first = (str(e).strip().splitlines() or [""])[0][:300]
            error = JobEndedWithoutResult(
                f"job {job.job_id} ended with state {state} and no result ({first}); "
                f"logs: {sweep_dir / str(idx)} and {job.paths.folder}"
            )
            return failed_return(overrides, str(sweep_dir / str(idx)), error)


class SlurmLauncher(_Extended):
    _EXECUTOR = "slurm"

    def _run(
        self, specs: list[tuple[int, list[str], dict[str, Any], tuple[Any, ...]]], sweep_dir: Path
    ) -> list[JobReturn]:
        groups: dict[str, list[int]] = {}
        for k, (_, _, params, _) in enumerate(specs):
            groups.setdefault(json.dumps(params, sort_keys=True, default=str), []).append(k)
        jobs: list[Any] = [None] * len(specs)
        for key, members in groups.items():  # one job array per distinct set of resources
            executor = self._executor(json.loads(key))
            submitted = executor.map_array(self, *zip(*[specs[k][3] for k in members], strict=True))
            for k, job in zip(members, submitted, strict=True):
                jobs[k] = job
        return [self._collect(job, idx, ov, sweep_dir) for job, (idx, ov, _, _) in zip(jobs, specs, strict=True)]


class LocalLauncher(_Extended):
    """submitit's local executor (one process per job), run as a pool of max_num_workers slots."""

    _EXECUTOR = "local"
    # What submitit's LocalExecutor takes (its update_parameters ignores the rest, e.g. mem_gb)
    _LOCAL_KEYS = ("timeout_min", "gpus_per_node", "tasks_per_node", "nodes", "signal_delay_s", "setup")

    def _executor(self, params: dict[str, Any], gpus: Sequence[int] = ()) -> Any:
        """submitit.LocalExecutor itself, not AutoExecutor, which cannot hand a job its GPUs (visible_gpus)."""
        import submitit

        executor = submitit.LocalExecutor(
            folder=params["submitit_folder"], max_num_timeout=params.get("max_num_timeout", 3)
        )
        settings = {k: params[k] for k in self._LOCAL_KEYS if params.get(k) is not None}
        executor.update_parameters(**settings, visible_gpus=tuple(gpus))
        return executor

    def _run(
        self, specs: list[tuple[int, list[str], dict[str, Any], tuple[Any, ...]]], sweep_dir: Path
    ) -> list[JobReturn]:
        workers = self.params.get("max_num_workers") or len(specs)
        gpus_conf = self.params.get("gpus")
        need_gpus = any((p.get("gpus_per_node") or 0) > 0 for _, _, p, _ in specs)
        free = list(gpus_conf) if gpus_conf is not None else (visible_gpus() if need_gpus else [])
        pending, results = [], {}
        for k, (idx, overrides, params, _) in enumerate(specs):
            n = params.get("gpus_per_node") or 0
            if n > len(free):  # can never run here: report it, run the others
                error = JobEndedWithoutResult(f"job #{idx} asks for {n} GPU(s) but this machine gives {free}")
                results[k] = failed_return(overrides, str(sweep_dir / str(idx)), error)
            else:
                pending.append(k)
        running: dict[int, tuple[Any, list[int]]] = {}
        while pending or running:
            while pending and len(running) < workers:
                k = pending[0]
                idx, _, params, call = specs[k]
                n = params.get("gpus_per_node") or 0
                if n > len(free):
                    break  # wait for a running job to give its GPUs back
                mine, free = free[:n], free[n:]
                executor = self._executor(params, mine)
                running[k] = (executor.submit(self, *call), mine)
                pending.pop(0)
            finished = [k for k, (job, _) in running.items() if job.done()]
            for k in finished:
                job, mine = running.pop(k)
                free += mine
                results[k] = self._collect(job, specs[k][0], specs[k][1], sweep_dir)
            if not finished:
                time.sleep(0.2)
        return [results[k] for k in range(len(specs))]


register_configs()  # Hydra imports every hydra_plugins module when it starts: the schemas exist before composing
