"""The eval stage: raw outputs -> per-sample answers -> metrics in results/<model>/<dataset>.json.

Never loads the model: it reads what the infer stage wrote.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra_eval import prompts, scoring, usage
from hydra_eval.errors import UserError
from hydra_eval.metrics import accuracy_metrics, perplexity
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


def ppl_task(ppl: Any, rows: list[dict[str, Any]]) -> str:
    """multiple_choice or loglikelihood; `auto` (dataset=custom): loglikelihood when every row has one
    candidate (free-form QA), else multiple_choice."""
    if ppl.task != "auto":
        return str(ppl.task)
    return "loglikelihood" if rows and all(len(r["candidates"]) == 1 for r in rows) else "multiple_choice"


def judge_ppl(row: dict[str, Any], ppl: Any, task: str) -> dict[str, Any]:
    logprobs = [c["logprob"] for c in row["candidates"]]
    if task == "loglikelihood":  # one continuation: is it the greedy one, and how likely is it
        return {"logprob": logprobs[0], "correct": bool(row["candidates"][0]["greedy"])}
    if ppl.convention == "opencompass":
        scores = [scoring.opencompass_ppl(c["logprob"], c["n_tokens"]) for c in row["candidates"]]
        pred = scoring.argmin_first(scores)
        return {"scores": scores, "pred": pred, "correct": pred == row["gold"]}
    norm = scoring.lmeval_acc_norm_scores(logprobs, row["choices"])
    pred, pred_norm = scoring.argmax_first(logprobs), scoring.argmax_first(norm)
    return {
        "scores": logprobs,
        "scores_norm": norm,
        "pred": pred,
        "correct": pred == row["gold"],
        "pred_norm": pred_norm,
        "correct_norm": pred_norm == row["gold"],
    }


def judge_gen(row: dict[str, Any], gen: Any, labels: list[str]) -> dict[str, Any]:
    text = row["generation"]
    extractor = gen.extractor
    if extractor == "auto":
        extractor = "exact_match" if row.get("answers") else "first_letter"
    if extractor == "gsm8k":
        strict, flexible = scoring.gsm8k_answers(text)
        answer = row["answers"][0]
        return {
            "answer": flexible,
            "correct": scoring.gsm8k_match(flexible, answer),
            "correct_strict": scoring.gsm8k_match(strict, answer),
        }
    if extractor == "exact_match":
        return {
            "answer": text.strip().split("\n")[0],
            "correct": scoring.exact_match(text, row.get("answers", [])),
        }
    if extractor == "edit_distance":
        letter: str | None = scoring.edit_distance_choice(text, labels, row["options"])
    elif extractor == "first_letter":
        letter = scoring.first_letter(text, labels)
    else:
        raise UserError(
            "dataset.gen.extractor must be first_letter, edit_distance, exact_match, gsm8k or auto, "
            f"not '{gen.extractor}'"
        )
    pred = labels.index(letter) if letter is not None else -1
    return {"answer": letter, "pred": pred, "correct": pred == row["gold"]}


def default_metrics(dataset: Any, task: str = "multiple_choice") -> list[str]:
    if dataset.mode != "ppl":
        return ["accuracy", "accuracy_strict"] if dataset.gen.extractor == "gsm8k" else ["accuracy"]
    ppl = dataset.ppl
    if ppl.metrics:
        return list(ppl.metrics)
    if task == "loglikelihood":
        return ["acc", "perplexity"]
    return ["accuracy"] if ppl.convention == "opencompass" else ["acc", "acc_norm"]


def metrics_for(judged: list[dict[str, Any]], dataset: Any, task: str = "multiple_choice") -> dict[str, float]:
    if dataset.mode == "gen" and dataset.gen.extractor == "execute":
        from hydra_eval import execution

        return execution.metrics(judged, dataset)
    out: dict[str, float] = {}
    for name in default_metrics(dataset, task):
        if name in ("accuracy", "acc"):
            out.update(accuracy_metrics(name, [j["correct"] for j in judged]))
        elif name == "accuracy_strict":
            out.update(accuracy_metrics(name, [j["correct_strict"] for j in judged]))
        elif name == "acc_norm":
            out.update(accuracy_metrics(name, [j["correct_norm"] for j in judged]))
        elif name == "perplexity":
            out["perplexity"] = perplexity([j["logprob"] for j in judged])
        else:
            raise UserError(f"unknown metric '{name}' (dataset.ppl.metrics: acc, acc_norm, perplexity)")
    return out


def grouped_metrics(
    rows: list[dict[str, Any]], judged: list[dict[str, Any]], dataset: Any, task: str
) -> dict[str, float]:
    """Each metric again per group (MMLU: per subject), as '<metric>/<group>'."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row, j in zip(rows, judged, strict=True):
        groups.setdefault(str(row["group"]), []).append(j)
    return {
        f"{name}/{group}": value
        for group in sorted(groups)
        for name, value in metrics_for(groups[group], dataset, task).items()
        if not name.endswith("_stderr")
    }


def run_eval(cfg: Any, files: JobFiles) -> dict[str, Any]:
    if not files.predictions.is_file() or not files.infer_meta.is_file():
        raise UserError(f"no predictions at {files.predictions}: run mode=infer (or mode=all) into this folder")
    t0 = time.perf_counter()
    rows = read_jsonl(files.predictions)
    meta = read_json(files.infer_meta)
    dataset = cfg.dataset
    if prompts.version(dataset) != meta["version"]:
        raise UserError(
            f"{files.predictions} was made with {meta['dataset']} version {meta['version']}, but the config now "
            f"gives version {prompts.version(dataset)}: rerun mode=infer"
        )
    task = ppl_task(dataset.ppl, rows) if dataset.mode == "ppl" else "generate"
    if dataset.mode == "ppl":
        judged = [judge_ppl(r, dataset.ppl, task) for r in rows]
    elif dataset.gen.extractor == "execute":
        from hydra_eval import execution

        judged = execution.judge_rows(rows, dataset)
    else:
        judged = [judge_gen(r, dataset.gen, list(dataset.labels)) for r in rows]
    write_jsonl(files.predictions, [{**r, **j} for r, j in zip(rows, judged, strict=True)])
    harness = [j["harness_error"] for j in judged if j.get("harness_error")]
    if harness:  # a failure of the harness is never the model's: no result, the job fails, the rows say why
        raise UserError(
            f"{len(harness)} of {len(rows)} rows could not be scored (harness failure, not the model's; "
            f"details in {files.predictions}): {harness[0][:300]}"
        )
    results = {
        **{k: meta[k] for k in ("model", "dataset", "version", "mode", "n", "data_source", "fingerprints")},
        "convention": dataset.ppl.convention if dataset.mode == "ppl" else dataset.gen.extractor,
        "metrics": {
            **metrics_for(judged, dataset, task),
            **(grouped_metrics(rows, judged, dataset, task) if dataset.group_metrics_by else {}),
        },
        "timings": {**meta["timings"], "eval_s": time.perf_counter() - t0},
        "throughput": meta["throughput"],
    }
    cost = usage.summary(rows)
    if cost is not None:  # API models: tokens and latency of their requests
        results["usage"] = cost
    write_json(files.results, results)
    log.info(
        "eval: %s on %s: %s -> %s",
        meta["model"],
        meta["dataset"],
        {k: round(v, 2) for k, v in results["metrics"].items()},
        files.results,
    )
    return results
