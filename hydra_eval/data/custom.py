"""Your own data, no Python: one .jsonl or .csv file (dataset=custom dataset.path=my.jsonl).

Multiple choice: question, choices (a list; in CSV, columns A, B, C, ...), answer (0-based index, letter,
or the text of a choice). Free-form QA: question, answer (a string, or in JSON a list of accepted answers).
Every row is checked before anything runs; a bad row is reported with its file and line."""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path
from typing import Any

from hydra_eval.data.files import check_unique_ids, read_jsonl, read_text
from hydra_eval.errors import UserError
from hydra_eval.records import Sample

LETTERS = string.ascii_uppercase


def read_local(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    path = directory / files["rows"]
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".csv":
        with io.StringIO(read_text(path), newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "question" not in reader.fieldnames or "answer" not in reader.fieldnames:
                raise UserError(
                    f"{path}:1: the CSV header needs question and answer columns (and A, B, ... for choices)"
                )
            letters = [c for c in reader.fieldnames if len(c) == 1 and c in LETTERS]
            for rec in reader:
                row: dict[str, Any] = {"question": rec["question"], "answer": rec["answer"]}
                if letters:
                    cells = [rec.get(c) or "" for c in letters]
                    while cells and not cells[-1]:
                        cells.pop()  # fewer choices in this row than columns: trailing blanks only
                    if "" in cells:
                        raise UserError(f"{path}:{reader.line_num}: malformed row, a blank choice before the last")
                    row["choices"] = cells
                rows.append({**row, "_where": f"{path}:{reader.line_num}"})
    else:
        rows = read_jsonl(path, where_field="_where")
    samples = [record_to_sample(row, i) for i, row in enumerate(rows)]  # each row's own problems first, by line
    _one_kind(rows)
    check_unique_ids((s.id, row["_where"]) for s, row in zip(samples, rows, strict=True))
    return rows


def _one_kind(rows: list[dict[str, Any]]) -> None:
    """A file is multiple choice or free-form QA, not both: a free-form row among choice rows would be scored
    as a one-candidate question that is always right."""
    if not rows:
        return
    first = "choices" in rows[0]
    for row in rows:
        if ("choices" in row) != first:
            kinds = ("multiple-choice", "free-form") if first else ("free-form", "multiple-choice")
            raise UserError(
                f"{row['_where']}: a {kinds[1]} row in a {kinds[0]} file (from {rows[0]['_where']} on); "
                "keep multiple-choice and free-form questions in separate files"
            )


def _gold_index(answer: Any, choices: list[str], where: str) -> int:
    """The answer as the text of a choice (checked first: CSV gives every value as text), a 0-based index, or a
    letter."""
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        return answer
    if isinstance(answer, str):
        text = answer.strip()
        if text in choices:
            return choices.index(text)
        if text.isdecimal() and int(text) < len(choices):
            return int(text)
        if len(text) == 1 and text.upper() in LETTERS[: len(choices)]:
            return LETTERS.index(text.upper())
    raise UserError(
        f"{where}: malformed row, answer {answer!r} is not the text, index or letter "
        f"of one of its {len(choices)} choices"
    )


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    where = row.get("_where", f"row {index + 1}")
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip() or answer is None or answer == "":
        raise UserError(f"{where}: malformed row, needs a non-empty question and answer")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise UserError(f"{where}: malformed row, choices must be a list of at least 2 non-empty strings")
        if len(choices) > len(LETTERS):
            raise UserError(f"{where}: {len(choices)} choices; at most {len(LETTERS)} (one letter, A-Z, each)")
        gold = _gold_index(answer, choices, where)
        options = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(choices))
        fields = {
            "question": question,
            "choices": choices,
            "options": options,
            "answers": [],
            "target": LETTERS[gold],
        }
        return Sample(id=str(row.get("id", index)), fields=fields, gold=gold)
    answers = answer if isinstance(answer, list) else [answer]
    if not answers or not all(isinstance(a, str | int | float) and str(a).strip() for a in answers):
        raise UserError(f"{where}: malformed row, answer must be a string or a list of strings")
    answers = [str(a) for a in answers]
    fields = {
        "question": question,
        "choices": [answers[0]],
        "options": "",
        "answers": answers,
        "target": answers[0],
    }
    return Sample(id=str(row.get("id", index)), fields=fields, gold=0)
