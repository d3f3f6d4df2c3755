"""Predictions cached by content, row by row, and saved batch by batch.

A row's key is what decides its prediction: the model's weights and the settings that change its outputs,
the prompt/scoring settings (`identity`, which also names the cache folder), and the row itself as the prompt
sees it, with its few-shot examples (`row_key`). Which file it came from, the limit and the shard are not in
it: a rerun, a requeued Slurm job, a job killed with -9, a raised `dataset.limit`, another shard or an edited
file computes only the rows it has not seen; a changed prompt, model or row gets a new key and never sees a
stale row (OpenCompass's -r keys on names only).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra_eval import prompts
from hydra_eval.outputs import JobFiles, disk_errors, read_json, read_jsonl, write_json
from hydra_eval.records import SCHEMA_VERSION, InferMeta, Sample
from hydra_eval.schema import Config, DatasetMode

log = logging.getLogger(__name__)


def identity(cfg: Config, backend_identity: dict[str, object]) -> dict[str, Any]:
    """The backend's identity (weights and the settings that change its outputs) and the prompt settings: what
    every row of a job shares."""
    m = cfg.model
    model: dict[str, Any] = {"chat_template": m.chat_template, "seed": m.seed}
    if cfg.dataset.mode is DatasetMode.gen:
        model["max_out_len"] = m.max_out_len
        # added later: in the key only when set, so keys made before them stay valid
        if m.system_prompt is not None:
            model["system_prompt"] = m.system_prompt
        if m.chat_template_kwargs:
            model["chat_template_kwargs"] = dict(m.chat_template_kwargs)
        if m.reasoning.strip:
            model["reasoning"] = [m.reasoning.start, m.reasoning.end]
    return {
        "model": backend_identity,
        "model_settings": model,
        "dataset": cfg.dataset.name,  # one folder per dataset: a job loads its own rows only
        "record_to_sample": cfg.dataset.record_to_sample,
        "prompt": prompts.inference_settings(cfg.dataset),
    }


def row_key(job_key: str, sample: Sample, shots: Sequence[Sample]) -> str:
    """One row's key: the job's (`key_of(identity(...))`) and the row as the prompts see it (a change in how
    rows become samples, a dataset's record_to_sample, changes it too), with its few-shot examples."""
    row = [[s.id, s.fields, s.gold] for s in (sample, *shots)]
    blob = json.dumps([job_key, row], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def key_of(ident: dict[str, Any]) -> str:
    blob = json.dumps(ident, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


class RowStore:
    """rows.jsonl in a folder: one line per finished row, each carrying its key (`key_field`), appended and
    fsynced a batch at a time. A line cut short by a kill is dropped on the next load."""

    key_field = "idx"
    what = "a batch of rows"  # what a full disk did not let through (DiskFull's message)

    def __init__(self, folder: Path, ident: dict[str, Any]):
        self.dir = folder
        self.rows_path = self.dir / "rows.jsonl"
        with disk_errors(folder, "the cache folder"):
            self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "identity.json").is_file():
            write_json(self.dir / "identity.json", ident)

    def _key(self, row: dict[str, Any]) -> Any:
        return row[self.key_field]

    def load(self) -> dict[Any, dict[str, Any]]:
        if not self.rows_path.is_file():
            return {}
        with self._locked():
            raw = self.rows_path.read_bytes()
            rows: dict[Any, dict[str, Any]] = {}
            for line in raw.splitlines(keepends=True):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no newline")
                    row = json.loads(line)
                except ValueError:  # a write that a kill interrupted: skip it, keep every whole row
                    log.warning("cache %s: skipping a partly written line", self.dir.name)
                    continue
                # rows of another format (or without their key) are computed again
                if row.get("schema_version") == SCHEMA_VERSION and self.key_field in row:
                    rows[self._key(row)] = row
        return rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        with disk_errors(self.dir, self.what), self._locked(), self.rows_path.open("a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # a kill may have cut the last line short: start on a line of our own
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def _locked(self) -> Any:
        return _FileLock(self.dir / ".lock")


class PredictionStore(RowStore):
    """Predictions under cache_dir/predictions/<job key>/, by row key (each line: a prediction and its "key")."""

    key_field = "key"
    what = "a batch of predictions"

    def __init__(self, cache_dir: Path, ident: dict[str, Any]):
        self.key = key_of(ident)
        super().__init__(cache_dir / "predictions" / self.key, ident)


def placed(row: dict[str, Any], idx: int) -> dict[str, Any]:
    """A cached prediction as a line of this job's predictions file: at this job's row index, without its key."""
    return {**{k: v for k, v in row.items() if k != "key"}, "idx": idx}


class _FileLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def latest_run(output_root: Path, current: Path) -> Path | None:
    """The newest run or sweep folder under output_root other than the one holding `current` (this job's
    folder, which Hydra creates before the job starts): what reuse=latest means."""
    current = current.resolve()
    candidates = [
        p
        for sub in ("runs", "multirun")
        for p in (output_root / sub).glob("*")
        if p.is_dir() and not (current == p.resolve() or p.resolve() in current.parents)
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def rows_from_folder(folder: Path, keys: Collection[str]) -> dict[str, dict[str, Any]]:
    """Row key -> row, for the rows with one of these keys in any predictions file below folder (its infer
    metadata names each row's key)."""
    wanted, found = set(keys), {}
    for job in JobFiles.inferred_under(folder) if wanted else []:
        try:
            meta = InferMeta.from_json(read_json(job.infer_meta), str(job.infer_meta))
        except Exception:  # unreadable, or of another format: not reusable
            continue
        if not wanted.intersection(meta.row_keys) or not job.predictions.is_file():
            continue
        rows = read_jsonl(job.predictions)
        if len(rows) != len(meta.row_keys):  # not the file its metadata describes
            continue
        for key, row in zip(meta.row_keys, rows, strict=True):
            if key in wanted and row.get("schema_version") == SCHEMA_VERSION:
                found[key] = {**row, "key": key}
    return found
