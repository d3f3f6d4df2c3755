"""Competition math with a final answer: MATH-500 (problem, solution, answer, subject, level, unique_id) and
AIME 2024 / 2025 (problem, answer). The accepted answer is given to the math judge as LaTeX
(`\\boxed{<answer>}`), which math-verify parses (hydra_eval/judges.py: MathVerify)."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import require
from hydra_eval.records import Sample


def math500_record(row: dict[str, Any], index: int) -> Sample:
    """answers: the boxed final answer; `solution` (the worked solution, boxed answer inside) is kept for
    lm-eval's minerva convention, which parses the gold from it."""
    require(row, ("problem", "answer"), index, "math500")
    fields = {
        "problem": row["problem"],
        "solution": row.get("solution", ""),
        "answer": row["answer"],
        "answers": ["\\boxed{" + str(row["answer"]) + "}"],
        "subject": row.get("subject", ""),
        "level": row.get("level", 0),
    }
    return Sample(id=str(row.get("unique_id", index)), fields=fields, gold=0)


def minerva_record(row: dict[str, Any], index: int) -> Sample:
    """lm-eval's minerva_math: math-verify parses the gold from the whole solution (its last boxed answer)."""
    require(row, ("problem", "solution"), index, "math500")
    fields = {"problem": row["problem"], "solution": row["solution"], "answers": [row["solution"]]}
    fields["subject"] = row.get("subject", "")
    return Sample(id=str(row.get("unique_id", index)), fields=fields, gold=0)


# AIME 2025's copy lost three LaTeX backslashes to JSON escaping (its README): "\f" of \frac became a form
# feed and "\t" of \triangle a tab. Put back exactly those; the answers are unaffected.
_REPAIRS = (("\x0c", "\\f"), ("\triangle", "\\triangle"))


def repair_latex(text: str) -> str:
    for broken, fixed in _REPAIRS:
        text = text.replace(broken, fixed)
    return text


def aime_record(row: dict[str, Any], index: int) -> Sample:
    """AIME: an integer answer 0-999 (AIME 2024's copy writes it zero-padded, "025"). Field names in any case
    (the hub's Maxwell-Jia/AIME_2024 has Problem and Answer)."""
    row = {k.lower(): v for k, v in row.items()}
    require(row, ("problem", "answer"), index, "aime")
    answer = str(int(str(row["answer"]).strip()))
    fields = {"problem": repair_latex(row["problem"]), "answer": answer, "answers": ["\\boxed{" + answer + "}"]}
    return Sample(id=str(row.get("id", index)), fields=fields, gold=0)
