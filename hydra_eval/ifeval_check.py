"""IFEval's instruction checks, as lm-eval 0.4.13's ifeval task runs them: Google's checker classes (from
the `if-verifiable` package), strict (the response as it is) and loose (also without its first and/or last
line, or without `*`), per instruction and per prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra_eval.errors import UserError


@dataclass(frozen=True, slots=True)
class Checked:
    strict: tuple[bool, ...]  # one per instruction
    loose: tuple[bool, ...]


def loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    first, last, both = "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()
    variants = [response, first, last, both]
    return [variants[0], variants[0].replace("*", ""), *variants[1:], *(v.replace("*", "") for v in variants[1:])]


def _checker(instruction_id: str, kwargs: Mapping[str, Any], prompt: str) -> Any:
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    if instruction_id not in INSTRUCTION_DICT:
        raise UserError(f"ifeval: unknown instruction {instruction_id!r}")
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    checker.build_description(**{k: v for k, v in kwargs.items() if v})  # lm-eval drops empty arguments
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=prompt)
    return checker


def check(
    response: str, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]], prompt: str
) -> Checked:
    """Which instructions the response follows. A checker that cannot run here raises (a harness failure).
    Two of Google's checks can give another verdict in another process, as they do in lm-eval: language
    detection (langdetect) on short or mixed texts, and a letter_frequency whose letter is not a letter
    (the checker then picks a random one)."""
    variants = loose_variants(response)
    strict, loose = [], []
    for instruction_id, args in zip(instruction_ids, kwargs, strict=True):
        checker = _checker(instruction_id, args, prompt)
        strict.append(bool(response.strip() and checker.check_following(response)))
        loose.append(any(v.strip() and checker.check_following(v) for v in variants))
    return Checked(tuple(strict), tuple(loose))


def sentence_tokenizer_missing() -> str | None:
    """Why the sentence counter (length_constraints:number_sentences) cannot run here, or None."""
    import nltk

    try:
        nltk.data.load("nltk:tokenizers/punkt/english.pickle")
    except LookupError:
        return "NLTK's punkt sentence model is not installed (python -m nltk.downloader punkt_tab)"
    return None
