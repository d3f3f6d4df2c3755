import math

import pytest

from hydra_eval import metrics, scoring


def test_opencompass_ppl_divides_by_all_tokens():
    assert scoring.opencompass_ppl(logprob=-6.0, n_tokens=4) == pytest.approx(1.5)


def test_argmin_and_argmax_ties_go_to_first():
    assert scoring.argmin_first([2.0, 1.0, 1.0]) == 1
    assert scoring.argmax_first([1.0, 3.0, 3.0]) == 1


def test_acc_norm_divides_by_characters():
    assert scoring.lmeval_acc_norm_scores([-4.0, -6.0], ["ab", "abcdef"]) == [-2.0, -1.0]
    assert scoring.argmax_first(scoring.lmeval_acc_norm_scores([-4.0, -6.0], ["ab", "abcdef"])) == 1


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        (" B", "B"),
        (" (C) because", "C"),
        ("The answer is A.", "A"),
        ("Because nothing", None),
        (" C. Eat", "C"),
        ("Alice went", None),
        ("\nB\n", "B"),
    ],
)
def test_first_letter(text, letter):
    assert scoring.first_letter(text, ["A", "B", "C"]) == letter


def test_edit_distance():
    assert scoring.edit_distance("kitten", "sitting") == 3
    assert scoring.edit_distance("", "abc") == 3


def test_edit_distance_choice_matches_closest_form():
    options = ["go home", "eat lunch", "sleep"]
    assert scoring.edit_distance_choice(" eat lunch", ["A", "B", "C"], options) == "B"
    assert scoring.edit_distance_choice("C", ["A", "B", "C"], options) == "C"
    assert scoring.edit_distance_choice("zzzzzzzzzzzzzzzzzzzz", ["A", "B", "C"], ["x", "y", "z"]) == "C"
    assert scoring.edit_distance_choice("", ["A", "B", "C"], options) == "A"  # tie -> first


def test_accuracy_and_stderr_like_lmeval():
    m = metrics.accuracy_metrics("acc", [True, False, True, True])
    assert m["acc"] == 75.0
    assert m["acc_stderr"] == pytest.approx(100 * math.sqrt(0.25) / 2)  # sample std 0.5 / sqrt(4)
