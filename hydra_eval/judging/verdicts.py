"""Reading a verdict from a judge's reply. A reply with no verdict, or with conflicting ones, is a parse failure:
counted and shown, never scored as a loss or a zero.

Each parser follows its benchmark's own code: MT-Bench (FastChat llm_judge: the first "[[x]]", else the first
"[x]"), Arena-Hard v0.1 (gen_judgment.py: the verdict labels of the first pattern that has any, upper-cased;
several different labels are no verdict).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hydra_eval.schema import VerdictFormat

RATING = (re.compile(r"\[\[(\d+\.?\d*)\]\]"), re.compile(r"\[(\d+\.?\d*)\]"))
ARENA = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))
# Arena-Hard's labels -> (winner, strong); B=A is A=B written the other way round
ARENA_LABELS = {
    "A>>B": ("A", True),
    "A>B": ("A", False),
    "A=B": ("tie", False),
    "B=A": ("tie", False),
    "B>A": ("B", False),
    "B>>A": ("B", True),
}
ABC = {"[[A]]": "A", "[[B]]": "B", "[[C]]": "tie"}
CORRECT = (
    re.compile(r"\[\[\s*(CORRECT|INCORRECT)\s*\]\]", re.IGNORECASE),
    re.compile(r"\[\s*(CORRECT|INCORRECT)\s*\]", re.IGNORECASE),  # the fallback, as MT-Bench's "[x]"
)
RATING_RANGE = (1.0, 10.0)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A verdict read from a reply. `label` is what the reply said ("7", "A>>B", "CORRECT"); `winner` (A, B or
    tie) for pairwise formats; `value` the rating, or 1/0 for correct/incorrect. `error` says why there is none."""

    label: str | None
    value: float | None = None
    winner: str | None = None
    strong: bool = False
    error: str | None = None
    rationale: str = ""  # the reply up to its verdict

    @property
    def ok(self) -> bool:
        return self.error is None


def _rationale(text: str, label_at: int) -> str:
    return text[:label_at].strip()


def rating(text: str) -> Parsed:
    """MT-Bench: "[[7]]" (else "[7]"), the first one; a rating outside 1-10 is no verdict."""
    for pattern in RATING:
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            low, high = RATING_RANGE
            if not low <= value <= high:
                return Parsed(match.group(1), error=f"rating {match.group(1)} outside {low:g}-{high:g}")
            return Parsed(match.group(1), value=value, rationale=_rationale(text, match.start()))
    return Parsed(None, error="no [[rating]] in the reply")


def arena(text: str) -> Parsed:
    """Arena-Hard: "[[A>>B]]" .. "[[B>>A]]" (else "[A>B]"), read upper-cased; several different labels, or a
    label that is not one of the five, is no verdict."""
    upper = text.upper()
    for pattern in ARENA:
        found = [m for m in pattern.finditer(upper) if m.group(1)]
        labels = {m.group(1) for m in found}
        if not labels:
            continue
        if len(labels) > 1:
            return Parsed(None, error=f"conflicting verdicts {sorted(labels)}")
        label = found[0].group(1)
        if label not in ARENA_LABELS:
            return Parsed(label, error=f"unknown verdict [[{label}]]")
        winner, strong = ARENA_LABELS[label]
        return Parsed(label, winner=winner, strong=strong, rationale=_rationale(text, found[-1].start()))
    return Parsed(None, error="no [[A>B]]-style verdict in the reply")


def abc(text: str) -> Parsed:
    """MT-Bench pairwise (pair-v2): "[[A]]", "[[B]]" or "[[C]]" for a tie, checked in that order as FastChat
    does; a reply with more than one of them is no verdict here (FastChat takes the first it checks)."""
    present = [label for label in ABC if label in text]
    if not present:
        return Parsed(None, error="no [[A]]/[[B]]/[[C]] in the reply")
    if len(present) > 1:
        return Parsed(None, error=f"conflicting verdicts {present}")
    label = present[0]
    return Parsed(label.strip("[]"), winner=ABC[label], rationale=_rationale(text, text.index(label)))


def correct(text: str) -> Parsed:
    """Reference mode: the last "[[CORRECT]]" or "[[INCORRECT]]" (else the last "[CORRECT]" or "[INCORRECT]");
    else a reply that is just one of the words."""
    for pattern in CORRECT:
        found = list(pattern.finditer(text))
        if found:
            word = found[-1].group(1).upper()
            return Parsed(word, value=float(word == "CORRECT"), rationale=_rationale(text, found[-1].start()))
    bare = text.strip().strip(".*").upper()
    if bare in ("CORRECT", "INCORRECT"):
        return Parsed(bare, value=float(bare == "CORRECT"))
    return Parsed(None, error="no [[CORRECT]]/[[INCORRECT]] in the reply")


PARSERS: dict[VerdictFormat, Callable[[str], Parsed]] = {
    VerdictFormat.rating: rating,
    VerdictFormat.arena: arena,
    VerdictFormat.abc: abc,
    VerdictFormat.correct: correct,
}
