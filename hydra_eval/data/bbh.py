"""BIG-Bench Hard, the authors' release: bbh/<task>.json ({"examples": [{"input", "target"}]}, 27 tasks) and
cot-prompts/<task>.txt (a canary line, "-----", the task's one-line description, then three solved examples
"Q: ...\nA: Let's think step by step.\n... So the answer is X."), as lm-eval's bbh_cot_fewshot uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra_eval.data.files import read_text, require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample

COT = "\nA: Let's think step by step."


def parse_cot_prompt(text: str, where: str) -> tuple[str, list[dict[str, str]]]:
    """(description, examples) of one cot-prompts file: the description is everything before the first
    "Q: " (snarks has a paragraph), an example's target what follows "A: Let's think step by step." (on the
    next line, or on the same one in sports_understanding)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[1].strip() != "-----":
        raise UserError(f"{where}: not a BBH chain-of-thought prompt file (no '-----' line after the canary)")
    chunks = ("\n".join(lines[2:]).strip() + "\n").split("\n\nQ: ")
    examples = []
    for chunk in chunks[1:]:
        question, sep, answer = chunk.partition(COT)
        if not sep:
            raise UserError(f'{where}: an example has no "A: Let\'s think step by step." line')
        examples.append({"input": question, "target": answer.strip()})
    return chunks[0].strip(), examples


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """The questions (files: {tasks: bbh, prompts: cot-prompts}) or the solved examples ({prompts: cot-prompts}
    alone) of every task, tasks in alphabetical order. Every row carries its task and the task's
    description."""
    tasks = sorted(p.stem for p in (directory / files["prompts"]).glob("*.txt"))
    if not tasks:
        raise UserError(f"no BBH files {directory / files['prompts']}/*.txt")
    rows = []
    for task in tasks:
        path = directory / files["prompts"] / f"{task}.txt"
        description, examples = parse_cot_prompt(read_text(path), str(path))
        if "tasks" in files:
            path = directory / files["tasks"] / f"{task}.json"
            try:
                examples = json.loads(read_text(path))["examples"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UserError(f"{path}: malformed BBH task file ({e})") from None
        rows += [{**ex, "task": task, "description": description} for ex in examples]
    return rows


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("input", "target", "task"), index, "bbh")
    fields = {
        "input": row["input"],
        "target": str(row["target"]),
        "answers": [str(row["target"])],
        "task": row["task"],
        "description": row.get("description", ""),
    }
    return Sample(id=f"{row['task']}/{index}", fields=fields, gold=0)
