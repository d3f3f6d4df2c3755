"""The job plan of a sweep: model x dataset x shard, each with its overrides and the resources it asks for."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hydra_eval import validate

FAILED_FILE = "failed.json"  # written by the sweeper at the end of a sweep: what failed, why, where its log is
PLAN_FILE = "plan.json"
RESOURCE_KEYS = ("partition", "timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb")


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

    @property
    def pair(self) -> tuple[str, str]:
        return (self.model, self.dataset)

    @property
    def job_overrides(self) -> list[str]:
        """What the launcher runs: shards only compute predictions; they are merged and scored together."""
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
    max_partition_size (shards of near-equal size, contiguous rows)."""
    plan = []
    for overrides in combos:
        cfg = compose(list(overrides))
        validate.check(cfg)
        base = PlannedJob(list(overrides), cfg.model.name, cfg.dataset.name, resources=resources(cfg))
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
    return (
        "\n".join([f"dry run: {len(plan)} job(s) for {pairs} model x dataset pair(s); nothing launched", *lines])
        + "\n"
    )
