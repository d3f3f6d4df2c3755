"""Rows -> samples: from the local data directory when its files are there, else from the HF hub."""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_eval.data.files import check_unique_ids
from hydra_eval.errors import UserError
from hydra_eval.records import Sample
from hydra_eval.schema import DatasetConfig


@dataclass(frozen=True)
class LoadedData:
    samples: list[Sample]
    source: str  # local directory or hub id
    fingerprint: dict[str, str]  # file name -> sha256, or hub id -> datasets fingerprint
    fewshot: list[Sample] = field(default_factory=list)  # the pool few-shot examples come from
    fewshot_same_split: bool = True  # the pool is the evaluated split (a question never shows itself)


def import_object(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot import '{dotted}' named in the config: {e}") from None


def sha256_file(path: Path) -> str:
    """sha256 of a file; of a folder, sha256 over its files' names and sha256s (MMLU's per-subject CSVs)."""
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(path)}\0{sha256_file(p)}\n".encode())
        return h.hexdigest()
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_off() -> str | None:
    """The variable that turns the hub off (`HF_HUB_OFFLINE=1` or `HF_DATASETS_OFFLINE=1`), if one is set."""
    return next((v for v in OFFLINE_VARS if os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"}), None)


def _hub_reachable() -> None:
    """Fail in milliseconds, not after a minute of retries, when the hub is off or its host does not even
    resolve: with HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, nothing is looked up."""
    import socket
    from urllib.parse import urlparse

    off = hub_off()
    if off:
        raise ConnectionError(f"{off}={os.environ[off]} turns the hub off")
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise ConnectionError(f"cannot resolve {host} ({e.strerror})") from None


def _read_hub(cfg: DatasetConfig, split: str) -> list[dict[str, Any]]:
    """datasets.load_dataset on a hub id (or on a local folder in the hub's layout, as tests do)."""
    import datasets

    assert cfg.hf_path is not None
    if not Path(cfg.hf_path).exists():
        _hub_reachable()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    ds = datasets.load_dataset(cfg.hf_path, cfg.hf_name, split=split)
    return [dict(row) for row in ds]


def _exists(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _read(
    cfg: DatasetConfig, files: dict[str, str], split: str | None
) -> tuple[list[dict[str, Any]], str, dict[str, str]]:
    """Rows of one split: from the local files when all are there, else from the hub."""
    directory = Path(cfg.local_dir)
    paths = [directory / name for name in files.values()]
    if paths and all(_exists(p) for p in paths):
        read_local: Callable[..., list[dict[str, Any]]] = import_object(cfg.read_local)
        rows = read_local(directory, dict(files))
        source = str(paths[0].resolve()) if cfg.path else str(directory)  # dataset.path: that file, by name
        return rows, source, {p.name: sha256_file(p) for p in paths}
    if cfg.hf_path and split:
        try:
            rows = _read_hub(cfg, split)
        except Exception as e:  # offline, unknown repo, missing split: all end the same way for a user
            raise UserError(
                f"no data for dataset '{cfg.name}': missing {', '.join(str(p) for p in paths if not _exists(p))} "
                f"(set paths.data_dir=...), and the HF hub '{cfg.hf_path}' failed: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
        source = f"hf://{cfg.hf_path}" + (f"/{cfg.hf_name}" if cfg.hf_name else "") + f"@{split}"
        return rows, source, {source: hashlib.sha256(repr(rows).encode()).hexdigest()}
    missing = [str(p) for p in paths if not _exists(p)]
    raise UserError(f"no data for dataset '{cfg.name}': missing {', '.join(missing)} (set paths.data_dir=...)")


def _check_path(path: str, directory: Path, field_name: str) -> None:
    full = directory / path
    if full.is_dir():
        raise UserError(f"{field_name}={path}: {full} is a folder; name a .jsonl or .csv file of rows")
    if not full.is_file():
        raise UserError(f"{field_name}={path}: no such file ({full})")


def _split_files(cfg: DatasetConfig) -> dict[str, str]:
    if not cfg.path and not cfg.files:
        raise UserError(f"dataset '{cfg.name}' needs a file: dataset.path=<rows.jsonl or .csv>")
    if cfg.path:
        _check_path(cfg.path, Path(cfg.local_dir), "dataset.path")
    return {"rows": cfg.path} if cfg.path else dict(cfg.files)


def _selected(cfg: DatasetConfig, rows: list[dict[str, Any]], source: str) -> list[tuple[int, dict[str, Any]]]:
    """The rows a job evaluates: those of the named subsets, every stride-th, then the first `limit`, each with
    its index in the split."""
    if not rows:
        raise UserError(f"dataset '{cfg.name}': no rows in {source} (the file is empty or blank)")
    if cfg.stride < 1:
        raise UserError(f"dataset.stride must be 1 or more, not {cfg.stride}")
    indexed = list(enumerate(rows))
    if cfg.subsets:
        indexed = _in_subsets(cfg, indexed)
    return indexed[:: cfg.stride][: cfg.limit]


def _in_subsets(cfg: DatasetConfig, indexed: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    key = cfg.group_metrics_by
    if not key:
        raise UserError(f"dataset.subsets: dataset '{cfg.name}' has no subsets (no dataset.group_metrics_by)")
    known = sorted({str(row.get(key)) for _, row in indexed})
    unknown = [s for s in cfg.subsets if s not in known]
    if unknown:
        raise UserError(
            f"dataset.subsets: '{cfg.name}' has no {key} {', '.join(unknown)} (it has: {', '.join(known)})"
        )
    wanted = set(cfg.subsets)
    return [(i, row) for i, row in indexed if str(row.get(key)) in wanted]


def count_rows(cfg: DatasetConfig) -> int:
    """How many samples load_samples would give, from the raw rows alone (no samples, no few-shot pool):
    what a sweep needs to plan shards."""
    rows, source, _ = _read(cfg, _split_files(cfg), cfg.split)
    return len(_selected(cfg, rows, source))


def load_samples(cfg: DatasetConfig) -> LoadedData:
    """Read the dataset named by a dataset config (and its few-shot pool), apply ``stride`` and ``limit``,
    fingerprint. A sample keeps its row's index in the whole split as its id."""
    files = _split_files(cfg)
    if cfg.fewshot_path and cfg.fewshot.k:
        _check_path(cfg.fewshot_path, Path(cfg.local_dir), "dataset.fewshot_path")
    rows, source, fingerprint = _read(cfg, files, cfg.split)
    indexed = _selected(cfg, rows, source)
    to_sample: Callable[[dict[str, Any], int], Sample] = import_object(cfg.record_to_sample)
    samples = [to_sample(row, i) for i, row in indexed]
    local = Path(cfg.local_dir)
    place = str(local / files["rows"]) if source == str(local) and "rows" in files else source  # named by row
    check_unique_ids(
        (s.id, r.get("_where") or f"{place} row {i + 1}") for s, (i, r) in zip(samples, indexed, strict=True)
    )
    fewshot = cfg.fewshot
    if not fewshot.k:
        return LoadedData(samples=samples, source=source, fingerprint=fingerprint)
    shot_files = {"rows": cfg.fewshot_path} if cfg.fewshot_path else dict(fewshot.files)
    if not shot_files and not fewshot.split:
        return LoadedData(samples, source, fingerprint, fewshot=samples, fewshot_same_split=True)
    shot_rows, _, shot_fingerprint = _read(cfg, shot_files, fewshot.split)
    pool = [to_sample(row, i) for i, row in enumerate(shot_rows)]
    shots = {f"fewshot:{name}": digest for name, digest in shot_fingerprint.items()}
    return LoadedData(samples, source, {**fingerprint, **shots}, fewshot=pool, fewshot_same_split=False)
