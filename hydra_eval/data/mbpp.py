"""MBPP, the google-research release: mbpp.jsonl (974 problems: text, code, task_id, test_setup_code,
test_list, challenge_test_list) and sanitized-mbpp.json (427 hand-checked: prompt, code, test_imports,
test_list). Splits by task_id as the release README gives them: prompt 1-10, test 11-510, validation
511-600, train 601-974; the 3 examples of the paper (and of lm-eval's mbpp) are task_ids 2, 3, 4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra_eval.data.files import read_jsonl, read_text, require
from hydra_eval.errors import UserError
from hydra_eval.records import GenPrediction, Sample

SPLITS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601), "train": range(601, 975)}
FEWSHOT_IDS = (2, 3, 4)


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """files: {<split>: file}, the split (test, validation, train, prompt, or fewshot: task_ids 2, 3, 4 in that
    order) taken from mbpp.jsonl or sanitized-mbpp.json by task_id."""
    [(split, name)] = files.items()
    path = directory / name
    if path.suffix == ".json":
        try:
            rows = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: malformed MBPP file, not valid JSON ({e.msg})") from None
    else:
        rows = read_jsonl(path)
    by_id = {int(r["task_id"]): r for r in rows if "task_id" in r}
    if split == "fewshot":
        return [by_id[i] for i in FEWSHOT_IDS if i in by_id]
    if split not in SPLITS:
        raise UserError(f"MBPP split {split!r}: one of {', '.join([*SPLITS, 'fewshot'])}")
    return [by_id[i] for i in SPLITS[split] if i in by_id]


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    """The prompt shows the first three tests (lm-eval's mbpp); the program runs those three after the code,
    with the sanitized set's imports before them."""
    require(row, ("task_id", "code", "test_list"), index, "mbpp")
    text = row.get("text", row.get("prompt"))
    if text is None or len(row["test_list"]) < 3:
        raise UserError(f"mbpp row {index + 1}: malformed row (no text/prompt, or fewer than 3 tests)")
    tests = list(row["test_list"][:3])
    fields = {
        "task_id": int(row["task_id"]),
        "text": text,
        "code": row["code"],
        "test0": tests[0],
        "test1": tests[1],
        "test2": tests[2],
        "tests": "\n".join([*row.get("test_imports", []), *tests]),
    }
    return Sample(id=str(row["task_id"]), fields=fields, gold=0)


def program_of(row: GenPrediction, completion: str) -> str:
    """What lm-eval's mbpp runs (HF evaluate's code_eval): the completion, a newline, the tests."""
    return completion + "\n" + (row.fields or {})["tests"]
