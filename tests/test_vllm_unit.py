"""The vLLM backend's pure parts and the de-quantized checkpoint it loads (no vLLM needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hydra_eval.backends import gguf_cache
from hydra_eval.backends.vllm import VllmModelConfig, check_scores, engine_environment, finish_reason
from hydra_eval.errors import HarnessError


def test_uniform_logits_are_a_harness_failure() -> None:
    with pytest.raises(HarnessError, match="uniform"):
        check_scores([-math.log(49152)] * 7, 49152)


def test_real_scores_pass() -> None:
    check_scores([-math.log(49152), -2.5, -0.1], 49152)
    check_scores([], 49152)


def test_finish_reasons() -> None:
    assert finish_reason("length", None) == "length"
    assert finish_reason("stop", "\n\n") == "stop_string"
    assert finish_reason("stop", None) == "eos"
    assert finish_reason("stop", 2) == "eos"  # a stop token id (the eos of generation_config)


def test_engine_environment_binds_every_allowed_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.delenv("VLLM_CONFIGURE_LOGGING", raising=False)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    env = engine_environment(VllmModelConfig(name="m", path="p"))
    assert env == {
        "VLLM_CONFIGURE_LOGGING": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "4",
        "VLLM_CPU_OMP_THREADS_BIND": "0-3",
    }
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 2})
    assert engine_environment(VllmModelConfig(name="m", path="p"))["VLLM_CPU_OMP_THREADS_BIND"] == "0,2"


def test_engine_environment_keeps_the_users_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "9")
    monkeypatch.setenv("VLLM_CONFIGURE_LOGGING", "1")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    assert engine_environment(VllmModelConfig(name="m", path="p")) == {}


def test_saved_checkpoint_names_the_tied_embedding_and_architecture(tmp_path: Path) -> None:
    """vLLM loads model.embed_tokens.weight; a checkpoint holding the tied weight only as lm_head.weight made
    it score every token at -ln(vocab). Both names, equal tensors, and `architectures` must be written."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    gguf_cache._save_plain(model, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(tensors["model.embed_tokens.weight"], tensors["lm_head.weight"])
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
