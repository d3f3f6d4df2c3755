"""MMLU-Pro (TIGER-Lab/MMLU-Pro parquet files): question, options (3-10), answer (a letter A-J),
cot_content (the validation split's worked answers), category (14). The prompt fields are lm-eval's
(its mmlu_pro utils.format_cot_example and format_cot_target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample

LETTERS = "ABCDEFGHIJ"
COT_START = "A: Let's think step by step. "


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """The rows of the parquet file files['rows'] (the hub's test or validation file)."""
    import pyarrow.parquet as pq

    path = directory / files["rows"]
    try:
        return list(pq.read_table(path).to_pylist())
    except Exception as e:  # pyarrow's errors: not parquet, truncated, ...
        raise UserError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    """The gold is the `answer` letter, as lm-eval's doc_to_target (one test row's answer_index disagrees)."""
    require(row, ("question", "options", "answer", "category"), index, "mmlu_pro")
    answer = str(row["answer"])
    if answer not in LETTERS[: len(row["options"])]:
        raise UserError(
            f"mmlu_pro row {index + 1}: malformed row, answer {answer!r} for {len(row['options'])} options"
        )
    options = "".join(f"{letter}. {opt.strip()}\n" for letter, opt in zip(LETTERS, row["options"], strict=False))
    cot = row.get("cot_content") or ""
    fields = {
        "question": row["question"],
        "options_text": options,
        "answers": [answer],
        "category": row["category"],
        "cot_target": cot.replace(COT_START, ""),
    }
    return Sample(id=str(row.get("question_id", index)), fields=fields, gold=LETTERS.index(answer))
