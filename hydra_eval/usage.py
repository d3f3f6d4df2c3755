"""What an API model's requests cost: token totals and latency percentiles over a job's prediction rows."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from hydra_eval.records import GenPrediction, Prediction, Usage


def requests_of(rows: Sequence[Prediction]) -> Iterator[Usage]:
    """Every request record: one per generation (gen rows), one per candidate (ppl rows)."""
    for row in rows:
        if isinstance(row, GenPrediction):
            yield from row.requests or ()
        else:
            yield from (c.usage for c in row.candidates if c.usage is not None)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of already sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(rows: Sequence[Prediction]) -> dict[str, float] | None:
    """Totals and p50/p95 latency; None for a local model (its rows carry no requests)."""
    records = list(requests_of(rows))
    if not records:
        return None
    latencies = sorted(r.latency_s for r in records)
    return {
        "requests": len(records),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in records),
        "completion_tokens": sum(r.completion_tokens or 0 for r in records),
        "retries": sum(max(0, r.attempts - 1) for r in records),
        "latency_mean_s": sum(latencies) / len(latencies),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
    }
