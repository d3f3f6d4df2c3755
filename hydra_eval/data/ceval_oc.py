"""C-Eval and CMMLU as OpenCompass 0.5.4 reads them (CEvalDataset, CMMLUDataset), for its ppl conventions
(conf/dataset/ceval_oc.yaml, cmmlu_oc.yaml).

- Files: C-Eval `<split>/<subject>_<split>.csv` (header id,question,A,B,C,D,answer[,explanation]); CMMLU
  `<split>/<subject>.csv` (an unnamed index column, Question, A-D, Answer). Opened in text mode as OpenCompass
  does (universal newlines: a \\r\\n inside a quoted field becomes \\n); nothing stripped.
- Subjects in OpenCompass's order, with the Chinese names its prompts use (opencompass_subjects.json, copied
  from its configs).
- OpenCompass fills a template by replacing '{key}' for each of the row's fields in turn, so a field's text that
  itself holds '{A}' (LaTeX such as \\bar{A}) gets a later field's value; the fields here are filled the same
  way, so str.format renders OpenCompass's text.
"""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError
from hydra_eval.records import Sample

LETTERS = "ABCD"


@cache
def subjects() -> dict[str, Any]:
    return dict(json.loads((Path(__file__).parent / "opencompass_subjects.json").read_text(encoding="utf-8")))


def _read(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise UserError(f"missing data file {path}")
    with path.open(encoding="utf-8") as f:  # no newline='': OpenCompass's universal newlines
        return list(csv.reader(f))


def read_ceval(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    split = files["split"]
    rows = []
    for subject in subjects()["ceval"]:
        header, *records = _read(directory / split / f"{subject}_{split}.csv")
        for rec in records:
            row: dict[str, Any] = dict(zip(header, rec, strict=False))
            row.setdefault("explanation", "")
            row.setdefault("answer", "")
            rows.append({"subject": subject, "entry": row})
    return rows


def read_cmmlu(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    split = files["split"]
    rows = []
    for subject in subjects()["cmmlu"]:
        path = directory / split / f"{subject}.csv"
        _, *records = _read(path)
        for lineno, rec in enumerate(records, 2):
            if len(rec) < 7:
                raise UserError(f"{path}:{lineno}: malformed row, expected index, question, A-D, answer")
            entry = dict(zip(("question", "A", "B", "C", "D", "answer"), rec[1:7], strict=True))
            rows.append({"subject": subject, "entry": entry})
    return rows


def cascade(entry: dict[str, Any]) -> dict[str, str]:
    """OpenCompass's safe_format, field by field: each field's '{key}' placeholders of the fields after it
    are replaced by their values, in the row's order."""
    keys = list(entry)
    out = {}
    for i, key in enumerate(keys):
        text = str(entry[key])
        for later in keys[i + 1 :]:
            text = text.replace("{" + later + "}", str(entry[later]))
        out[key] = text
    return out


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    entry, subject = row["entry"], row["subject"]
    answer = str(entry.get("answer", ""))
    if answer not in tuple(LETTERS):
        raise UserError(f"{subject} row {index + 1}: answer {answer!r} is not one of A-D")
    names = subjects()
    zh = names["ceval"][subject][1] if subject in names["ceval"] else names["cmmlu"][subject]
    fields = {**cascade(entry), "subject": subject, "subject_zh": zh}
    return Sample(id=f"{subject}/{index}", fields=fields, gold=LETTERS.index(answer))
