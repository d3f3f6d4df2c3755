"""Competition math: MATH-500 and AIME files, their prompts, and answers checked by math-verify."""

from __future__ import annotations

import pytest

from hydra_eval import fewshot, judges, prompts
from hydra_eval.config import typed
from hydra_eval.data import math
from hydra_eval.data.loader import load_samples
from hydra_eval.records import GenPrediction

AIME25_ANSWERS = [70, 588, 16, 117, 279, 504, 821, 77, 62, 81, 259, 510, 204, 60, 735]
AIME25_ANSWERS += [468, 49, 82, 106, 336, 293, 237, 610, 149, 907, 113, 19, 248, 104, 240]  # its README


def judged(output: str, answer: str) -> tuple[bool, str | None]:
    row = GenPrediction(0, "0", 0, "", (output,), ("eos",), 0, 0, answers=("\\boxed{" + answer + "}",))
    [v] = judges.MathVerify().judge([row])
    return v.correct, v.answer


@pytest.mark.parametrize(
    ("output", "answer"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "0.5"),
        ("The answer is 0.5", "\\frac12"),
        ("\\boxed{x=3}", "3"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ],
)
def test_equivalent_answers_are_correct(output, answer):
    assert judged(output, answer)[0]


def test_wrong_or_missing_answers_are_not():
    assert judged("\\boxed{4}", "3") == (False, "4")
    assert judged("I do not know.", "3") == (False, None)
    assert judged("\\boxed{25} then \\boxed{7}", "25") == (False, "25,7")  # two boxed answers: a set, {7, 25}


def test_math500_has_500_problems_in_seven_subjects(compose_cfg):
    data = load_samples(compose_cfg("dataset=math500").dataset)
    assert len(data.samples) == 500 and len({s.fields["subject"] for s in data.samples}) == 7
    first = data.samples[0]
    assert first.id == "test/precalculus/807.json" and first.fields["answers"] == [
        "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}"
    ]


def test_minerva_prompt_is_lmevals_four_shot(compose_cfg):
    cfg = typed(compose_cfg("dataset=math500_minerva"))
    data = load_samples(cfg.dataset)
    sample = data.samples[0]
    shots = fewshot.select(cfg.dataset.fewshot, sample, data.fewshot, data.fewshot_same_split)
    text = prompts.gen_text(cfg.dataset, sample, shots, None)
    assert text.startswith("Problem:\nFind the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.\n\n")
    assert text.count("Problem:\n") == 5 and text.count("I hope it is correct.\n\n") == 4
    assert text.endswith(f"Problem:\n{sample.fields['problem']}\n\nSolution:")


@pytest.mark.parametrize("year", ["24", "25"])
def test_aime_has_30_integer_answers_and_no_control_characters(compose_cfg, year):
    samples = load_samples(compose_cfg(f"dataset=aime{year}").dataset).samples
    assert len(samples) == 30
    assert all(s.fields["answer"].isdigit() and not s.fields["answer"].startswith("0") for s in samples)
    assert not any(c in s.fields["problem"] for s in samples for c in "\x0c\t")
    if year == "25":
        assert [int(s.fields["answer"]) for s in samples] == AIME25_ANSWERS
        assert samples[18].fields["problem"].count("\\frac") == 5 and "\\triangle" in samples[19].fields["problem"]
        assert "\\frac{m}{n}" in samples[27].fields["problem"]


def test_aime_repair_puts_back_exactly_the_lost_backslashes():
    assert math.repair_latex("\x0crac{1}{2} in \triangle ABC") == "\\frac{1}{2} in \\triangle ABC"
    assert math.repair_latex("a\tb") == "a\tb"  # a tab that was not \t of \triangle stays
    hub = math.aime_record({"ID": "2024-I-1", "Problem": "P", "Answer": 204}, 0)  # Maxwell-Jia/AIME_2024
    assert hub.fields["answer"] == "204" and hub.id == "2024-I-1"
