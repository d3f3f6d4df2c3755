"""The eval stage: raw outputs -> per-sample answers -> metrics in results/<model>/<dataset>.json.

Never loads the model: it reads what the infer stage wrote.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra_eval import prompts, scoring
from hydra_eval.errors import UserError
from hydra_eval.metrics import accuracy_metrics
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


def judge_ppl(row: dict[str, Any], convention: str) -> dict[str, Any]:
    logprobs = [c["logprob"] for c in row["candidates"]]
    if convention == "opencompass":
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
    if gen.extractor == "edit_distance":
        letter: str | None = scoring.edit_distance_choice(text, labels, row["options"])
    elif gen.extractor == "first_letter":
        letter = scoring.first_letter(text, labels)
    else:
        raise UserError(f"dataset.gen.extractor must be first_letter or edit_distance, not '{gen.extractor}'")
    pred = labels.index(letter) if letter is not None else -1
    return {"answer": letter, "pred": pred, "correct": pred == row["gold"]}


def metrics_for(judged: list[dict[str, Any]], dataset: Any) -> dict[str, float]:
    if dataset.mode == "ppl" and dataset.ppl.convention == "lmeval":
        return {
            **accuracy_metrics("acc", [j["correct"] for j in judged]),
            **accuracy_metrics("acc_norm", [j["correct_norm"] for j in judged]),
        }
    return accuracy_metrics("accuracy", [j["correct"] for j in judged])


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
    if dataset.mode == "ppl":
        judged = [judge_ppl(r, dataset.ppl.convention) for r in rows]
    else:
        judged = [judge_gen(r, dataset.gen, list(dataset.labels)) for r in rows]
    write_jsonl(files.predictions, [{**r, **j} for r, j in zip(rows, judged, strict=True)])
    results = {
        **{k: meta[k] for k in ("model", "dataset", "version", "mode", "n", "data_source", "fingerprints")},
        "convention": dataset.ppl.convention if dataset.mode == "ppl" else dataset.gen.extractor,
        "metrics": metrics_for(judged, dataset),
        "timings": {**meta["timings"], "eval_s": time.perf_counter() - t0},
        "throughput": meta["throughput"],
    }
    write_json(files.results, results)
    log.info(
        "eval: %s on %s: %s -> %s",
        meta["model"],
        meta["dataset"],
        {k: round(v, 2) for k, v in results["metrics"].items()},
        files.results,
    )
    return results
