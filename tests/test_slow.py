"""The real SmolLM2-135M GGUF on real data (minutes on 2 cores)."""

import json
from pathlib import Path

import pytest

from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "piqa_smollm2_200.json"


@pytest.mark.slow
def test_piqa_200_rows_equal_the_one_row_at_a_time_reference(compose_cfg, tmp_path):
    """Golden values come from scripts/reference_ppl.py --limit 200 (no batching, shares no code)."""
    golden = json.loads(GOLDEN.read_text())
    results = run(compose_cfg("dataset=piqa", "dataset.limit=200"), print_summary=False)
    assert results is not None
    assert results.metrics["accuracy"] == pytest.approx(golden["accuracy"], abs=1e-9)
    rows = read_jsonl(tmp_path / "out" / "judged" / "smollm2_135m" / "piqa.jsonl")
    for row, expected in zip(rows, golden["scores"], strict=True):
        assert row["scores"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_siqa_keeps_raw_generation_and_letter(compose_cfg, tmp_path):
    results = run(compose_cfg("dataset=siqa", "dataset.limit=12"), print_summary=False)
    assert results is not None and results.n == 12
    rows = read_jsonl(tmp_path / "out" / "judged" / "smollm2_135m" / "siqa.jsonl")
    assert all(isinstance(r["generation"], str) and r["answer"] in {"A", "B", "C", None} for r in rows)
    assert sum(r["answer"] is not None for r in rows) >= 6  # the chat-tuned model answers with a letter


@pytest.mark.slow
def test_cached_dequantized_copy_equals_the_gguf(compose_cfg, cache_dir):
    import torch

    from hydra_eval.backends import gguf_cache, hf
    from hydra_eval.config import typed

    cfg = typed(compose_cfg()).model
    assert isinstance(cfg, hf.TransformersModelConfig)
    direct_model, direct_tok = hf.load(cfg)  # no cache root: straight from the GGUF file
    hf.load(cfg, str(cache_dir))  # converts (or finds) the cached copy
    assert (gguf_cache.cache_dir(cfg, str(cache_dir)) / "config.json").is_file()
    cached_model, cached_tok = hf.load(cfg, str(cache_dir))
    text = "The following makes sense: \nQ: How do I open a jar?\nA: Twist the lid.\n"
    assert cached_tok(text).input_ids == direct_tok(text).input_ids
    assert (
        cached_tok.eos_token_id == direct_tok.eos_token_id and cached_tok.pad_token_id == direct_tok.pad_token_id
    )
    ids = torch.tensor([direct_tok(text).input_ids])
    with torch.inference_mode():
        assert torch.equal(cached_model(ids).logits, direct_model(ids).logits)


@pytest.mark.slow
def test_real_model_output_with_reasoning_tags_is_stripped_and_both_kept(compose_cfg, tmp_path):
    """SmolLM2-135M-Instruct copies the <think>...</think> layout of its few-shot turns: the answer after the
    tag is scored, the raw output and the reasoning are kept."""
    shots = [
        {"question": "What is 2+2?", "answer": "<think>2 plus 2 makes 4.</think> 4"},
        {
            "question": "What is the capital of France?",
            "answer": "<think>France's capital city is Paris.</think> Paris",
        },
    ]
    rows = [{"question": "What is 3+5?", "answer": "8"}, {"question": "Name a fruit.", "answer": "apple"}]
    (tmp_path / "shots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shots))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose_cfg(
        "dataset=custom",
        "dataset.mode=gen",
        f"dataset.path={tmp_path / 'rows.jsonl'}",
        f"dataset.fewshot_path={tmp_path / 'shots.jsonl'}",
        "dataset.fewshot.k=2",
        "dataset.fewshot.sampler=first_n",
        "dataset.gen.template='{question}'",
        "dataset.gen.stop=[]",
        "dataset.gen.max_out_len=40",
        "model.system_prompt='Think first, between <think> and </think>, then answer.'",
        "model.reasoning.strip=true",
    )
    results = run(cfg, print_summary=False)
    assert results is not None
    judged = read_jsonl(Path(cfg.output_dir) / "judged" / "smollm2_135m" / "custom.jsonl")
    tagged = [r for r in judged if "</think>" in r["generation"]]
    assert tagged, [r["generation"] for r in judged]
    for r in tagged:
        assert r["reasoning"][0] and "</think>" not in r["outputs"][0]
        assert r["generation"].endswith(r["outputs"][0])
    assert results.generation["mean_reasoning_tokens"] > 0
