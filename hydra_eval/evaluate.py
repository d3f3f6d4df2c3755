"""The eval stage: predictions -> verdicts (judged/<model>/<dataset>.jsonl) -> metrics (results/...json).

Never loads the model and never rewrites what the infer stage wrote: it reads predictions, writes its own files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from hydra_eval import genstats, inputstats, prompts, tasks, usage
from hydra_eval.errors import UserError
from hydra_eval.judges import Judge
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl
from hydra_eval.records import (
    GenPrediction,
    InferMeta,
    Judged,
    Judgment,
    Prediction,
    Verdict,
    prediction_from_json,
)
from hydra_eval.results import Results, build
from hydra_eval.schema import Config, DatasetConfig, JudgeMode

log = logging.getLogger(__name__)


def grouped_metrics(
    dataset: DatasetConfig, judge: Judge, rows: Sequence[Prediction], verdicts: Sequence[Verdict]
) -> dict[str, float]:
    """Each metric again per group (MMLU: per subject), as '<metric>/<group>'; with dataset.group_average,
    also their plain mean over the groups, '<metric>/naive_average'."""
    groups: dict[str, list[Verdict]] = {}
    for row, v in zip(rows, verdicts, strict=True):
        groups.setdefault(str(row.group), []).append(v)
    out: dict[str, float] = {}
    per_metric: dict[str, list[float]] = {}
    for group in sorted(groups):
        for name, value in tasks.score(dataset, judge, groups[group]).items():
            if not name.endswith("_stderr"):
                out[f"{name}/{group}"] = value
                per_metric.setdefault(name, []).append(value)
    if dataset.group_average:
        out.update({f"{name}/naive_average": sum(v) / len(v) for name, v in per_metric.items()})
    return out


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


def judge_usage(judgments: Sequence[Judgment]) -> dict[str, float]:
    """The judge's tokens (and latency, for a served judge) over this job's judge requests, cached or not."""
    out: dict[str, float] = {
        "judge_prompt_tokens": sum(j.prompt_tokens or 0 for j in judgments),
        "judge_completion_tokens": sum(j.completion_tokens or 0 for j in judgments),
    }
    latencies = sorted(j.latency_s for j in judgments if j.latency_s is not None)
    if latencies:
        out["judge_latency_mean_s"] = sum(latencies) / len(latencies)
        out["judge_latency_p95_s"] = usage.percentile(latencies, 95)
    return out


def _judged_eval(cfg: Config, files: JobFiles, meta: InferMeta, rows: list[Prediction], t0: float) -> Results:
    """A dataset scored by a judge model: the judgments give the score, its CI and the parse failures."""
    from hydra_eval.judging import scores
    from hydra_eval.judging.stage import read_judgments

    dataset = cfg.dataset
    judge_meta, judgments = read_judgments(files)
    ids = [r.id for r in rows]
    unknown = {j.id for j in judgments} - set(ids)
    if unknown:
        raise UserError(f"{files.judgments} judges rows that {files.predictions} does not have: rerun mode=judge")
    metrics = scores.compute(dataset.judge, ids, judgments)
    diagnostics = {k: metrics.pop(k) for k in scores.DIAGNOSTICS}
    if dataset.group_metrics_by:
        metrics.update(scores.grouped(dataset.judge, {r.id: str(r.group) for r in rows}, judgments))
    diagnostics.update(judge_usage(judgments))
    by_row: dict[str, list[dict[str, Any]]] = {}
    for j in judgments:
        by_row.setdefault(j.id, []).append({k: v for k, v in j.to_json().items() if k != "schema_version"})
    write_jsonl(
        files.judged,
        [
            {
                **r.to_json(),
                "judge_verdicts": [j["verdict"] for j in by_row.get(r.id, [])],
                "judgments": by_row.get(r.id, []),
            }
            for r in rows
        ],
    )
    generated = [r for r in rows if isinstance(r, GenPrediction)]
    stats = genstats.summary(generated) if generated else None
    if stats is not None:
        diagnostics["length_capped"] = stats["length_capped"]
        warn_truncation(cfg, stats)
    diagnostics.update(inputstats.check(dataset.name, rows))  # prompts cut to fit model.max_seq_len, if any
    results = build(
        meta,
        judge_meta.convention,
        metrics,
        ids=ids,
        eval_s=time.perf_counter() - t0,
        diagnostics=diagnostics,
        per_row=scores.per_row(dataset.judge, ids, judgments),
        usage=usage.summary(rows),
        generation=stats,
        judge=judge_meta,
        provenance_extra={"judge": {"name": judge_meta.judge, "identity": judge_meta.identity}},
    )
    write_json(files.results, results.to_json())
    log.info(
        "eval: %s on %s judged by %s: %s -> %s",
        meta.model,
        meta.dataset,
        judge_meta.judge,
        {k: round(v, 2) for k, v in metrics.items() if "/" not in k},
        files.results,
    )
    return results


def run_eval(cfg: Config, files: JobFiles) -> Results:
    t0 = time.perf_counter()
    dataset = cfg.dataset
    meta, rows = read_predictions(files, dataset)
    if dataset.judge.mode is not JudgeMode.none:
        return _judged_eval(cfg, files, meta, rows, t0)
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
    diagnostics: dict[str, float] = {}
    if stats is not None:
        diagnostics["length_capped"] = stats["length_capped"]  # beside the scores: answers may be cut short
        warn_truncation(cfg, stats)
    if verdicts and all(v.extracted for v in verdicts):  # answers read from generations: how many had none
        diagnostics["no_answer"] = 100.0 * sum(v.answer is None for v in verdicts) / len(verdicts)
    diagnostics.update(inputstats.check(dataset.name, rows, verdicts))  # inputs cut, candidates tied, if any
    ids = [r.id for r in rows]
    results = build(
        meta,
        task.convention,
        metrics,
        ids=ids,
        eval_s=time.perf_counter() - t0,
        diagnostics=diagnostics,
        per_row=tasks.per_row(dataset, judge, ids, verdicts),
        usage=usage.summary(rows),
        generation=stats,
    )
    write_json(files.results, results.to_json())
    log.info(
        "eval: %s on %s: %s -> %s",
        meta.model,
        meta.dataset,
        {k: round(v, 2) for k, v in results.metrics.items()},
        files.results,
    )
    return results
