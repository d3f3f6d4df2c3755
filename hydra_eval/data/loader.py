"""Rows -> samples: from the local data directory when its files are there, else from the HF hub."""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError
from hydra_eval.records import Sample


@dataclass(frozen=True)
class LoadedData:
    samples: list[Sample]
    source: str  # local directory or hub id
    fingerprint: dict[str, str]  # file name -> sha256, or hub id -> datasets fingerprint


def import_object(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot import '{dotted}' named in the config: {e}") from None


def sha256_file(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hub_reachable() -> None:
    """Fail in milliseconds, not after a minute of retries, when the hub's host does not even resolve."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise ConnectionError(f"cannot resolve {host} ({e.strerror})") from None


def _read_hub(cfg: Any) -> list[dict[str, Any]]:
    """datasets.load_dataset on a hub id (or on a local folder in the hub's layout, as tests do)."""
    import datasets

    if not Path(cfg.hf_path).exists():
        _hub_reachable()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    ds = datasets.load_dataset(cfg.hf_path, cfg.hf_name, split=cfg.split)
    return [dict(row) for row in ds]


def load_samples(cfg: Any) -> LoadedData:
    """Read the dataset named by a dataset config, apply ``limit``, and fingerprint its source."""
    directory = Path(cfg.local_dir)
    paths = [directory / name for name in cfg.files.values()]
    if paths and all(p.is_file() for p in paths):
        read_local: Callable[..., list[dict[str, Any]]] = import_object(cfg.read_local)
        rows = read_local(directory, dict(cfg.files))
        source = str(directory)
        fingerprint = {p.name: sha256_file(p) for p in paths}
    elif cfg.hf_path:
        try:
            rows = _read_hub(cfg)
        except Exception as e:  # offline, unknown repo, missing split: all end the same way for a user
            raise UserError(
                f"no data for dataset '{cfg.name}': no files {[p.name for p in paths]} in {directory} "
                f"(set paths.data_dir=...), and the HF hub '{cfg.hf_path}' failed: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
        source = f"hf://{cfg.hf_path}" + (f"/{cfg.hf_name}" if cfg.hf_name else "") + f"@{cfg.split}"
        fingerprint = {source: hashlib.sha256(repr(rows).encode()).hexdigest()}
    else:
        raise UserError(f"no data for dataset '{cfg.name}': no files {[p.name for p in paths]} in {directory}")
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    to_sample: Callable[[dict[str, Any], int], Sample] = import_object(cfg.record_to_sample)
    samples = [to_sample(row, i) for i, row in enumerate(rows)]
    return LoadedData(samples=samples, source=source, fingerprint=fingerprint)
