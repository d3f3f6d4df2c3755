"""Small readers shared by the dataset modules: JSON lines and label lists, with line-numbered errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError


def read_text(path: Path) -> str:
    """A data file's text: UTF-8, a leading byte-order mark dropped; anything else is one line that names the
    file, the line and the byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def read_jsonl(path: Path, where_field: str | None = None) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; with where_field, each row also gets "<file>:<line>" under that key, so
    later checks can name the line."""
    rows = []
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: malformed row, not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: malformed row, expected a JSON object")
        if where_field:
            row[where_field] = f"{path}:{lineno}"
        rows.append(row)
    return rows


def check_unique_ids(rows: Iterable[tuple[str, str]]) -> None:
    """(id, where) of each row, where = "<file>:<line>" or "<file> row <n>": a repeated id is a malformed row
    (models are compared row by row on it: two rows of one id would be one row of the comparison)."""
    first: dict[str, str] = {}
    for row_id, where in rows:
        if row_id in first:
            raise UserError(
                f"{where}: malformed row, id {row_id!r} again (first at {first[row_id]}); give each row an id "
                "of its own (models are compared row by row on it)"
            )
        first[row_id] = where


def read_labels(path: Path) -> list[str]:
    return [line.strip() for line in read_text(path).split("\n") if line.strip()]


def attach_labels(rows: list[dict[str, Any]], labels: list[str], rows_path: Path, labels_path: Path) -> None:
    if len(rows) != len(labels):
        raise UserError(f"{rows_path} has {len(rows)} rows but {labels_path} has {len(labels)} labels")
    for row, label in zip(rows, labels, strict=True):
        row["label"] = label


def require(row: dict[str, Any], keys: tuple[str, ...], index: int, dataset: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise UserError(f"{dataset} row {index + 1}: malformed row, missing field(s) {', '.join(missing)}")


def parse_label(value: Any, allowed: range, index: int, dataset: str) -> int:
    try:
        label = int(value)
    except (TypeError, ValueError):
        label = -1
    if label not in allowed:
        raise UserError(f"{dataset} row {index + 1}: malformed label {value!r}")
    return label


def read_rows_with_labels(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """The layout of PIQA and SIQA releases: a JSONL of rows plus a label list aligned line by line."""
    rows_path, labels_path = directory / files["rows"], directory / files["labels"]
    rows = read_jsonl(rows_path)
    attach_labels(rows, read_labels(labels_path), rows_path, labels_path)
    return rows


def read_rows(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """One JSON-lines file of rows (files['rows'])."""
    return read_jsonl(directory / files["rows"])
