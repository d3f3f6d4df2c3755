"""PIQA: valid.jsonl (goal, sol1, sol2) plus valid-labels.lst (0/1) aligned line by line."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import parse_label, require
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    """Local rows and the hub's rows share the fields; labels are 0-based (0 -> sol1)."""
    require(row, ("goal", "sol1", "sol2", "label"), index, "piqa")
    fields = {"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"]}
    return Sample(id=str(index), fields=fields, gold=parse_label(row["label"], range(2), index, "piqa"))
