"""Each finished job's per-row scores and what each row showed, read back from its judged file.

The statistics (hydra_eval/compare.py) pair two models' rows by id; the report's disagreement browser shows the
rows where their answers differ. A metric has per-row scores when it is a mean over rows: accuracy-like metrics
of native datasets (one verdict field each) and every per-document metric of an lm-eval job. A judge's score,
win rate or judged accuracy is a ratio of sums instead (each row's weighted verdicts over its weights, parse
failures left out): its rows keep a (numerator, denominator) pair. Means over other units (IFEval's
instruction-level accuracy, perplexity, avg@k, per-turn and per-category judge scores) have none and are left
out of the paired tests; the table still shows them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_eval.judging import scores as judge_scores
from hydra_eval.outputs import JobFiles, read_json, read_jsonl
from hydra_eval.schema import JudgeMode

# native metric -> the verdict field whose mean (x100) it is
VERDICT_FIELD = {
    "accuracy": "correct",
    "acc": "correct",
    "pass@1": "correct",
    "prompt_level_strict_acc": "correct",
    "accuracy_strict": "correct_strict",
    "acc_norm": "correct_norm",
    "prompt_level_loose_acc": "correct_loose",
}
TEXT_CAP = 1500  # characters of a prompt or output kept for the report


@dataclass(frozen=True)
class RowView:
    """One row as the report shows it: the prompt, the gold answer, and this model's answer and output."""

    prompt: str
    gold: str
    answer: str  # what the model chose or extracted: two models disagree on a row when these differ
    output: str  # the generation, or the per-choice scores


@dataclass(frozen=True)
class JobRows:
    model: str
    dataset: str
    version: str
    mode: str
    data_fingerprint: str  # the rows' content: two jobs compare only when these and the versions agree
    metrics: dict[str, float]  # the job's results
    scores: dict[str, dict[str, float]]  # metric -> row id -> the row's value, in the metric's unit
    views: dict[str, RowView]  # row id -> the row
    rates: dict[str, float]  # truncation / parse-failure rates in percent, where the job has them
    # judge metrics: metric -> row id -> (the row's weighted verdicts x scale, their weight)
    ratios: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    judge_metric: str | None = None  # a judged job's own metric (score, win_rate, accuracy)
    repeated: int = 0  # rows whose id an earlier row has (files from before ids were checked): no per-row scores


def fingerprint(results: dict[str, Any]) -> str:
    data = results.get("fingerprints", {}).get("data")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _cap(text: str) -> str:
    return text if len(text) <= TEXT_CAP else text[:TEXT_CAP] + " …"


def _tail(text: str) -> str:
    """A prompt's end: few-shot examples come first, the row's own question last."""
    return text if len(text) <= TEXT_CAP else "… " + text[-TEXT_CAP:]


def _native_view(row: dict[str, Any]) -> RowView:
    choices = row.get("choices") or row.get("options") or []
    gold = row.get("gold")
    if row.get("answers"):
        gold_text = " | ".join(str(a) for a in row["answers"])
    elif isinstance(gold, int) and 0 <= gold < len(choices):
        gold_text = str(choices[gold])
    else:
        gold_text = str(gold)
    prompt = row.get("prompt") or row.get("context") or (row.get("prompts") or [""])[0]
    if "answer" in row:  # read from a generation
        answer = "(none)" if row["answer"] is None else str(row["answer"])
    elif row.get("pred") is not None:
        pred = int(row["pred"])
        answer = str(choices[pred]) if 0 <= pred < len(choices) else str(pred)
    else:
        answer = ""
    if "generation" in row or "generations" in row:
        output = str(row.get("generation", (row.get("generations") or [""])[0]))
    else:
        output = json.dumps([round(s, 4) for s in row.get("scores", [])])
    return RowView(_tail(str(prompt)), _cap(gold_text), _cap(answer), _cap(output))


def _lmeval_answer(filtered: Any) -> str:
    """lm-eval's filtered responses: for choices scored by log-likelihood, the index of the highest."""
    values = next(iter(filtered.values()), None) if isinstance(filtered, dict) else filtered
    if (
        isinstance(values, list)
        and values
        and all(isinstance(v, list) and v and isinstance(v[0], float) for v in values)
    ):
        lls = [v[0] for v in values]
        return str(lls.index(max(lls)))
    return json.dumps(values, ensure_ascii=False)


def _native(
    results: dict[str, Any], rows: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, float]], dict[str, RowView]]:
    scores: dict[str, dict[str, float]] = {}
    for metric, value in results["metrics"].items():
        field = VERDICT_FIELD.get(metric)
        if field and rows and all(field in r for r in rows):
            values = {str(r["id"]): 100.0 * bool(r[field]) for r in rows}
            if mean_of(list(values.values()), value):  # not with num_samples > 1 (pass@1 is a mean of c/n)
                scores[metric] = values
    return scores, {str(r["id"]): _native_view(r) for r in rows}


def mean_of(values: list[float], reported: float) -> bool:
    """Whether `reported` is the plain mean of these finite per-row values (else they are not its rows)."""
    if not values or not all(math.isfinite(v) for v in values) or not math.isfinite(reported):
        return False
    return abs(sum(values) / len(values) - reported) <= 1e-6 * max(1.0, abs(reported))


def _lmeval(
    results: dict[str, Any], rows: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, float]], dict[str, RowView]]:
    """lm-eval jobs report '<task>/<metric>' (x100 where lm-eval's is a fraction): per-row values in the same
    unit, scaled as the job's aggregate shows it."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_task.setdefault(str(r["task"]), []).append(r)
    scores: dict[str, dict[str, float]] = {}
    for name, value in results["metrics"].items():
        task, _, metric = name.rpartition("/")
        docs = by_task.get(task, [])
        values = [d["metrics"].get(metric) for d in docs]
        if not docs or not all(isinstance(v, int | float) for v in values):  # bools too (IFEval's prompt-level)
            continue
        mean = sum(float(v) for v in values) / len(values)
        scale = 100.0 if abs(100 * mean - value) < abs(mean - value) else 1.0
        scaled = [scale * float(v) for v in values]
        if not mean_of(scaled, value):
            continue  # not a plain mean over documents (perplexity, bleu, ...), or not finite
        scores[name] = {f"{d['task']}:{d['doc_id']}": v for d, v in zip(docs, scaled, strict=True)}
    views = {
        f"{r['task']}:{r['doc_id']}": RowView(
            _tail(str(r.get("prompt", ""))),
            _cap(str(r.get("target", ""))),
            _cap(_lmeval_answer(r.get("filtered"))),
            _cap(json.dumps(r.get("filtered"), ensure_ascii=False)),
        )
        for r in rows
    }
    return scores, views


def judge_mode(results: dict[str, Any]) -> JudgeMode | None:
    """How a judged job was judged (None: no judge, or a mode this version does not know)."""
    mode = (results.get("judge") or {}).get("mode")
    return JudgeMode(mode) if mode in {m.value for m in JudgeMode} and mode != JudgeMode.none.value else None


def judge_ratios(
    results: dict[str, Any], rows: list[dict[str, Any]], mode: JudgeMode | None
) -> dict[str, dict[str, tuple[float, float]]]:
    """A judged job's metric as per-row (numerator, denominator) pairs, when their ratio of sums is the
    reported value (judged rows carry their judgments: score and weight, score null for a parse failure)."""
    if mode is None or not rows or not all(isinstance(r.get("judgments"), list) for r in rows):
        return {}
    name, scale = judge_scores.METRIC[mode], judge_scores.scale_of(mode)
    reported = results["metrics"].get(name)
    ratios: dict[str, tuple[float, float]] = {}
    for r in rows:
        parsed = [j for j in r["judgments"] if j.get("score") is not None]
        weight = float(sum(j.get("weight", 1) for j in parsed))
        ratios[str(r["id"])] = (scale * sum(j.get("weight", 1) * j["score"] for j in parsed), weight)
    numerator, denominator = (sum(v[k] for v in ratios.values()) for k in (0, 1))
    if not isinstance(reported, int | float) or not math.isfinite(reported) or denominator <= 0:
        return {}
    if abs(numerator / denominator - reported) > 1e-6 * max(1.0, abs(reported)):
        return {}
    return {name: ratios}


def rates(results: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float]:
    """Percent of rows cut at the length cap, with no answer read from the generation, or whose judge reply
    did not parse."""
    out: dict[str, float] = {}
    if rows and all("answer" in r for r in rows):
        out["no_answer"] = 100.0 * sum(r["answer"] is None for r in rows) / len(rows)
    generation = results.get("generation") or {}
    if "length_capped" in generation:
        out["truncated"] = float(generation["length_capped"])
    metrics = results["metrics"]
    calls = metrics.get("judge_calls", results.get("n"))  # several calls per row: turns, both orders
    if "judge_parse_failures" in metrics and calls:
        out["judge_parse_failures"] = 100.0 * float(metrics["judge_parse_failures"]) / float(calls)
    return out


def from_job(files: JobFiles) -> JobRows:
    return build(read_json(files.results), read_jsonl(files.judged) if files.judged.is_file() else [])


def build(results: dict[str, Any], rows: list[dict[str, Any]]) -> JobRows:
    """From a job's results and its judged rows (read from its folder, or from its MLflow run)."""
    repeated = 0
    if rows and "task" in rows[0] and "doc_id" in rows[0]:
        scores, views = _lmeval(results, rows)
    else:
        scores, views = _native(results, rows)
        repeated = len(rows) - len(views)
        if repeated:  # paired by id, such rows would be tested and averaged as fewer rows than the job scored
            scores = {}
    mode = judge_mode(results)
    ratios = judge_ratios(results, rows, mode) if not repeated else {}
    for name in ratios:  # a judge's metric is its ratio, never a verdict field's mean
        scores.pop(name, None)
    return JobRows(
        model=results["model"],
        dataset=results["dataset"],
        version=results["version"],
        mode=results["mode"],
        data_fingerprint=fingerprint(results),
        metrics={k: float(v) for k, v in results["metrics"].items()},
        scores=scores,
        views=views,
        rates=rates(results, rows),
        ratios=ratios,
        judge_metric=judge_scores.METRIC[mode] if mode is not None else None,
        repeated=repeated,
    )


def under(root: Path) -> list[JobRows]:
    """Every finished job below root (a run or a sweep folder)."""
    return [from_job(files) for files in JobFiles.finished_under(root)]
