"""Load a causal LM and its tokenizer from a model config: hub id, local dir, GGUF file or tiny."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _from_pretrained(cfg: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    if cfg.gguf_file:
        common["gguf_file"] = cfg.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_path or cfg.path, **common)
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=getattr(torch, cfg.dtype), **common)
    except OSError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot load model '{cfg.name}' from '{cfg.path}': {first}") from None
    return model, tokenizer


def load(cfg: Any, cache_root: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on its device, tokenizer with a pad token). GGUF weights are de-quantized once
    and cached under cache_root when model.cache_gguf is set."""
    import torch

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.kind == "tiny":
        from hydra_eval.backends import tiny

        model, tokenizer = tiny.build(cfg)
        model = model.to(getattr(torch, cfg.dtype))
    elif cfg.kind == "hf" and cfg.gguf_file and cfg.cache_gguf and cache_root:
        from hydra_eval.backends import gguf_cache

        model, tokenizer = gguf_cache.load(cfg, cache_root, _from_pretrained)
    elif cfg.kind == "hf":
        model, tokenizer = _from_pretrained(cfg)
    else:
        raise UserError(f"model.kind must be 'hf', 'tiny' or 'openai', not '{cfg.kind}'")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(resolve_device(cfg.device)).eval()
    return model, tokenizer


def fingerprint(cfg: Any) -> dict[str, str]:
    """What identifies the weights: the GGUF file's sha256, a local dir's config, or the hub id+revision."""
    if cfg.kind == "openai":  # what the server serves is its business: the key is where and what is asked
        return {"api": f"{cfg.api.base_url}|{cfg.api.model or cfg.name}|{cfg.api.endpoint}"}
    if cfg.kind == "tiny":
        blob = json.dumps({"tiny": dict(cfg.tiny), "seed": cfg.seed}, sort_keys=True)
        return {"tiny": hashlib.sha256(blob.encode()).hexdigest()}
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
