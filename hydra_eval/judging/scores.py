"""Judgments -> scores: the mean rating (single), the win rate against the baseline (pairwise, ties half, a
strong verdict weighted), or the share judged correct (reference); each with a 95% confidence interval from a
seeded bootstrap over the questions. Parse failures are left out of every score and counted apart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hydra_eval.records import Judgment
from hydra_eval.schema import JudgeMode, JudgeSettings

METRIC = {JudgeMode.single: "score", JudgeMode.pairwise: "win_rate", JudgeMode.reference: "accuracy"}


def scale_of(mode: JudgeMode) -> float:
    return 1.0 if mode is JudgeMode.single else 100.0  # ratings stay 1-10; rates in percent


def ratio_ci(num: np.ndarray, den: np.ndarray, rounds: int, seed: int) -> tuple[float, float]:
    """Percentile 95% interval of sum(num)/sum(den) over `rounds` resamples of the rows (with replacement)."""
    n = len(num)
    if n == 0 or rounds <= 0 or not den.any():
        return (float("nan"), float("nan"))
    rng = np.random.RandomState(seed)
    picks = rng.randint(0, n, size=(rounds, n))
    totals = den[picks].sum(axis=1)
    stats = np.divide(num[picks].sum(axis=1), totals, out=np.full(rounds, np.nan), where=totals > 0)
    low, high = np.nanpercentile(stats, [2.5, 97.5])
    return float(low), float(high)


def _per_row(judgments: Sequence[Judgment], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's weighted score total and weight total over its parsed judgments."""
    at = {i: k for k, i in enumerate(ids)}
    num, den = np.zeros(len(ids)), np.zeros(len(ids))
    for j in judgments:
        if j.score is not None:
            num[at[j.id]] += j.weight * j.score
            den[at[j.id]] += j.weight
    return num, den


def compute(settings: JudgeSettings, ids: Sequence[str], judgments: Sequence[Judgment]) -> dict[str, float]:
    """The dataset's score with its CI, per turn when there are several, and the counts behind them."""
    name, scale = METRIC[settings.mode], scale_of(settings.mode)
    num, den = _per_row(judgments, ids)
    total = den.sum()
    out: dict[str, float] = {name: scale * num.sum() / total if total else float("nan")}
    low, high = ratio_ci(num, den, settings.bootstrap, settings.seed)
    out[f"{name}_ci_low"], out[f"{name}_ci_high"] = scale * low, scale * high
    turns = sorted({j.turn for j in judgments})
    if len(turns) > 1:
        for t in turns:
            tn, td = _per_row([j for j in judgments if j.turn == t], ids)
            out[f"{name}_turn{t}"] = scale * tn.sum() / td.sum() if td.sum() else float("nan")
    if settings.mode is JudgeMode.pairwise:
        parsed = [j for j in judgments if j.score is not None]
        out["wins"] = sum(j.score == 1.0 for j in parsed)
        out["ties"] = sum(j.score == 0.5 for j in parsed)
        out["losses"] = sum(j.score == 0.0 for j in parsed)
        out["order_consistency"] = order_consistency(judgments)
    out["judge_calls"] = len(judgments)
    out["judge_parse_failures"] = sum(j.error is not None for j in judgments)
    return out


def order_consistency(judgments: Sequence[Judgment]) -> float:
    """Pairwise: the percent of (question, turn) pairs, both orders parsed, whose two verdicts agree once the
    swap is undone (a position-biased judge scores low)."""
    games: dict[tuple[str, int], dict[int, float]] = {}
    for j in judgments:
        if j.score is not None:
            games.setdefault((j.id, j.turn), {})[j.game] = j.score
    both = [g for g in games.values() if 1 in g and 2 in g]
    return 100.0 * sum(g[1] == g[2] for g in both) / len(both) if both else float("nan")


def grouped(settings: JudgeSettings, groups: dict[str, str], judgments: Sequence[Judgment]) -> dict[str, float]:
    """The score per group (MT-Bench: per category), as '<metric>/<group>'."""
    name, scale = METRIC[settings.mode], scale_of(settings.mode)
    out = {}
    for group in sorted(set(groups.values())):
        mine = [j for j in judgments if groups[j.id] == group and j.score is not None]
        weight = sum(j.weight for j in mine)
        if weight:
            out[f"{name}/{group}"] = scale * sum(j.weight * (j.score or 0.0) for j in mine) / weight
    return out


# What compute() reports that is about the judge, not the judged model: shown beside the scores, never as one
DIAGNOSTICS = ("judge_calls", "judge_parse_failures")


def per_row(
    settings: JudgeSettings, ids: Sequence[str], judgments: Sequence[Judgment]
) -> dict[str, dict[str, tuple[float, float]]]:
    """The dataset's metric as each row's (weighted verdicts x scale, their weight), parse failures left out:
    its value is sum(numerators) / sum(denominators). None when no verdict parsed, or ids repeat."""
    if len(set(ids)) != len(ids):
        return {}
    name, scale = METRIC[settings.mode], scale_of(settings.mode)
    by_row: dict[str, list[Judgment]] = {i: [] for i in ids}
    for j in judgments:
        if j.score is not None:
            by_row[j.id].append(j)
    rows = {
        i: (scale * sum(j.weight * (j.score or 0.0) for j in mine), float(sum(j.weight for j in mine)))
        for i, mine in by_row.items()
    }
    if sum(d for _, d in rows.values()) <= 0:
        return {}
    return {name: rows}
