"""BoolQ (SuperGLUE dev): question, passage, label. Quirk: the SuperGLUE jsonl has label true/false, the hub's
super_glue/boolq has 0/1, Google's original release has `answer`; all mean 1 = yes (choices: no, yes)."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("question", "passage"), index, "boolq")
    value = row.get("label", row.get("answer"))
    if isinstance(value, bool) or value in (0, 1):
        gold = int(value)
    elif isinstance(value, str) and value.lower() in ("true", "false"):
        gold = int(value.lower() == "true")
    else:
        raise UserError(f"boolq row {index + 1}: malformed label {value!r}")
    fields = {"question": row["question"], "passage": row["passage"]}
    return Sample(id=str(row.get("idx", index)), fields=fields, gold=gold)
