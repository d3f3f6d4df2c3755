"""hydra_eval's sweeper (hydra/sweeper=eval, the default): Hydra's basic grid sweep, plus what an evaluation
sweep needs. It sees the job list before launch and the returns after, so it

- splits a dataset larger than max_partition_size into shards, one job each, then merges their predictions
  and scores them as one result;
- relaunches a failed job up to `retry` times before reporting it failed (not one that failed on bad input,
  a UserError: the same error would come back);
- never raises for a failed job: it writes failed.json (job, error, log path), which the summary shows as `-`
  and which makes the command exit non-zero;
- with dry_run=true prints the plan and launches nothing.
"""

# No `from __future__ import annotations`: Hydra runs plugin modules before they are in sys.modules, where
# dataclasses would look their string annotations up.

import itertools
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_eval import columns
from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles, write_json
from hydra_eval.plan import (
    FAILED_FILE,
    PLAN_FILE,
    PlannedJob,
    check_baselines,
    check_viz_baseline,
    describe,
    expand,
    judge_jobs,
    launcher_name,
    without_key,
)
from hydra_eval.results import FailedJob
from hydra_plugins.hydra_eval_plugins.composed import failure_of, sweep_config

log = logging.getLogger(__name__)


@dataclass
class EvalSweeperConf:
    _target_: str = "hydra_plugins.hydra_eval_plugins.sweeper.EvalSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once (null: all)
    params: dict[str, str] | None = None  # sweeps of their own (a suite sets dataset: a,b,c here)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="hydra/sweeper", name="eval", node=EvalSweeperConf)


def _count_rows(cfg: DictConfig) -> int:
    from hydra_eval.data.loader import count_rows

    return count_rows(cfg.dataset)


def grid(overrides: Sequence[Override]) -> list[list[str]]:
    """Every combination of the sweep overrides (a,b,c), each with the plain ones; a key given twice keeps
    its last value. Hydra's basic sweeper, over the public Override API."""
    choices: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise UserError(f"{key}: only lists of values (a,b,c) can be swept, not {override.input_line}")
            choices[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(combo) for combo in itertools.product(*choices.values())]


def _error_line(ret: JobReturn) -> str:
    value = failure_of(ret) if ret.status == JobStatus.FAILED else ret.return_value
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else str(value)
    return (text.strip().splitlines() or [""])[0][:500]


class EvalSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _compose(self, overrides: list[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        return sweep_config(self.hydra_context, self.config, overrides)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = {a.split("=", 1)[0].lstrip("+~") for a in arguments}
        # the command line wins over the config's params (a suite's datasets, unless dataset=... is given)
        params = [f"{k}={v}" for k, v in self.params.items() if k not in given]
        try:
            parsed = parser.parse_overrides([*arguments, *params])
            if any(o.get_key_element() == "suite" and o.is_sweep_override() for o in parsed):
                raise UserError("one suite per sweep: a suite is a list of datasets (give dataset=a,b,c for more)")
            combos = grid(parsed)
        except UserError as e:
            log.error("%s", e)
            sys.exit(1)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        try:
            plan = expand(combos, self._compose, _count_rows)
            check_baselines(plan, self._compose)
            check_viz_baseline(plan, self.config.viz.baseline)
        except UserError as e:  # missing data, bad shard settings: one line, before anything is launched
            log.error("%s", e)
            sys.exit(1)
        if not plan:
            log.error("the sweep has no jobs")
            sys.exit(1)
        write_json(sweep_dir / PLAN_FILE, [job.to_dict() for job in plan])
        if self.config.dry_run:
            print(describe(plan, launcher_name(self.config)), end="")
            return []
        final = self._launch(plan, int(self.config.retry))
        failed = [self._failure(plan[i], ret, num, sweep_dir) for i, (ret, num) in final.items() if not _ok(ret)]
        failed += self._merge_shards(plan, final, sweep_dir)
        returns = [ret for ret, _ in final.values()]
        judged = {i: sweep_dir / str(num) for i, (ret, num) in final.items() if _ok(ret) and plan[i].judge}
        judging = judge_jobs(plan, judged) if judged else []
        if judging:  # the judge jobs, after every job whose answers they judge
            start = 1 + max(num for _, num in final.values())
            log.info("judging: %d job(s), from job #%d", len(judging), start)
            after = self._launch(judging, int(self.config.retry), start)
            failed += [self._failure(judging[i], r, n, sweep_dir) for i, (r, n) in after.items() if not _ok(r)]
            returns += [ret for ret, _ in after.values()]
        write_json(sweep_dir / FAILED_FILE, [f.to_json() for f in failed])
        return [returns]

    def _launch(self, plan: list[PlannedJob], retry: int, first: int = 0) -> dict[int, tuple[JobReturn, int]]:
        """Launch every job (numbered from `first`), then relaunch the failed ones (new job numbers, same
        overrides) up to `retry` times. Returns plan index -> (last JobReturn, its job number)."""
        final: dict[int, tuple[JobReturn, int]] = {}
        todo, next_num = list(range(len(plan))), first
        for attempt in range(retry + 1):
            step = self.max_batch_size or len(todo)
            for start in range(0, len(todo), step):
                batch = todo[start : start + step]
                returns = self.launcher.launch([plan[i].job_overrides for i in batch], initial_job_idx=next_num)
                for k, (i, ret) in enumerate(zip(batch, returns, strict=True)):
                    final[i] = (ret, next_num + k)
                next_num += len(batch)
            failed = [i for i in todo if not _ok(final[i][0])]
            todo = [i for i in failed if _retryable(final[i][0])]
            for i in failed:
                ret, num = final[i]
                what = "retrying" if attempt < retry and i in todo else "giving up"
                log.warning(
                    "job #%d (%s x %s) failed, attempt %d/%d, %s: %s",
                    num,
                    plan[i].model,
                    plan[i].dataset,
                    attempt + 1,
                    retry + 1,
                    what,
                    _error_line(ret),
                )
            if not todo:
                break
        return final

    def _failure(self, job: PlannedJob, ret: JobReturn, num: int, sweep_dir: Path) -> FailedJob:
        folder = sweep_dir / str(num)
        return FailedJob(
            model=job.model,
            dataset=job.dataset,
            shard=f"{job.shard + 1}/{job.shards}",
            job=num,
            error=_error_line(ret),
            log=str(folder / "hydra-eval.log"),
            overrides=tuple(job.job_overrides),
        )

    def _merge_shards(
        self, plan: list[PlannedJob], final: dict[int, tuple[JobReturn, int]], sweep_dir: Path
    ) -> list[FailedJob]:
        """Merge and score each sharded pair whose shards all succeeded, in this process (no model needed)."""
        from hydra_eval import pipeline, shards

        groups: dict[tuple[str, ...], list[int]] = {}  # one group per configuration (its overrides)
        for i, job in enumerate(plan):
            if job.shards > 1:
                groups.setdefault(tuple(job.overrides), []).append(i)
        failed: list[FailedJob] = []
        for members in groups.values():
            model, dataset = plan[members[0]].pair
            if not all(_ok(final[i][0]) for i in members):
                continue  # its failed shards are already reported
            first = min(final[i][1] for i in members)
            out = sweep_dir / f"merged_{first}_{model}_{dataset}"
            roots = [sweep_dir / str(final[i][1]) for i in sorted(members, key=lambda i: plan[i].shard)]
            try:
                to = columns.override("output_dir", str(out))  # a folder named by the job: quoted
                cfg = self._compose([*without_key(plan[members[0]].overrides, "mode"), "mode=eval", to])
                with open_dict(cfg):
                    del cfg["hydra"]
                shards.merge(roots, JobFiles(root=out, model=model, dataset=dataset))
                pipeline.run(cfg, print_summary=False)
                log.info("merged %d shards of %s x %s into %s", len(roots), model, dataset, out)
            except Exception as e:
                failed.append(
                    FailedJob(
                        model=model,
                        dataset=dataset,
                        shard="merge",
                        job=None,
                        error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:500]}",
                        log=str(out),
                        overrides=tuple(plan[members[0]].overrides),
                    )
                )
        return failed


def _ok(ret: JobReturn) -> bool:
    return ret.status == JobStatus.COMPLETED


def _retryable(ret: JobReturn) -> bool:
    """Crashes, kills and transient errors are worth another launch; bad input (a UserError) and a module that
    is not installed (an ImportError) give the same error again."""
    value = failure_of(ret) if ret.status == JobStatus.FAILED else None
    if isinstance(value, ImportError):
        return False
    return not isinstance(value, UserError) or bool(getattr(value, "transient", False))


register_configs()
