"""Aggregate metrics: pure functions over per-sample outcomes."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def stderr(values: Sequence[float]) -> float:
    """Sample standard deviation / sqrt(n), as lm-eval reports it."""
    n = len(values)
    if n < 2:
        return float("nan")
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def accuracy_metrics(name: str, correct: Sequence[bool]) -> dict[str, float]:
    """Accuracy in percent (x100, as OpenCompass and the summary table show it) with its stderr."""
    values = [1.0 if c else 0.0 for c in correct]
    return {name: 100 * mean(values), f"{name}_stderr": 100 * stderr(values)}


def perplexity(logprobs: Sequence[float]) -> float:
    """lm-eval's perplexity aggregation: exp(-mean log-likelihood per document)."""
    return math.exp(-mean(logprobs))
