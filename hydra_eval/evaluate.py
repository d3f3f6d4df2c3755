"""The eval stage: predictions -> verdicts (judged/<model>/<dataset>.jsonl) -> metrics (results/...json).

Never loads the model and never rewrites what the infer stage wrote: it reads predictions, writes its own files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from hydra_eval import genstats, prompts, tasks, usage
from hydra_eval.errors import UserError
from hydra_eval.judges import Judge
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl
from hydra_eval.records import GenPrediction, InferMeta, Judged, Prediction, Verdict, prediction_from_json
from hydra_eval.schema import Config, DatasetConfig

log = logging.getLogger(__name__)


def grouped_metrics(
    dataset: DatasetConfig, judge: Judge, rows: Sequence[Prediction], verdicts: Sequence[Verdict]
) -> dict[str, float]:
    """Each metric again per group (MMLU: per subject), as '<metric>/<group>'."""
    groups: dict[str, list[Verdict]] = {}
    for row, v in zip(rows, verdicts, strict=True):
        groups.setdefault(str(row.group), []).append(v)
    return {
        f"{name}/{group}": value
        for group in sorted(groups)
        for name, value in tasks.score(dataset, judge, groups[group]).items()
        if not name.endswith("_stderr")
    }


def read_predictions(files: JobFiles, dataset: DatasetConfig) -> tuple[InferMeta, list[Prediction]]:
    if not files.predictions.is_file() or not files.infer_meta.is_file():
        raise UserError(f"no predictions at {files.predictions}: run mode=infer (or mode=all) into this folder")
    meta = InferMeta.from_json(read_json(files.infer_meta), str(files.infer_meta))
    if prompts.version(dataset) != meta.version:
        raise UserError(
            f"{files.predictions} was made with {meta.dataset} version {meta.version}, but the config now "
            f"gives version {prompts.version(dataset)}: rerun mode=infer"
        )
    where = str(files.predictions)
    return meta, [prediction_from_json(r, where) for r in read_jsonl(files.predictions)]


def warn_truncation(cfg: Config, stats: dict[str, Any]) -> None:
    assert cfg.dataset.gen is not None
    share, limit = stats["length_capped"], 100 * cfg.dataset.gen.length_warn_share
    if share > limit:
        max_new = cfg.dataset.gen.max_out_len or cfg.model.max_out_len
        log.warning(
            "%.1f%% of %s generations hit the length cap of %d new tokens (answers may be cut short): raise "
            "dataset.gen.max_out_len",
            share,
            cfg.dataset.name,
            max_new,
        )
    unclosed = stats.get("reasoning_unclosed", 0)
    if unclosed:
        log.warning(
            "%d of %d %s generations opened a reasoning block and never closed it: scored as empty answers",
            unclosed,
            stats["generations"],
            cfg.dataset.name,
        )


def run_eval(cfg: Config, files: JobFiles) -> dict[str, Any]:
    t0 = time.perf_counter()
    dataset = cfg.dataset
    meta, rows = read_predictions(files, dataset)
    task = tasks.for_dataset(dataset, cfg.model)
    judge, verdicts = task.judge(rows)
    write_jsonl(files.judged, [Judged(r, v).to_json() for r, v in zip(rows, verdicts, strict=True)])
    harness = [v.harness_error for v in verdicts if v.harness_error]
    if harness:  # a failure of the harness is never the model's: no result, the job fails, the rows say why
        raise UserError(
            f"{len(harness)} of {len(rows)} rows could not be scored (harness failure, not the model's; "
            f"details in {files.judged}): {harness[0][:300]}"
        )
    metrics = tasks.score(dataset, judge, verdicts)
    if dataset.group_metrics_by:
        metrics.update(grouped_metrics(dataset, judge, rows, verdicts))
    generated = [r for r in rows if isinstance(r, GenPrediction)]
    stats = genstats.summary(generated) if generated else None
    if stats is not None:
        metrics["length_capped"] = stats["length_capped"]  # in the table and MLflow beside the scores
        warn_truncation(cfg, stats)
    results = meta.results(task.convention, metrics, time.perf_counter() - t0, usage.summary(rows), stats)
    write_json(files.results, results)
    log.info(
        "eval: %s on %s: %s -> %s",
        meta.model,
        meta.dataset,
        {k: round(v, 2) for k, v in results["metrics"].items()},
        files.results,
    )
    return results
