"""The scoring engine on the tiny random Llama: exact math, and no dependence on batch composition."""

import dataclasses

import pytest
import torch

from hydra_eval import tasks
from hydra_eval.backends import tiny as tiny_backend
from hydra_eval.backends.inprocess import InProcessBackend
from hydra_eval.backends.local import LocalLM
from hydra_eval.backends.tokenize import ScoreRequest
from hydra_eval.config import typed
from hydra_eval.data.loader import load_samples
from hydra_eval.records import GenerationRequest


def tiny_config():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny_llama", "output_dir=/tmp/unused"])
    return typed(cfg).model


@pytest.fixture(scope="module")
def tiny(request):
    return tiny_backend.load(tiny_config())


def lm(tiny, batch_size, token_budget=512):
    model, tokenizer = tiny
    return LocalLM(model, tokenizer, batch_size, max_seq_len=512, token_budget=token_budget)


def backend(tiny, batch_size, token_budget=512):
    cfg = dataclasses.replace(tiny_config(), batch_size=batch_size, token_budget=token_budget)
    return InProcessBackend(cfg, lambda: tiny, identity={})


def generate(tiny, batch_size, prompts, max_new, stop=()):
    requests = [GenerationRequest(p, None, tuple(stop), max_new) for p in prompts]
    return backend(tiny, batch_size).generate(requests)


def naive_logprob(model, tokens, score_from):
    ids = torch.tensor([tokens])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(logprobs[p - 1, tokens[p]].item() for p in range(score_from, len(tokens)))


def naive_greedy(model, tokens, score_from):
    with torch.inference_mode():
        best = model(torch.tensor([tokens])).logits[0].argmax(dim=-1)
    return all(best[p - 1].item() == tokens[p] for p in range(score_from, len(tokens)))


@pytest.mark.parametrize("dataset", ["piqa", "piqa_lmeval"])
def test_scores_do_not_depend_on_batch_size(compose_cfg, tiny, dataset):
    cfg = typed(compose_cfg("model=tiny_llama", f"dataset={dataset}", "dataset.limit=24"))
    rows = list(enumerate(load_samples(cfg.dataset).samples))
    shots: list[list] = [[] for _ in rows]
    task = tasks.for_dataset(cfg.dataset, cfg.model)
    one = task.predict(backend(tiny, 1, token_budget=1), rows, shots)  # one question per forward
    eight = task.predict(backend(tiny, 8, token_budget=8 * 200), rows, shots)
    for a, b in zip(one, eight, strict=True):
        for ca, cb in zip(a.candidates, b.candidates, strict=True):
            assert ca.logprob == pytest.approx(cb.logprob, abs=1e-5)
            assert ca.n_tokens == cb.n_tokens


def test_packed_scores_equal_separate_full_sequences(tiny):
    """Shared prefixes of every length, candidates that diverge at once, score_from inside the prefix,
    inside a candidate, at a candidate's last token, and single-candidate groups."""
    model, _ = tiny
    g = torch.Generator().manual_seed(0)

    def toks(n):
        return tuple(torch.randint(3, 200, (n,), generator=g).tolist())

    shared = toks(9)
    groups = [
        [ScoreRequest(shared + toks(4), 1), ScoreRequest(shared + toks(6), 1), ScoreRequest(shared + toks(1), 1)],
        [ScoreRequest(shared + toks(3), 9), ScoreRequest(shared + toks(5), 9)],
        [ScoreRequest(shared[:4] + toks(3), 5), ScoreRequest(shared[:4] + toks(2), 2)],
        [ScoreRequest(toks(5), 1), ScoreRequest(toks(7), 3)],
        [ScoreRequest(toks(12), 11)],
        [ScoreRequest(shared, 1), ScoreRequest(shared, 4)],  # identical candidates
    ]
    for budget in (1, 64, 4096):
        results = lm(tiny, 4, token_budget=budget).score_groups(groups)
        for group, scored in zip(groups, results, strict=True):
            for request, result in zip(group, scored, strict=True):
                expected = naive_logprob(model, request.tokens, request.score_from)
                assert result.logprob == pytest.approx(expected, abs=1e-4)
                assert result.greedy == naive_greedy(model, request.tokens, request.score_from)
                assert result.n_scored == len(request.tokens) - request.score_from


def test_flat_forward_equals_transformers_forward(tiny):
    """The padding-free forward (fused q|k|v and gate|up, matmuls over real tokens only) gives the scores of
    transformers' own forward over the padded batch, for any token budget."""
    model, tokenizer = tiny
    g = torch.Generator().manual_seed(1)
    groups = [
        [ScoreRequest(tuple(torch.randint(3, 200, (n,), generator=g).tolist()), 1) for n in (5, 17, 3)],
        [ScoreRequest((7, 8, 9, 10, 11, 12), 2), ScoreRequest((7, 8, 9, 40), 4)],
        [ScoreRequest(tuple(range(20, 60)), 30)],
    ]
    reference = LocalLM(model, tokenizer, 4, 512, token_budget=4096, flat_forward=False)
    assert reference._fused is None
    expected = reference.score_groups(groups)
    for budget in (1, 64, 4096):
        engine = lm(tiny, 4, token_budget=budget)
        assert engine._fused is not None
        for want, got in zip(expected, engine.score_groups(groups), strict=True):
            for a, b in zip(want, got, strict=True):
                assert b.logprob == pytest.approx(a.logprob, abs=1e-5)
                assert (b.greedy, b.n_scored) == (a.greedy, a.n_scored)


def test_fused_weights_are_views_not_copies(tiny):
    model, _ = tiny
    engine = lm(tiny, 4)
    attn = model.get_decoder().layers[0].self_attn
    fused = engine._fused[0].qkv
    assert attn.q_proj.weight.data_ptr() == fused.data_ptr()
    assert attn.k_proj.weight.data_ptr() == fused[attn.q_proj.weight.shape[0] :].data_ptr()


def test_other_architectures_keep_the_transformers_forward():
    from transformers import GPT2Config, GPT2LMHeadModel

    from hydra_eval.backends import flat

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50))
    assert not flat.supports(gpt2)


def test_quantized_or_offloaded_layers_keep_the_transformers_forward(compose_cfg):
    from hydra_eval.backends import flat

    model, _ = tiny_backend.load(typed(compose_cfg("model=tiny_llama")).model)
    assert flat.supports(model)
    layer = model.get_decoder().layers[-1]
    layer.mlp.up_proj = torch.nn.Linear(
        layer.mlp.up_proj.in_features, layer.mlp.up_proj.out_features, bias=False, device="meta"
    )
    assert not flat.supports(model)


def test_packing_computes_the_shared_prefix_once(tiny):
    engine = lm(tiny, 4)
    prefix = tuple(range(10, 40))
    engine.score_groups([[ScoreRequest(prefix + (5, 6), 1), ScoreRequest(prefix + (7, 8, 9), 1)]])
    assert engine.tokens_computed == 30 + 2 + 3
    assert engine.head_positions == 29 + 2 + 3  # prefix entries once, then each candidate's own


def test_batched_generation_equals_one_row_at_a_time(tiny):
    prompts = ["Question: a?\nAnswer:", "x", "A much longer prompt that needs left padding.\nAnswer:"]
    batched = generate(tiny, 8, prompts, 6)
    single = generate(tiny, 1, prompts, 6)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.n_new_tokens <= 6 for g in batched)


def test_stop_strings_cut_the_generation(tiny):
    [full] = generate(tiny, 2, ["hello"], 12)
    assert len(full.text) > 2 and full.finish_reason == "length"
    stop = full.text[1:3]
    [cut] = generate(tiny, 2, ["hello"], 12, [stop])
    assert stop not in cut.text and full.text.startswith(cut.text)
    assert cut.finish_reason == "stop_string"


def test_generation_equals_transformers_generate(tiny):
    model, tokenizer = tiny
    prompts = ["Question: a?\\nAnswer:", "x", "A much longer prompt that needs left padding.\\nAnswer:"]
    ours = generate(tiny, 4, prompts, 7)
    for prompt, generation in zip(prompts, ours, strict=True):
        ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.inference_mode():
            ref = model.generate(ids, max_new_tokens=7, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert generation.text == tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)


def shared_prefix_prompts():
    """Token prompts as few-shot sets make them: six rows under one 120-token prefix, two under a 25-token one,
    two that share nothing."""
    g = torch.Generator().manual_seed(3)

    def rand(n):
        return torch.randint(3, 200, (n,), generator=g).tolist()

    shots, other = rand(120), rand(25)
    return [shots + rand(n) for n in (1, 4, 9, 2, 13, 5)] + [other + rand(n) for n in (3, 7)] + [rand(6), rand(1)]


def one_row_generate(model, tokens, max_new):
    with torch.inference_mode():
        out = model.generate(torch.tensor([tokens]), max_new_tokens=max_new, do_sample=False, pad_token_id=0)
    return out[0, len(tokens) :].tolist()


def test_group_rows_share_prefixes_where_they_pay():
    from hydra_eval.backends.decode import Group, group_rows

    prompts = shared_prefix_prompts()
    groups = group_rows(prompts, overhead=16)
    by_rows = {frozenset(g.rows): g.prefix for g in groups}
    assert by_rows[frozenset(range(6))] == 120  # each row keeps at least one own token
    assert by_rows[frozenset({6, 7})] >= 25
    assert sorted(r for g in groups for r in g.rows) == list(range(len(prompts)))
    # rows that share little stay one group (one batch), under whatever they share
    assert group_rows([[1, 2, 3], [1, 2, 4], [1, 5, 6]], overhead=64) == [Group(1, [0, 1, 2])]
    [everything] = group_rows(prompts, overhead=10**6)
    assert everything.prefix == 0 and sorted(everything.rows) == list(range(len(prompts)))


@pytest.mark.parametrize(
    ("batch_size", "kv_cache_gb", "fused"), [(16, 4.0, True), (3, 4.0, True), (16, 1e-5, True), (3, 4.0, False)]
)
def test_engine_generation_equals_transformers_generate_row_by_row(
    tiny, monkeypatch, batch_size, kv_cache_gb, fused
):
    """Shared prefixes computed once, rows leaving and entering slots (3 slots for 10 rows; a KV budget that
    holds one row), attention through torch's fused CPU kernel or through matmuls (as on GPUs): every row's
    greedy tokens are those of transformers' generate on that row alone."""
    from hydra_eval.backends import decode

    monkeypatch.setattr(decode, "fused_attention", lambda device: fused)
    model, tokenizer = tiny
    prompts = shared_prefix_prompts()
    engine = LocalLM(model, tokenizer, batch_size, 512, token_budget=16, kv_cache_gb=kv_cache_gb)
    assert engine._engine is not None
    ours = engine.generate(prompts, 9, ())
    for prompt, generation in zip(prompts, ours, strict=True):
        want = one_row_generate(model, prompt, 9)
        eos = want[-1] in engine._stop_ids()
        assert generation.text == tokenizer.decode(want, skip_special_tokens=True)
        assert generation.n_new_tokens == len(want) - eos
        assert generation.finish_reason == ("eos" if eos else "length")


def test_engine_computes_each_shared_prefix_once(tiny):
    model, tokenizer = tiny
    prompts = shared_prefix_prompts()
    engine = LocalLM(model, tokenizer, 16, 512)
    out = engine.generate(prompts, 5, ())
    prompt_tokens = engine.tokens_computed - sum(
        max(g.n_new_tokens + (g.finish_reason == "eos") - 1, 0) for g in out
    )
    # the exemplar-like prefix once, then every row's own tokens (the 25-token prefix of two rows saves less
    # than a group costs: those rows join the rest)
    assert prompt_tokens == sum(len(p) for p in prompts) - 5 * 120


def test_engine_sampling_equals_the_transformers_loop(tiny):
    """Seeded sampling draws the same tokens in the padding-free engine as in the padded transformers loop."""
    model, tokenizer = tiny
    prompts = shared_prefix_prompts()
    seeds = list(range(100, 100 + len(prompts)))
    reference = LocalLM(model, tokenizer, 4, 512, flat_forward=False)
    engine = LocalLM(model, tokenizer, 4, 512)
    want = reference.generate(prompts, 8, (), (0.8, 0.9, 50), seeds)
    got = engine.generate(prompts, 8, (), (0.8, 0.9, 50), seeds)
    assert [g.text for g in got] == [g.text for g in want]
    assert len({g.text for g in got}) > 1


def test_flash_cpu_reads_transposed_views_right():
    """torch's fused CPU kernel reads q as if its last dimension were contiguous; a decode step's q is a
    transposed view (weight @ x.T). flash_cpu gives the exact softmax attention for it anyway."""
    from hydra_eval.backends.decode import flash_cpu

    g = torch.Generator().manual_seed(0)
    q = torch.randn(16, 2, 2, 2, generator=g).permute(3, 2, 1, 0)  # (2, 2, 2, 16), last-dim stride 4
    assert q.stride(-1) != 1
    k, v = torch.randn(2, 2, 21, 16, generator=g), torch.randn(2, 2, 21, 16, generator=g)
    mask = torch.zeros(2, 1, 2, 21)
    mask[1, :, :, 2:] = float("-inf")
    scores = q @ k.transpose(-1, -2) * 0.25 + mask
    out, lse = flash_cpu(q, k, v, 0.25, mask)
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ v)
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1))


def test_an_empty_generation_prompt_is_one_clear_error(tiny):
    from hydra_eval.errors import UserError

    model, tokenizer = tiny
    with pytest.raises(UserError, match="1 generation prompt"):
        LocalLM(model, tokenizer, 4, 512).generate([[5, 6], []], 3, ())
