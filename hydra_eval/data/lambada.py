"""LAMBADA (OpenAI's test variant, lambada_openai): one passage per row; the target is its last word,
split off as lm-eval does (on the last space)."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("text",), index, "lambada")
    words = row["text"].split(" ")
    if len(words) < 2:
        raise UserError(f"lambada row {index + 1}: malformed row, no context before the last word")
    return Sample(id=str(index), fields={"context": " ".join(words[:-1]), "target": words[-1]}, gold=0)
