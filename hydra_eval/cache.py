"""Predictions cached by content and saved batch by batch.

The key is what decides a prediction: the model's weights and the settings that change its outputs, the
data's checksums, the prompt/scoring settings, and the shard. A rerun, a requeued Slurm job or a job killed
with -9 finds the rows it already computed under the same key and computes only the rest; a changed prompt,
model or file gets a new key and never sees stale rows (OpenCompass's -r keys on names only).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra_eval import prompts
from hydra_eval.outputs import JobFiles, disk_errors, read_json, read_jsonl, write_json
from hydra_eval.records import SCHEMA_VERSION, InferMeta
from hydra_eval.schema import Config, DatasetMode

log = logging.getLogger(__name__)


def samples_digest(samples: Iterable[Any]) -> str:
    """sha256 of the samples as the prompts see them: a change in how rows become samples (a dataset's
    record_to_sample) gets a new key even when the files and the config are the same."""
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps([s.id, s.fields, s.gold], sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()


def identity(
    cfg: Config, data_fingerprint: dict[str, str], backend_identity: dict[str, object], samples: str = ""
) -> dict[str, Any]:
    """The backend's identity (weights and the settings that change its outputs) and the job's own."""
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
        "data": data_fingerprint,
        "samples": samples,
        "limit": cfg.dataset.limit,
        "record_to_sample": cfg.dataset.record_to_sample,
        "prompt": prompts.inference_settings(cfg.dataset),
        "shard": [cfg.shard.index, cfg.shard.count],
    }


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
                if row.get("schema_version") == SCHEMA_VERSION:  # rows of another format are computed again
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
    """Predictions under cache_dir/predictions/<key>/, by row index."""

    what = "a batch of predictions"

    def __init__(self, cache_dir: Path, ident: dict[str, Any]):
        self.key = key_of(ident)
        super().__init__(cache_dir / "predictions" / self.key, ident)

    def _key(self, row: dict[str, Any]) -> Any:
        return int(row["idx"])


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


def rows_from_folder(folder: Path, key: str) -> dict[int, dict[str, Any]]:
    """Rows of any predictions file below folder whose infer metadata carries this cache key."""
    found: dict[int, dict[str, Any]] = {}
    for job in JobFiles.inferred_under(folder):
        try:
            meta = InferMeta.from_json(read_json(job.infer_meta), str(job.infer_meta))
        except Exception:  # unreadable, or of another format: not reusable
            continue
        if meta.cache_key != key or not job.predictions.is_file():
            continue
        for row in read_jsonl(job.predictions):
            if "idx" in row and row.get("schema_version") == SCHEMA_VERSION:
                found[int(row["idx"])] = row
    return found
