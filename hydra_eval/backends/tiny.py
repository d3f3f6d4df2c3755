"""The tiny backend: a small random Llama with a byte-level tokenizer, built in-process from a fixed seed
(tests: no files, no hub, deterministic scores)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from hydra_eval.backends import BackendEnv
from hydra_eval.backends.inprocess import InProcessBackend
from hydra_eval.schema import LocalModelConfig


@dataclass
class TinyModelConfig(LocalModelConfig):
    """conf/model/*.yaml with `defaults: [base_tiny]`."""

    _target_: str = "hydra_eval.backends.tiny.build"
    tiny: dict[str, Any] = field(default_factory=dict)  # LlamaConfig fields (hidden_size, num_hidden_layers, ...)


SCHEMA = TinyModelConfig


def byte_tokenizer() -> Any:
    """Byte-level BPE with no merges: every UTF-8 byte is one token; ids 0-2 are specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", add_bos_token=False
    )


def load(cfg: TinyModelConfig) -> tuple[Any, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hydra_eval.backends.hf import finish

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=cfg.max_seq_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **dict(cfg.tiny),
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config).to(getattr(torch, cfg.dtype.value))
    return finish(cfg, model, tokenizer)


def identity(cfg: TinyModelConfig) -> dict[str, object]:
    blob = json.dumps({"tiny": dict(cfg.tiny), "seed": cfg.seed}, sort_keys=True)
    return {
        "backend": "tiny",
        "weights": hashlib.sha256(blob.encode()).hexdigest(),
        "dtype": cfg.dtype.value,
        "device": cfg.device,
        "max_seq_len": cfg.max_seq_len,
    }


def build(cfg: TinyModelConfig, env: BackendEnv) -> InProcessBackend:
    return InProcessBackend(cfg, lambda: load(cfg), identity(cfg))
