"""Aggregate metrics: pure functions over per-sample outcomes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hydra_eval.errors import UserError
from hydra_eval.records import Verdict
from hydra_eval.schema import Metric


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


class Aggregate(Protocol):
    def __call__(self, verdicts: Sequence[Verdict]) -> dict[str, float]: ...


@dataclass(frozen=True)
class AccuracyOf:
    """Percent of verdicts whose `attribute` is true, with its stderr, reported as `name`."""

    name: str
    attribute: str

    def __call__(self, verdicts: Sequence[Verdict]) -> dict[str, float]:
        return accuracy_metrics(self.name, [bool(getattr(v, self.attribute)) for v in verdicts])

    def rows(self, verdicts: Sequence[Verdict]) -> list[float]:
        """Each verdict's value in the metric's unit (0 or 100): the metric is their mean."""
        return [100.0 * bool(getattr(v, self.attribute)) for v in verdicts]


@dataclass(frozen=True)
class PerItem:
    """Percent of all the items (IFEval: instructions) of every verdict's `attribute` that are true: lm-eval's
    instruction-level accuracy, a micro-average over instructions."""

    name: str
    attribute: str

    def __call__(self, verdicts: Sequence[Verdict]) -> dict[str, float]:
        return accuracy_metrics(self.name, [bool(x) for v in verdicts for x in getattr(v, self.attribute) or ()])


@dataclass(frozen=True)
class Perplexity:
    def __call__(self, verdicts: Sequence[Verdict]) -> dict[str, float]:
        logprobs = [v.logprob for v in verdicts if v.logprob is not None]
        if len(logprobs) != len(verdicts):
            raise UserError("metric perplexity needs a loglikelihood task (dataset.ppl.task=loglikelihood)")
        return {"perplexity": perplexity(logprobs)}


METRICS: dict[Metric, Aggregate] = {
    Metric.accuracy: AccuracyOf("accuracy", "correct"),
    Metric.acc: AccuracyOf("acc", "correct"),
    Metric.accuracy_strict: AccuracyOf("accuracy_strict", "correct_strict"),
    Metric.acc_norm: AccuracyOf("acc_norm", "correct_norm"),
    Metric.perplexity: Perplexity(),
    Metric.pass_at_1: AccuracyOf("pass@1", "correct"),
    Metric.prompt_level_strict_acc: AccuracyOf("prompt_level_strict_acc", "correct"),
    Metric.inst_level_strict_acc: PerItem("inst_level_strict_acc", "inst_strict"),
    Metric.prompt_level_loose_acc: AccuracyOf("prompt_level_loose_acc", "correct_loose"),
    Metric.inst_level_loose_acc: PerItem("inst_level_loose_acc", "inst_loose"),
}


def compute(names: Sequence[Metric], verdicts: Sequence[Verdict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        out.update(METRICS[name](verdicts))
    return out


def per_row(names: Sequence[Metric], verdicts: Sequence[Verdict]) -> dict[str, list[float]]:
    """The per-verdict values of each metric that is a mean over rows (accuracy-like ones), in the order of
    `verdicts`; means over other units (instructions) and perplexity have none."""
    out: dict[str, list[float]] = {}
    for name in names:
        metric = METRICS[name]
        if isinstance(metric, AccuracyOf):
            out[metric.name] = metric.rows(verdicts)
    return out
