"""The job plan of a sweep: model x dataset x shard, each with its overrides and the resources it asks for."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hydra_eval import columns, validate
from hydra_eval.errors import UserError
from hydra_eval.schema import JudgeMode

FAILED_FILE = "failed.json"  # written by the sweeper at the end of a sweep: what failed, why, where its log is
PLAN_FILE = "plan.json"
RESOURCE_KEYS = ("partition", "timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb")
JUDGE_RESOURCES = {"cpus_per_task": "num_cpus", "gpus_per_node": "num_gpus", "mem_gb": "mem_gb"}  # launcher key ->
#   the judge model's field: a judge job asks for the judge's resources


def shard_bounds(n: int, index: int, count: int, unit: int) -> tuple[int, int]:
    """Rows [start, end) of shard `index` of `count`: whole blocks of `unit` rows (the infer stage's saved
    batches), near-equal in number. A shard then computes exactly the batches an unsharded run computes, so
    merged shards equal an unsharded run bit for bit."""
    if not 0 <= index < count:
        raise ValueError(f"shard.index must be in [0, {count}), not {index}")
    blocks = -(-n // unit)
    return min(n, index * blocks // count * unit), min(n, (index + 1) * blocks // count * unit)


def without_key(overrides: list[str], key: str) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]


@dataclass
class PlannedJob:
    overrides: list[str]  # the user's overrides for this model x dataset (what the merge step reuses)
    model: str
    dataset: str
    shard: int = 0
    shards: int = 1
    rows: int | None = None  # rows in this shard (known when the dataset was sized for sharding)
    resources: dict[str, Any] = field(default_factory=dict)
    judge: str | None = None  # judged by this model in a job of its own, after this one only generates
    baseline: str | None = None  # pairwise: the model whose answers are the baseline (in this sweep)

    @property
    def pair(self) -> tuple[str, str]:
        return (self.model, self.dataset)

    @property
    def job_overrides(self) -> list[str]:
        """What the launcher runs: shards only compute predictions; they are merged and scored together."""
        if self.judge is not None:  # generate only: the judge job judges and scores
            return [*without_key(self.overrides, "mode"), "mode=infer"]
        if self.shards == 1:
            return list(self.overrides)
        base = without_key(self.overrides, "mode")
        return [*base, f"shard.index={self.shard}", f"shard.count={self.shards}", "mode=infer"]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "job_overrides": self.job_overrides}


def launcher_name(cfg: DictConfig) -> str:
    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    return target.rsplit(".", 1)[-1] or "unknown"


def resources(cfg: DictConfig) -> dict[str, Any]:
    launcher = OmegaConf.select(cfg, "hydra.launcher", default=None)
    if launcher is None:
        return {}
    return {k: OmegaConf.select(launcher, k, default=None) for k in RESOURCE_KEYS if k in launcher}


def expand(
    combos: Sequence[Sequence[str]],
    compose: Callable[[list[str]], DictConfig],
    count_rows: Callable[[DictConfig], int],
) -> list[PlannedJob]:
    """One PlannedJob per combination, or per shard where the dataset has more rows than
    max_partition_size (shards of near-equal size, contiguous rows). Combinations of one model and dataset
    are named apart by the settings that differ (hydra_eval/columns.py)."""
    cfgs = []
    for overrides in combos:
        cfgs.append(compose(list(overrides)))
        validate.check(cfgs[-1])
    named = columns.names([(o, c.model.name, c.dataset.name) for o, c in zip(combos, cfgs, strict=True)])
    plan = []
    for combo, cfg, (model, dataset) in zip(combos, cfgs, named, strict=True):
        overrides = [*combo, *_naming(cfg, model, dataset)]
        base = PlannedJob(overrides, model, dataset, resources=resources(cfg))
        if _judged(cfg):
            base.judge = cfg.judge.name
            if cfg.dataset.judge.mode == JudgeMode.pairwise and not cfg.dataset.judge.baseline_field:
                base.baseline = cfg.dataset.judge.baseline
            plan.append(base)
            continue
        size = cfg.max_partition_size
        if not size or not (cfg.mode.infer and cfg.mode.eval):
            plan.append(base)
            continue
        n = count_rows(cfg)
        unit = max(1, cfg.checkpoint_every)
        k = max(1, min(math.ceil(n / size), -(-n // unit)))  # a shard holds at least one saved batch
        if k == 1:
            base.rows = n
            plan.append(base)
            continue
        for i in range(k):
            start, end = shard_bounds(n, i, k, unit)
            plan.append(PlannedJob(list(overrides), base.model, base.dataset, i, k, end - start, base.resources))
    return plan


def _naming(cfg: DictConfig, model: str, dataset: str) -> list[str]:
    """The overrides that give a job its names (a served model keeps asking for the model it names)."""
    out = []
    if model != cfg.model.name:
        out.append(columns.override("model.name", model))
        if "api" in cfg.model and cfg.model.api.model is None:
            out.append(columns.override("model.api.model", cfg.model.name))
    if dataset != cfg.dataset.name:
        out.append(columns.override("dataset.name", dataset))
    return out


def _judged(cfg: DictConfig) -> bool:
    """Generated in one job, judged in another: the judge stage is on, with infer, for a judged dataset."""
    if cfg.dataset.judge.mode == JudgeMode.none or not cfg.mode.judge:
        return False
    if cfg.judge is None:
        raise UserError(
            f"dataset {cfg.dataset.name} is scored by a judge model: give judge=<model config> (conf/judge/, "
            "e.g. judge=smollm2_135m), or mode=infer to generate only"
        )
    return bool(cfg.mode.infer)


def judge_jobs(plan: Sequence[PlannedJob], folders: dict[int, Path]) -> list[PlannedJob]:
    """The judge jobs of a sweep, one per judged job that finished (`folders`: plan index -> its folder): each
    judges and scores the answers in that folder (output_dir) with the judge's resources. Pairwise: the
    baseline's folder is handed over, and the baseline itself is not judged against itself."""
    out = []
    for i, job in enumerate(plan):
        if job.judge is None or i not in folders or job.model == job.baseline:
            continue
        extra = [f"output_dir={folders[i]}"]
        if job.baseline is not None:
            theirs = [k for k, j in enumerate(plan) if j.model == job.baseline and j.dataset == job.dataset]
            if theirs and theirs[0] in folders:
                extra.append(f"dataset.judge.baseline_dir={folders[theirs[0]]}")
        resources = {k: f"${{judge.{v}}}" for k, v in JUDGE_RESOURCES.items() if k in job.resources}
        extra += [f"hydra.launcher.{k}={v}" for k, v in resources.items()]
        overrides = [*without_key(job.overrides, "mode"), "mode=judge", *extra]
        out.append(PlannedJob(overrides, job.model, job.dataset, resources=resources))
    return out


def check_baselines(plan: Sequence[PlannedJob], compose: Callable[[list[str]], DictConfig]) -> None:
    """A pairwise baseline named in a sweep must be one of its models on that dataset (or given by folder)."""
    for job in plan:
        if job.baseline is None or job.judge is None:
            continue
        if any(j.model == job.baseline and j.dataset == job.dataset for j in plan):
            continue
        cfg = compose(list(job.overrides))
        if cfg.dataset.judge.baseline_dir or cfg.dataset.judge.baseline_field:
            continue
        raise UserError(
            f"dataset.judge.baseline={job.baseline}: no {job.baseline} x {job.dataset} job in this sweep; add "
            f"model={job.baseline} to the sweep, or give dataset.judge.baseline_dir=<a folder with its answers>"
        )


def check_viz_baseline(plan: Sequence[PlannedJob], baseline: str | None) -> None:
    """viz.baseline must be one of the sweep's models: said now, not after every job has run."""
    models = sorted({job.model for job in plan})
    if baseline is not None and plan and baseline not in models:
        raise UserError(f"viz.baseline={baseline} is not one of this sweep's models: {', '.join(models)}")


def describe(plan: Sequence[PlannedJob], launcher: str) -> str:
    header = ["#", "model", "dataset", "shard", "rows", "launcher", "resources", "overrides"]
    rows = [header]
    for i, job in enumerate(plan):
        res = " ".join(f"{k}={v}" for k, v in job.resources.items() if v is not None) or "-"
        rows.append(
            [
                str(i),
                job.model,
                job.dataset,
                f"{job.shard + 1}/{job.shards}",
                "all" if job.rows is None else str(job.rows),
                launcher,
                res,
                " ".join(job.job_overrides),
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    pairs = len({j.pair for j in plan})
    judged = [j for j in plan if j.judge is not None and j.model != j.baseline]
    if judged:
        judges = ", ".join(sorted({str(j.judge) for j in judged}))
        lines.append(f"then {len(judged)} judge job(s) (judge={judges}), one per judged job, after all of these")
    return (
        "\n".join([f"dry run: {len(plan)} job(s) for {pairs} model x dataset pair(s); nothing launched", *lines])
        + "\n"
    )
