"""De-quantized GGUF weights, cached as safetensors: converting a GGUF file costs ~20 s at every load, reading
the converted copy ~1 s. The key is the GGUF file's sha256, the dtype and the transformers version."""

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


def cache_dir(cfg: TransformersModelConfig, cache_root: str) -> Path:
    import transformers

    from hydra_eval.data.loader import sha256_file

    assert cfg.gguf_file is not None
    digest = sha256_file(Path(cfg.path) / cfg.gguf_file)[:16]
    name = f"{Path(cfg.gguf_file).stem}-{digest}-{cfg.dtype.value}-transformers{transformers.__version__}"
    return Path(cache_root) / "gguf" / name


def _save_plain(model: Any, folder: Path) -> None:
    """The de-quantized weights as an ordinary checkpoint: transformers refuses to save_pretrained a model
    that came from a GGUF file, so write the tensors and a config without the GGUF quantization marker."""
    import json

    from safetensors.torch import save_model

    save_model(model, str(folder / "model.safetensors"))  # handles the tied embedding / LM head
    config = model.config.to_dict()
    config.pop("quantization_config", None)
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
