"""Open-ended chat sets judged by a judge model: MT-Bench (80 two-turn questions, FastChat's question.jsonl and
GPT-4 reference answers), Arena-Hard v0.1 (500 questions), AlpacaEval (805 instructions with reference outputs).
Every sample has `turns` (the user turns); the gold index is unused (0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra_eval.data.files import read_jsonl, read_text, require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample

# FastChat llm_judge: the categories judged with a reference answer (common.py NEED_REF_CATS)
NEED_REF_CATS = ("math", "reasoning", "coding")


def read_mt_bench(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """question.jsonl, each row of a reference category given the GPT-4 reference answers (files['references'],
    a turn each) as `reference`, as FastChat's judge does."""
    rows = read_jsonl(directory / files["rows"])
    refs: dict[Any, list[str]] = {}
    if "references" in files:
        for ref in read_jsonl(directory / files["references"]):
            refs[ref["question_id"]] = list(ref["choices"][0]["turns"])
    for row in rows:
        row["reference"] = refs.get(row.get("question_id")) if row.get("category") in NEED_REF_CATS else None
    return rows


def mt_bench_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("question_id", "category", "turns"), index, "mt_bench")
    if not isinstance(row["turns"], list) or not row["turns"]:
        raise UserError(f"mt_bench row {index + 1}: malformed row, `turns` must be a non-empty list")
    fields = {
        "question_id": row["question_id"],
        "category": row["category"],
        "turns": [str(t) for t in row["turns"]],
        "reference": row.get("reference"),
    }
    return Sample(id=str(row["question_id"]), fields=fields, gold=0)


def arena_hard_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("question_id", "turns"), index, "arena_hard")
    turns = [t["content"] if isinstance(t, dict) else t for t in row["turns"]]
    fields = {
        "question_id": row["question_id"],
        "cluster": row.get("cluster", ""),
        "turns": [str(t) for t in turns],
    }
    return Sample(id=str(row["question_id"]), fields=fields, gold=0)


def read_json_list(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """One JSON file holding a list of rows (AlpacaEval's alpaca_eval.json)."""
    path = directory / files["rows"]
    try:
        rows = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed file, not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: malformed file, expected a JSON list of objects")
    return rows


def alpaca_eval_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("instruction",), index, "alpaca_eval")
    fields = {
        "turns": [str(row["instruction"])],
        "reference_output": str(row.get("output") or ""),
        "subset": row.get("dataset", ""),
        "reference_generator": row.get("generator", ""),
    }
    return Sample(id=str(index), fields=fields, gold=0)
