"""Per-sample scoring: pure functions from raw model outputs to a predicted index."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence


def opencompass_ppl(logprob: float, n_tokens: int) -> float:
    """OpenCompass get_ppl: summed NLL of tokens 2..N divided by all N input tokens."""
    return -logprob / n_tokens


def argmin_first(values: Sequence[float]) -> int:
    return min(range(len(values)), key=lambda i: (values[i], i))


def argmax_first(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def tied(values: Sequence[float], chosen: int) -> tuple[int, ...] | None:
    """The candidates whose score equals the chosen one's, when there are several (the chosen one won by its
    place in the list, not by its score); None when it won alone."""
    same = tuple(i for i, v in enumerate(values) if v == values[chosen])
    return same if len(same) > 1 else None


def lmeval_acc_norm_scores(logprobs: Sequence[float], choices: Sequence[str]) -> list[float]:
    """lm-eval acc_norm: log-likelihood divided by the choice's length in characters."""
    return [lp / len(c) if c else lp for lp, c in zip(logprobs, choices, strict=True)]


def first_letter(text: str, labels: Sequence[str]) -> str | None:
    """The first option letter that stands alone in the output ("B", "B.", "(B)", "answer is B")."""
    pattern = r"(?<![A-Za-z])(" + "|".join(re.escape(x) for x in labels) + r")(?![A-Za-z])"
    match = re.search(pattern, text)
    return match.group(1) if match else None


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_distance_choice(text: str, labels: Sequence[str], options: Sequence[str]) -> str:
    """OpenCompass EDAccEvaluator: the option whose forms ('A. text', 'A', 'text') are nearest to the raw
    output by Levenshtein distance; ties go to the first option."""
    best, best_distance = labels[0], None
    for label, option in zip(labels, options, strict=True):
        distance = min(edit_distance(form, text) for form in (f"{label}. {option}", label, option))
        if best_distance is None or distance < best_distance:
            best, best_distance = label, distance
    return best


def normalize_answer(text: str) -> str:
    """SQuAD/TriviaQA normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(text: str, answers: Sequence[str]) -> bool:
    """The output's first non-empty line, normalised, equals one of the accepted answers, normalised."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    got = normalize_answer(lines[0]) if lines else ""
    return bool(got) and any(got == normalize_answer(a) for a in answers)


def _gsm8k_clean(text: str) -> str:
    """lm-eval gsm8k's regexes_to_ignore: commas, dollar signs, a trailing period; then case-folded."""
    return re.sub(r"\.$", "", text.replace(",", "").replace("$", "")).strip().lower()


def gsm8k_answers(text: str) -> tuple[str | None, str | None]:
    """(strict, flexible): the number in "The answer is N." and the last number in the output."""
    strict = re.findall(r"The answer is (\-?[0-9\.\,]+).", text)
    flexible = re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", text)
    last = next((g for g in flexible[-1] if g), None) if flexible else None
    return (strict[0] if strict else None), last


def gsm8k_match(extracted: str | None, answer: str) -> bool:
    return extracted is not None and _gsm8k_clean(extracted) == _gsm8k_clean(answer)
