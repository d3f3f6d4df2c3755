"""IFEval, Google's input_data.jsonl (541 prompts): key, prompt, instruction_id_list, kwargs (one dict per
instruction; the hub's google/IFEval layout fills absent arguments with null)."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("key", "prompt", "instruction_id_list", "kwargs"), index, "ifeval")
    if len(row["kwargs"]) != len(row["instruction_id_list"]):
        raise UserError(f"ifeval row {index + 1}: malformed row, one kwargs dict per instruction expected")
    fields = {
        "key": row["key"],
        "prompt": row["prompt"],
        "instruction_id_list": list(row["instruction_id_list"]),
        "kwargs": [dict(k) for k in row["kwargs"]],
    }
    return Sample(id=str(row["key"]), fields=fields, gold=0)
