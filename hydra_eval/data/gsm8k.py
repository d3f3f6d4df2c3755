"""GSM8K test (the original release): question, answer (worked solution ending "#### <number>"). Few-shot
rows (the chain-of-thought exemplars of Wei et al., as lm-eval's gsm8k-cot ships them) have question and
target (a solution ending "The answer is N.")."""

from __future__ import annotations

import re
from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def final_answer(solution: str) -> str:
    return solution.split("####")[-1].strip()


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("question",), index, "gsm8k")
    if "target" in row:  # a few-shot exemplar
        target = row["target"]
        answer = re.findall(r"The answer is (\-?[0-9\.\,]+)", target)[-1]
    else:
        require(row, ("answer",), index, "gsm8k")
        if "####" not in row["answer"]:
            raise UserError(f"gsm8k row {index + 1}: malformed row, the answer has no '#### <number>'")
        target, answer = final_answer(row["answer"]), final_answer(row["answer"])
    return Sample(
        id=str(index), fields={"question": row["question"], "target": target, "answers": [answer]}, gold=0
    )
