"""Model comparison on shared rows: each model's 95% CI, paired tests per dataset, and a macro average.

Input: the jobs' `Results` (hydra_eval/results.py: per-row values and CIs, from files or from MLflow).
Output: a typed `Comparison`, its `comparison.json`, and the paired table printed under the summary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hydra_eval import stats
from hydra_eval.errors import UserError
from hydra_eval.results import Results

MACRO = "macro average"
PAIRED_HEADER = ["dataset", "metric", "A", "B", "rows", "A score", "B score", "B - A", "95% CI", "p", "test"]


@dataclass(frozen=True)
class Pair:
    dataset: str
    version: str
    metric: str
    a: str  # model A (the baseline when there is one)
    b: str
    result: stats.Paired


@dataclass(frozen=True)
class Comparison:
    models: list[str]
    baseline: str | None  # what the table's marks compare against
    seed: int
    intervals: dict[tuple[str, str, str, str], stats.Interval]  # (dataset, version, metric, model) -> 95% CI
    pairs: list[Pair]
    macro: list[Pair]  # one per model pair, over the datasets both scored (each dataset's first metric)
    refused: list[str] = field(default_factory=list)  # pairs not compared, and why

    def mark(self, dataset: str, version: str, metric: str, model: str) -> bool:
        """True when `model` differs significantly (p < 0.05) from the baseline on this row of the table."""
        return any(
            p.b == model
            and p.a == self.baseline
            and (p.dataset, p.version, p.metric) == (dataset, version, metric)
            and p.result.significant
            for p in self.pairs
        )

    def to_json(self) -> dict[str, Any]:
        def pair(p: Pair) -> dict[str, Any]:
            r = p.result
            return {
                "dataset": p.dataset,
                "version": p.version,
                "metric": p.metric,
                "model_a": p.a,
                "model_b": p.b,
                "n": r.n,
                "score_a": r.a,
                "score_b": r.b,
                "diff": r.diff,
                "ci_low": r.low,
                "ci_high": r.high,
                "p": r.p,
                "test": r.test,
                "significant": r.significant,
                "discordant": list(r.discordant) if r.discordant else None,
            }

        return {
            "models": self.models,
            "baseline": self.baseline,
            "seed": self.seed,
            "bootstrap_rounds": stats.BOOTSTRAP,
            "intervals": [
                {
                    "dataset": d,
                    "version": v,
                    "metric": m,
                    "model": model,
                    "value": ci.value,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                }
                for (d, v, m, model), ci in sorted(self.intervals.items())
            ],
            "pairs": [pair(p) for p in self.pairs],
            "macro": [pair(p) for p in self.macro],
            "refused": self.refused,
        }


def _model_pairs(models: list[str], baseline: str | None) -> list[tuple[str, str]]:
    if baseline is not None:
        return [(baseline, m) for m in models if m != baseline]
    return list(itertools.combinations(models, 2))


def _ratio_pair(a: Results, b: Results, metric: str, seed: int) -> stats.Paired | None:
    """A judge metric: with the same weight on every row of both (every verdict parsed, no strong verdict
    weighted), the per-row means and their usual test (McNemar for judged accuracy); else the ratio's own."""
    ra, rb = a.ratios.get(metric), b.ratios.get(metric)
    if not ra or not rb:
        return None
    shared = sorted(set(ra) & set(rb))
    xa, xb = [ra[i] for i in shared], [rb[i] for i in shared]
    if not shared or not sum(d for _, d in xa) or not sum(d for _, d in xb):
        return None
    weights = {d for _, d in xa + xb}
    if len(weights) == 1 and weights != {0.0}:
        return stats.paired([n / d for n, d in xa], [n / d for n, d in xb], seed=seed)
    return stats.paired_ratio(xa, xb, seed=seed)


def _without_verdicts(a: Results, b: Results) -> str | None:
    """Why two judged jobs get no test of the judge's metric (a failure of the judge, not of the models)."""
    metric = a.judge_metric
    if metric is None or metric != b.judge_metric or (metric in a.ratios and metric in b.ratios):
        return None
    why = [
        f"no judge verdict parsed for {j.model} (all {j.diagnostics.get('judge_calls', 0):.0f} judge calls failed)"
        if j.rates.get("judge_parse_failures") == 100.0
        else f"{j.model}'s judgments do not give its {metric}"
        for j in (a, b)
        if metric not in j.ratios
    ]
    return f"{metric}: {'; '.join(why)}: not compared"


def _pair(a: Results, b: Results, metric: str, seed: int) -> stats.Paired | None:
    if metric in a.ratios or metric in b.ratios:
        return _ratio_pair(a, b, metric, seed)
    ra, rb = a.scores.get(metric), b.scores.get(metric)
    if not ra or not rb:
        return None
    shared = sorted(set(ra) & set(rb))
    if not shared:
        return None
    return stats.paired([ra[i] for i in shared], [rb[i] for i in shared], seed=seed)


def _versions(dataset: str, ma: str, mine: dict[str, Results], mb: str, theirs: dict[str, Results]) -> list[str]:
    """Why two models' jobs on a dataset are not compared, version by version: one has no result there, or
    their versions (prompts, scoring) differ."""
    if not mine or not theirs:
        missing = [m for m, got in ((ma, mine), (mb, theirs)) if not got]
        return [f"{dataset}: no result of {missing[0]}: not compared"] if len(missing) == 1 else []
    if not set(mine) & set(theirs):
        return [
            f"{dataset}: {ma} (version {', '.join(sorted(mine))}) and {mb} (version {', '.join(sorted(theirs))}) "
            "differ in version: not compared"
        ]
    return [
        f"{dataset}: version {v} of {m} only: not compared"
        for m, got, other in ((ma, mine, theirs), (mb, theirs, mine))
        for v in sorted(set(got) - set(other))
    ]


def _repeated(job: Results) -> str:
    return f"{job.repeated} of {len(job.ids)} rows repeat an earlier row's id"


def _unpaired(a: Results, b: Results) -> str:
    """Why two jobs of the same rows gave no paired test: a model whose metrics are no means over rows (pass@1
    of several samples, perplexity, instruction-level accuracy)."""
    lacking = [j for j in (a, b) if not j.scores and not j.ratios]
    if not lacking:
        return "no metric with per-row scores in both"
    names = [f"{j.model}'s {', '.join(m for m in j.metrics if not m.endswith('_stderr'))}" for j in lacking]
    return f"no per-row scores of {' or '.join(names)}"


def compare(jobs: list[Results], baseline: str | None = None, seed: int = stats.SEED) -> Comparison:
    models = sorted({j.model for j in jobs})
    if baseline is not None and baseline not in models:
        raise UserError(f"viz.baseline={baseline} is not one of the models compared: {', '.join(models)}")
    by: dict[tuple[str, str], dict[str, Results]] = {}  # (dataset, model) -> version -> job
    for j in jobs:
        by.setdefault((j.dataset, j.model), {})[j.version] = j
    intervals = {(j.dataset, j.version, m, j.model): ci for j in jobs for m, ci in j.ci.items()}
    pairs: list[Pair] = []
    refused: list[str] = []
    primary: dict[tuple[str, str, str], tuple[Results, Results, str]] = {}
    for dataset in sorted({j.dataset for j in jobs}):
        for ma, mb in _model_pairs(models, baseline):
            mine, theirs = by.get((dataset, ma), {}), by.get((dataset, mb), {})
            refused += _versions(dataset, ma, mine, mb, theirs)
            for version in sorted(set(mine) & set(theirs)):
                ja, jb = mine[version], theirs[version]
                repeats = [f"{j.model}: {_repeated(j)}" for j in (ja, jb) if j.repeated]
                if repeats:
                    refused.append(f"{dataset} {version}: {ma} and {mb}: {'; '.join(repeats)}: not compared")
                    continue
                if set(ja.ids) != set(jb.ids):  # other limits, strides or shards of the same data
                    shared = len(set(ja.ids) & set(jb.ids))
                    refused.append(
                        f"{dataset} {version}: {ma} and {mb} scored different rows ({len(set(ja.ids))} and "
                        f"{len(set(jb.ids))} rows, {shared} shared): not compared"
                    )
                    continue
                if ja.data_fingerprint != jb.data_fingerprint:
                    refused.append(
                        f"{dataset} {version}: {ma} and {mb} scored different rows (data fingerprints "
                        f"{ja.data_fingerprint} and {jb.data_fingerprint}): not compared"
                    )
                    continue
                unjudged = _without_verdicts(ja, jb)
                if unjudged:
                    refused.append(f"{dataset} {version}: {ma} and {mb}: {unjudged}")
                made = len(pairs)
                for metric in ja.metrics:
                    result = _pair(ja, jb, metric, seed)
                    if result is not None:
                        pairs.append(Pair(dataset, version, metric, ma, mb, result))
                        if metric in ja.scores and metric in jb.scores:  # the macro average takes row means
                            primary.setdefault((dataset, ma, mb), (ja, jb, metric))
                if len(pairs) == made and not unjudged:
                    refused.append(f"{dataset} {version}: {ma} and {mb}: {_unpaired(ja, jb)}: not compared")
    macro = []
    for ma, mb in _model_pairs(models, baseline):
        sets = [(ja, jb, m) for (d, a, b), (ja, jb, m) in sorted(primary.items()) if (a, b) == (ma, mb)]
        if len(sets) < 2:
            continue
        lists = []
        for ja, jb, m in sets:
            ids = sorted(set(ja.scores[m]) & set(jb.scores[m]))
            lists.append(([ja.scores[m][i] for i in ids], [jb.scores[m][i] for i in ids]))
        names = ", ".join(f"{ja.dataset}:{m}" for ja, _, m in sets)
        pairs_macro = stats.macro(lists, seed=seed)
        macro.append(Pair(MACRO, "-", names, ma, mb, pairs_macro))
    return Comparison(models, baseline or (models[0] if models else None), seed, intervals, pairs, macro, refused)


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def paired_rows(comparison: Comparison) -> list[list[str]]:
    """The paired table, header first: one row per dataset, metric and model pair, then the macro averages."""
    rows = [PAIRED_HEADER]
    for p in [*comparison.pairs, *comparison.macro]:
        r = p.result
        rows.append(
            [
                p.dataset,
                p.metric,
                p.a,
                p.b,
                str(r.n),
                f"{r.a:.2f}",
                f"{r.b:.2f}",
                f"{r.diff:+.2f}" + (" *" if r.significant else ""),
                f"[{r.low:+.2f}, {r.high:+.2f}]",
                _p(r.p),
                r.test,
            ]
        )
    return rows
