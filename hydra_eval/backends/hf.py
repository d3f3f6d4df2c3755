"""The transformers backend: AutoModelForCausalLM from a hub id, a local folder, or a GGUF file inside one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from hydra_eval.backends import BackendEnv
from hydra_eval.backends.inprocess import InProcessBackend
from hydra_eval.errors import UserError
from hydra_eval.schema import LocalModelConfig


@dataclass
class TransformersModelConfig(LocalModelConfig):
    """conf/model/*.yaml with `defaults: [base_hf]`."""

    _target_: str = "hydra_eval.backends.hf.build"
    path: str = MISSING  # hub id or local folder
    tokenizer_path: str | None = None
    gguf_file: str | None = None
    cache_gguf: bool = True  # keep the de-quantized weights under paths.cache_dir (loads in ~1 s, not ~20 s)
    revision: str | None = None
    trust_remote_code: bool = False


SCHEMA = TransformersModelConfig


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def finish(cfg: LocalModelConfig, model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """The model in eval mode on its device; the tokenizer with a pad token."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(resolve_device(cfg.device)).eval()
    return model, tokenizer


def _from_pretrained(cfg: TransformersModelConfig) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    if cfg.gguf_file:
        common["gguf_file"] = cfg.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_path or cfg.path, **common)
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=getattr(torch, cfg.dtype.value), **common)
    except OSError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot load model '{cfg.name}' from '{cfg.path}': {first}") from None
    return model, tokenizer


def load(cfg: TransformersModelConfig, cache_root: str | None = None) -> tuple[Any, Any]:
    """GGUF weights are de-quantized once and cached under cache_root when model.cache_gguf is set."""
    if cfg.gguf_file and cfg.cache_gguf and cache_root:
        from hydra_eval.backends import gguf_cache

        model, tokenizer = gguf_cache.load(cfg, cache_root, _from_pretrained)
    else:
        model, tokenizer = _from_pretrained(cfg)
    return finish(cfg, model, tokenizer)


def fingerprint(cfg: TransformersModelConfig) -> dict[str, str]:
    """What identifies the weights: the GGUF file's sha256, a local dir's files, or the hub id+revision."""
    path = Path(cfg.path)
    if cfg.gguf_file and (path / cfg.gguf_file).is_file():
        from hydra_eval.data.loader import sha256_file

        return {cfg.gguf_file: sha256_file(path / cfg.gguf_file)}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".json", ".safetensors"} and p.is_file())
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode())
            stat = p.stat()  # size and modification time: a checkpoint rewritten in place gets a new key
            h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        return {str(path): h.hexdigest()}
    return {cfg.path: cfg.revision or "main"}


def identity(cfg: TransformersModelConfig) -> dict[str, object]:
    """The weights and the settings that change outputs (batch sizes and token budgets do not: tested to 1e-5)."""
    return {
        "backend": "hf",
        "weights": fingerprint(cfg),
        "path": cfg.path,
        "tokenizer_path": cfg.tokenizer_path,
        "revision": cfg.revision,
        "dtype": cfg.dtype.value,
        "device": cfg.device,
        "max_seq_len": cfg.max_seq_len,
    }


def _local(path: str) -> bool:
    """A path that names a folder on this machine, not a hub id (`org/name`)."""
    return path.startswith(("/", ".", "~")) or path.count("/") > 1


def check_weights(name: str, path: str, tokenizer_path: str | None, gguf_file: str | None) -> None:
    """A local folder or GGUF file that is not there, in one line (a hub id is the hub's to find)."""
    for key, value in (("path", path), ("tokenizer_path", tokenizer_path)):
        if value and _local(value) and not Path(value).expanduser().is_dir():
            raise UserError(
                f"model '{name}': model.{key}={value}: no such folder (a local model folder or a hub id)"
            )
    if gguf_file and Path(path).expanduser().is_dir() and not (Path(path).expanduser() / gguf_file).is_file():
        raise UserError(f"model '{name}': GGUF file '{gguf_file}' not found in '{path}'")


def check(cfg: TransformersModelConfig) -> None:
    check_weights(cfg.name, cfg.path, cfg.tokenizer_path, cfg.gguf_file)


def build(cfg: TransformersModelConfig, env: BackendEnv) -> InProcessBackend:
    check(cfg)
    return InProcessBackend(cfg, lambda: load(cfg, env.cache_dir), identity(cfg))
