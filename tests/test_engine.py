"""The scoring engine on the tiny random Llama: exact math, and no dependence on batch composition."""

import pytest
import torch

from hydra_eval.backends import loading
from hydra_eval.backends.local import LocalLM
from hydra_eval.data.loader import load_samples
from hydra_eval.infer import _ppl_rows
from hydra_eval.requests import opencompass_request


@pytest.fixture(scope="module")
def tiny(request):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny_llama", "output_dir=/tmp/unused"])
    return loading.load(cfg.model)


def lm(tiny, batch_size):
    model, tokenizer = tiny
    return LocalLM(model, tokenizer, batch_size=batch_size, max_seq_len=512, progress=False)


def naive_logprob(model, tokens, score_from):
    ids = torch.tensor([tokens])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(logprobs[p - 1, tokens[p]].item() for p in range(score_from, len(tokens)))


@pytest.mark.parametrize("dataset", ["piqa", "piqa_lmeval"])
def test_scores_do_not_depend_on_batch_size(compose_cfg, tiny, dataset):
    cfg = compose_cfg("model=tiny_llama", f"dataset={dataset}", "dataset.limit=24")
    samples = load_samples(cfg.dataset).samples
    one = _ppl_rows(lm(tiny, 1), cfg.dataset.ppl, samples)
    eight = _ppl_rows(lm(tiny, 8), cfg.dataset.ppl, samples)
    for a, b in zip(one, eight, strict=True):
        for ca, cb in zip(a["candidates"], b["candidates"], strict=True):
            assert ca["logprob"] == pytest.approx(cb["logprob"], abs=1e-5)
            assert ca["n_tokens"] == cb["n_tokens"]


def test_scores_equal_a_naive_full_logits_computation(tiny):
    model, tokenizer = tiny
    engine = lm(tiny, 4)
    texts = ["The following makes sense: \nQ: x\nA: y\n", "short", "a somewhat longer text to pad against"]
    requests = [opencompass_request(t, "", engine.encode) for t in texts]
    for request, result in zip(requests, engine.score(requests), strict=True):
        assert result.logprob == pytest.approx(naive_logprob(model, request.tokens, 1), abs=1e-4)
        assert result.n_scored == len(request.tokens) - 1


def test_batched_generation_equals_one_row_at_a_time(tiny):
    prompts = ["Question: a?\nAnswer:", "x", "A much longer prompt that needs left padding.\nAnswer:"]
    batched = lm(tiny, 8).generate(prompts, 6, [], chat=False)
    single = lm(tiny, 1).generate(prompts, 6, [], chat=False)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.n_new_tokens <= 6 for g in batched)


def test_stop_strings_cut_the_generation(tiny):
    engine = lm(tiny, 2)
    full = engine.generate(["hello"], 12, [], chat=False)[0].text
    assert len(full) > 2
    stop = full[1:3]
    cut = engine.generate(["hello"], 12, [stop], chat=False)[0].text
    assert stop not in cut and full.startswith(cut)
