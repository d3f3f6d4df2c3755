"""How a job's generations ended: the share cut by the length cap, unclosed reasoning, token counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from hydra_eval.metrics import mean
from hydra_eval.records import GenPrediction


def summary(rows: Sequence[GenPrediction]) -> dict[str, Any]:
    """results' `generation` block. `length_capped` is the percent of generations that stopped at the max
    new tokens: their answers may be cut short, so it is shown next to the scores."""
    reasons = Counter(r for row in rows for r in row.finish_reasons)
    total = sum(reasons.values())
    out: dict[str, Any] = {
        "generations": total,
        "finish_reasons": dict(sorted(reasons.items())),
        "length_capped": 100 * reasons["length"] / total if total else 0.0,
        "mean_new_tokens": mean([row.n_new_tokens / len(row.generations) for row in rows]) if rows else 0.0,
    }
    splits = [s for row in rows for s in row.splits or ()]
    if splits:
        out["reasoning_unclosed"] = sum(not s.closed for s in splits)
        out["reasoning_absent"] = sum(s.reasoning is None for s in splits)
    reasoning = [n for row in rows for n in row.reasoning_tokens or ()]
    answer = [n for row in rows for n in row.answer_tokens or ()]
    if reasoning and answer:
        out["mean_reasoning_tokens"] = mean(reasoning)
        out["mean_answer_tokens"] = mean(answer)
    return out
