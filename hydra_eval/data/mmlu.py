"""MMLU, the original data.tar layout: <split>/<subject>_<split>.csv, headerless (question, A, B, C, D,
answer letter), 57 subjects. Hub (cais/mmlu, config "all"): question, subject, choices, answer (0-3)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError
from hydra_eval.records import Sample

LETTERS = "ABCD"


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """Every subject's CSV of the split named by files['split'], subjects in alphabetical order."""
    split = files["split"]
    rows = []
    paths = sorted((directory / split).glob(f"*_{split}.csv"))
    if not paths:
        raise UserError(f"no MMLU files {directory / split}/*_{split}.csv")
    for path in paths:
        subject = path.name[: -len(f"_{split}.csv")]
        with path.open(encoding="utf-8", newline="") as f:
            for lineno, rec in enumerate(csv.reader(f), 1):
                if len(rec) != 6 or rec[5].strip() not in LETTERS:
                    raise UserError(f"{path}:{lineno}: malformed row, expected question, 4 choices, answer A-D")
                rows.append(
                    {"question": rec[0], "subject": subject, "choices": rec[1:5], "answer": rec[5].strip()}
                )
    return rows


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    answer = row.get("answer")
    gold = LETTERS.index(answer) if isinstance(answer, str) and answer in LETTERS else answer
    if not isinstance(gold, int) or not 0 <= gold < 4 or len(row.get("choices", [])) != 4:
        raise UserError(f"mmlu row {index + 1}: malformed row (choices or answer {answer!r})")
    subject = row["subject"]
    fields = {
        "question": row["question"].strip(),
        **{f"choice{i}": c for i, c in enumerate(row["choices"])},
        "subject": subject,
        "subject_name": subject.replace("_", " "),
    }
    return Sample(id=f"{subject}/{index}", fields=fields, gold=gold)
