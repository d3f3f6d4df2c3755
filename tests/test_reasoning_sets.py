"""BBH and MMLU-Pro as lm-eval's bbh_cot_fewshot and mmlu_pro: files, few-shot prompts, regex answers."""

from __future__ import annotations

import pytest

from hydra_eval import fewshot, judges, prompts
from hydra_eval.config import typed
from hydra_eval.data import bbh
from hydra_eval.data.loader import load_samples
from hydra_eval.errors import UserError
from hydra_eval.records import GenPrediction
from hydra_eval.validate import check


def regex_verdict(judge: judges.RegexMatch, output: str, gold: str) -> tuple[bool, str | None]:
    row = GenPrediction(0, "0", 0, "", (output,), ("eos",), 0, 0, answers=(gold,))
    [v] = judge.judge([row])
    return v.correct, v.answer


BBH = judges.RegexMatch("(?<=the answer is )(.*)(?=.)")
MMLU_PRO = judges.RegexMatch(r"answer is \(?([ABCDEFGHIJ])\)?", ignore_case=True, ignore_punctuation=True)


def test_bbh_regex_is_lmevals_and_drops_the_last_character():
    assert regex_verdict(BBH, "A is True. So the answer is False.", "False") == (True, "False")
    assert regex_verdict(BBH, "So the answer is (B).", "(B)") == (True, "(B)")
    assert regex_verdict(BBH, "so the answer is False", "False") == (False, "Fals")  # lm-eval does the same
    assert regex_verdict(BBH, "I am not sure.", "False") == (False, None)  # lm-eval's "[invalid]"


def test_mmlu_pro_regex_takes_the_first_letter_and_ignores_case_and_punctuation():
    assert regex_verdict(MMLU_PRO, "the answer is (C). Or the answer is D", "C") == (True, "C")
    assert regex_verdict(MMLU_PRO, "My Answer Is C", "C") == (False, None)  # the pattern is case-sensitive
    assert regex_verdict(MMLU_PRO, "answer is J", "J") == (True, "J")


def test_bbh_has_27_tasks_and_6511_questions_each_with_its_description(compose_cfg):
    data = load_samples(compose_cfg("dataset=bbh").dataset)
    assert len(data.samples) == 6511 and len({s.fields["task"] for s in data.samples}) == 27
    assert len(data.fewshot) == 81
    snarks = next(s for s in data.fewshot if s.fields["task"] == "snarks")
    assert snarks.fields["description"].startswith(
        "Determine which of two sentences is sarcastic.\n\nAccording to"
    )
    sports = [s for s in data.fewshot if s.fields["task"] == "sports_understanding"]
    assert sports[0].fields["target"].startswith("Bam Adebayo is an American basketball player.")


def test_bbh_prompt_is_description_then_three_examples_of_the_same_task(compose_cfg):
    cfg = typed(compose_cfg("dataset=bbh", "dataset.subsets=[date_understanding]", "dataset.limit=2"))
    data = load_samples(cfg.dataset)
    sample = data.samples[0]
    assert sample.fields["task"] == "date_understanding" and sample.id.startswith("date_understanding/")
    shots = fewshot.select(cfg.dataset.fewshot, sample, data.fewshot, data.fewshot_same_split)
    text = prompts.gen_text(cfg.dataset, sample, shots, None)
    assert text.startswith(
        "Infer the date from context.\n\nQ: Today is Christmas Eve of 1937. What is the date 10"
    )
    assert text.count("A: Let's think step by step.\n") == 4 and text.count("So the answer is") == 3
    assert text.endswith(f"Q: {sample.fields['input']}\nA: Let's think step by step.\n")


def test_unknown_subsets_are_one_line_naming_the_known_ones(compose_cfg):
    with pytest.raises(UserError, match="has no task date_understandin .*it has: boolean_expressions"):
        load_samples(compose_cfg("dataset=bbh", "dataset.subsets=[date_understandin]").dataset)
    with pytest.raises(UserError, match="no dataset.group_metrics_by"):
        load_samples(compose_cfg("dataset=gsm8k", "dataset.subsets=[x]").dataset)


def test_mmlu_pro_reads_both_splits_and_takes_five_examples_of_the_category(compose_cfg):
    cfg = typed(compose_cfg("dataset=mmlu_pro"))
    data = load_samples(cfg.dataset)
    assert len(data.samples) == 12032 and len(data.fewshot) == 70
    assert len({s.fields["category"] for s in data.samples}) == 14
    odd = next(s for s in data.samples if s.id == "3983")  # answer C, answer_index 1: the letter wins (lm-eval)
    assert odd.fields["answers"] == ["C"]
    law = next(s for s in data.samples if s.fields["category"] == "law")
    shots = fewshot.select(cfg.dataset.fewshot, law, data.fewshot, data.fewshot_same_split)
    assert len(shots) == 5 and {s.fields["category"] for s in shots} == {"law"}
    text = prompts.gen_text(cfg.dataset, law, shots, None)
    assert text.startswith("The following are multiple choice questions (with answers) about law. Think step")
    assert text.count("Answer: Let's think step by step.") == 6 and "A: Let's think step by step." not in text
    assert text.endswith("Answer: Let's think step by step.")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["dataset=bbh", "dataset.gen.answer_regex=null"], "needs dataset.gen.answer_regex"),
        (["dataset=bbh", "dataset.gen.answer_regex='(unclosed'"], "not a valid regular expression"),
        (["dataset=aime24", "dataset.gen.answers_field=null"], "needs dataset.gen.answers_field"),
        (["dataset=aime24", "dataset.gen.num_samples=4", "dataset.gen.temperature=0"], "would all be the greedy"),
        (["dataset=aime24", "dataset.gen.top_p=0"], "top_p must be in"),
    ],
)
def test_gen_settings_a_job_cannot_use_are_one_line(compose_cfg, overrides, needle):
    with pytest.raises(UserError, match=needle):
        check(typed(compose_cfg(*overrides)))


def test_a_malformed_cot_prompt_file_is_named(tmp_path):
    with pytest.raises(UserError, match="x.txt: not a BBH chain-of-thought prompt file"):
        bbh.parse_cot_prompt("canary\nno dashes\n", "x.txt")


def test_mbpp_test_split_and_the_papers_three_examples(compose_cfg):
    cfg = typed(compose_cfg("dataset=mbpp"))
    data = load_samples(cfg.dataset)
    assert len(data.samples) == 500 and data.samples[0].id == "11" and data.samples[-1].id == "510"
    assert [s.id for s in data.fewshot] == ["2", "3", "4"]
    text = prompts.gen_text(cfg.dataset, data.samples[0], data.fewshot, None)
    assert text.startswith("You are an expert Python programmer, and here is your task: Write a function to find")
    assert text.count("[BEGIN]\n") == 4 and text.count("\n[DONE]\n\n") == 3 and text.endswith("[BEGIN]\n")
    sanitized = load_samples(compose_cfg("dataset=mbpp", "dataset.files={test: sanitized-mbpp.json}").dataset)
    assert len(sanitized.samples) == 257


def test_mbpp_programs_are_the_code_then_its_tests(compose_cfg):
    from hydra_eval.data import mbpp

    data = load_samples(compose_cfg("dataset=mbpp", "dataset.limit=1").dataset)
    sample = data.samples[0]
    row = GenPrediction(0, sample.id, 0, "", ("x",), ("eos",), 0, 0, fields={"tests": sample.fields["tests"]})
    source = mbpp.program_of(row, "def f(): pass")
    assert source == "def f(): pass\n" + "\n".join([sample.fields[f"test{i}"] for i in range(3)])
