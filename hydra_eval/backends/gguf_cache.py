"""De-quantized GGUF weights, cached as safetensors: converting a GGUF file costs ~20 s at every load, reading
the converted copy ~1 s. The key is the GGUF file's sha256, the dtype, the transformers version and the layout
version below. The folder is a plain checkpoint that other engines load as well (vLLM)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hydra_eval.backends.hf import TransformersModelConfig

log = logging.getLogger(__name__)

# 2: every tensor under its own name (a tied embedding as both model.embed_tokens.weight and lm_head.weight)
# and `architectures` in config.json; version 1 folders had only lm_head.weight, which vLLM reads as zeros
LAYOUT = 2


def cache_dir(cfg: TransformersModelConfig, cache_root: str) -> Path:
    import transformers

    from hydra_eval.data.loader import sha256_file

    assert cfg.gguf_file is not None
    digest = sha256_file(Path(cfg.path) / cfg.gguf_file)[:16]
    name = (
        f"{Path(cfg.gguf_file).stem}-{digest}-{cfg.dtype.value}-transformers{transformers.__version__}-v{LAYOUT}"
    )
    return Path(cache_root) / "gguf" / name


def _save_plain(model: Any, folder: Path) -> None:
    """The de-quantized weights as an ordinary checkpoint: transformers refuses to save_pretrained a model
    that came from a GGUF file, so write the tensors and a config without the GGUF quantization marker.
    Tensors shared by several names (a tied embedding) are written under every name: a loader that reads
    only one of them (vLLM reads model.embed_tokens.weight) must find it."""
    import json

    from safetensors.torch import save_file

    seen: dict[int, str] = {}
    tensors = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        tensors[name] = tensor.detach().clone().contiguous() if key in seen else tensor.detach().contiguous()
        seen.setdefault(key, name)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = config.get("architectures") or [type(model).__name__]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(folder)


def load(cfg: TransformersModelConfig, cache_root: str, convert: Any) -> tuple[Any, Any]:
    """From the cache when the converted copy exists; else convert(cfg) and store the result."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir(cfg, cache_root)
    if (target / "config.json").is_file():
        log.info("model %s: de-quantized copy from %s", cfg.name, target)
        tokenizer = AutoTokenizer.from_pretrained(target)
        return AutoModelForCausalLM.from_pretrained(target, dtype=getattr(torch, cfg.dtype.value)), tokenizer
    model, tokenizer = convert(cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        _save_plain(model, tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, target)  # atomic; a concurrent job that won the race keeps its copy
        log.info("model %s: de-quantized copy saved to %s", cfg.name, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer
