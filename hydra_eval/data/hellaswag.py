"""HellaSwag validation. Locally: llama.cpp's derived text file (bz2; 6 lines an item: "activity: context",
gold 0-3, four endings), already cleaned of [title]/[step] markers. From the hub (Rowan/hellaswag): the
original fields, cleaned here the way lm-eval's hellaswag task does."""

from __future__ import annotations

import bz2
import re
from pathlib import Path
from typing import Any

from hydra_eval.data.files import parse_label, require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    path = directory / files["rows"]
    with bz2.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise UserError(f"{path}: {len(lines)} lines is not a multiple of 6 (context, label, 4 endings)")
    return [
        {"ctx": lines[i], "label": lines[i + 1], "endings": lines[i + 2 : i + 6], "line": i + 1}
        for i in range(0, len(lines), 6)
    ]


def clean(text: str) -> str:
    """lm-eval's hellaswag preprocess: strip, ' [title]' -> '. ', drop [markers], collapse double spaces."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    if "ctx_a" in row:  # hub layout
        require(row, ("activity_label", "ctx_a", "ctx_b", "endings", "label"), index, "hellaswag")
        ctx = clean(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
        endings = [clean(e) for e in row["endings"]]
    else:
        require(row, ("ctx", "endings", "label"), index, "hellaswag")
        ctx, endings = row["ctx"], list(row["endings"])
    if len(endings) != 4:
        raise UserError(f"hellaswag row {index + 1}: malformed row, {len(endings)} endings instead of 4")
    fields = {"ctx": ctx, **{f"ending{i}": e for i, e in enumerate(endings)}}
    return Sample(id=str(index), fields=fields, gold=parse_label(row["label"], range(4), index, "hellaswag"))
