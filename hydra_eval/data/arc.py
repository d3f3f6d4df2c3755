"""ARC (Easy / Challenge). Local: AI2's jsonl (question.stem, question.choices [{text, label}], answerKey).
Hub (allenai/ai2_arc): question, choices {text: [...], label: [...]}, answerKey. Quirk: some rows label their
3-5 choices 1-4 instead of A-E; the answer is the position of answerKey among the labels either way."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    require(row, ("question", "answerKey"), index, "arc")
    q = row["question"]
    if isinstance(q, dict):  # AI2 layout
        stem, texts, labels = (
            q.get("stem"),
            [c.get("text") for c in q.get("choices", [])],
            [c.get("label") for c in q.get("choices", [])],
        )
    else:  # hub layout
        require(row, ("choices",), index, "arc")
        stem, texts, labels = q, list(row["choices"]["text"]), list(row["choices"]["label"])
    if not stem or len(texts) < 2 or any(t is None for t in texts) or row["answerKey"] not in labels:
        raise UserError(
            f"arc row {index + 1}: malformed row (question, choices or answerKey {row['answerKey']!r})"
        )
    fields = {"question": stem, "choices": texts, "labels": labels}
    return Sample(id=str(row.get("id", index)), fields=fields, gold=labels.index(row["answerKey"]))
