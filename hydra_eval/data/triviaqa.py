"""TriviaQA. Local: MosaicML's 3000-question subsample (context "Question: ...\nAnswer:", answer, aliases).
Hub (mandarjoshi/trivia_qa, rc.nocontext): question, answer {value, aliases}."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import require
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    if "context" in row:
        require(row, ("context", "answer"), index, "triviaqa")
        # MosaicML's questions keep their "?"; the template adds it back (no "??" in the prompt)
        question = row["context"].removeprefix("Question: ").removesuffix("\nAnswer:").rstrip("?")
        answers = [row["answer"], *row.get("aliases", [])]
    else:
        require(row, ("question", "answer"), index, "triviaqa")
        question = row["question"].rstrip("?")
        answers = [row["answer"]["value"], *row["answer"].get("aliases", [])]
    unique = list(dict.fromkeys(a for a in answers if a))
    return Sample(id=str(row.get("question_id", index)), fields={"question": question, "answers": unique}, gold=0)
