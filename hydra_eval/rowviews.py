"""What each row of a finished job showed, read back from its judged file, for the report's disagreement
browser: the prompt, the gold answer, and the model's answer and output. Scores are not here: eval writes each
row's values into its `Results` (hydra_eval/results.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hydra_eval.outputs import JobFiles, read_jsonl

TEXT_CAP = 1500  # characters of a prompt or output kept for the report


@dataclass(frozen=True)
class RowView:
    """One row as the report shows it: the prompt, the gold answer, and this model's answer and output."""

    prompt: str
    gold: str
    answer: str  # what the model chose or extracted: two models disagree on a row when these differ
    output: str  # the generation, or the per-choice scores


@dataclass(frozen=True)
class JobViews:
    """One job's rows: row id -> what it showed."""

    model: str
    dataset: str
    views: dict[str, RowView]


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


def views(mode: str, rows: list[dict[str, Any]]) -> dict[str, RowView]:
    """Each judged row by its id (an lm-eval job's rows are documents: '<task>:<doc_id>')."""
    if mode == "lmeval":
        return {
            f"{r['task']}:{r['doc_id']}": RowView(
                _tail(str(r.get("prompt", ""))),
                _cap(str(r.get("target", ""))),
                _cap(_lmeval_answer(r.get("filtered"))),
                _cap(json.dumps(r.get("filtered"), ensure_ascii=False)),
            )
            for r in rows
        }
    return {str(r["id"]): _native_view(r) for r in rows}


def of_job(files: JobFiles, model: str, dataset: str, mode: str) -> JobViews:
    rows = read_jsonl(files.judged) if files.judged.is_file() else []
    return JobViews(model, dataset, views(mode, rows))
