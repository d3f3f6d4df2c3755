"""Social IQa: dev.jsonl plus dev-labels.lst holding 1-based labels (1/2/3 -> A/B/C)."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import parse_label, require
from hydra_eval.records import Sample

FIELDS = ("context", "question", "answerA", "answerB", "answerC")


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    """Labels are 1-based in the original files and on the hub ("1", "2", "3")."""
    require(row, (*FIELDS, "label"), index, "siqa")
    gold = parse_label(row["label"], range(1, 4), index, "siqa") - 1
    return Sample(id=str(index), fields={k: row[k] for k in FIELDS}, gold=gold)
