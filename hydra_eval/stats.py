"""Statistics for comparing models on the rows they share: pure functions over per-row scores.

- `interval`: a metric's 95% confidence interval (normal approximation, the metric's stderr x 1.96).
- `paired`: model B minus model A on the same rows: the difference, its paired-bootstrap 95% CI, and a p-value
  (McNemar's exact test when every score is 0 or 1 (or 0 or 100), a paired sign-flip permutation test otherwise).
- `paired_ratio`: the same for a ratio of sums (a judge's score or win rate: each row's weighted verdicts over
  its weights, parse failures left out), with a paired permutation test that swaps the two models' rows.
- `macro`: the same over several datasets at once: the mean of the per-dataset differences, with a stratified
  bootstrap CI (each dataset resampled on its own) and a sign-flip permutation p-value.

Everything is seeded: the same inputs give the same numbers on every run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
SEED = 20261205
BOOTSTRAP = 10_000
PERMUTATIONS = 10_000
EXACT_UP_TO = 16  # a sign-flip test enumerates all 2^n sign patterns up to this many nonzero differences
_CHUNK = 500  # bootstrap resamples drawn at a time (memory: CHUNK x rows indices)


@dataclass(frozen=True)
class Interval:
    """A metric's value with its 95% CI: `value ± half`."""

    value: float
    half: float

    @property
    def low(self) -> float:
        return self.value - self.half

    @property
    def high(self) -> float:
        return self.value + self.half


@dataclass(frozen=True)
class Paired:
    """B - A on the rows both scored: the difference (the metric's unit), its 95% CI and the test's p-value."""

    n: int
    a: float  # A's mean on these rows
    b: float
    diff: float
    low: float
    high: float
    p: float
    test: str  # "mcnemar_exact" | "permutation" | "sign_flip_exact"
    discordant: tuple[int, int] | None = None  # McNemar: (A right B wrong, A wrong B right)

    @property
    def significant(self) -> bool:
        return self.p < 0.05


def interval(values: Sequence[float]) -> Interval:
    """Mean ± 1.96 x (sample std / sqrt(n)): the normal-approximation 95% CI of a mean."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return Interval(float(x.mean()) if len(x) else math.nan, math.nan)
    return Interval(float(x.mean()), Z95 * float(x.std(ddof=1)) / math.sqrt(len(x)))


def binary_level(x: np.ndarray, y: np.ndarray) -> float | None:
    """The `m` when every score is 0 or m (0/1, or 0/100 for percent metrics), else None."""
    top = float(max(x.max(), y.max()))
    if top <= 0:
        return 1.0 if not (x.any() or y.any()) else None
    return top if bool(np.isin(x, (0.0, top)).all() and np.isin(y, (0.0, top)).all()) else None


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: a binomial test of b_only out of
    a_only + b_only against 1/2 (no discordant pairs: p = 1)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(min(1.0, binomtest(b_only, n, 0.5, alternative="two-sided").pvalue))


def _bootstrap_means(d: np.ndarray, rng: np.random.Generator, rounds: int) -> np.ndarray:
    """`rounds` bootstrap means of d (rows resampled with replacement)."""
    out = np.empty(rounds)
    n = len(d)
    for start in range(0, rounds, _CHUNK):
        k = min(_CHUNK, rounds - start)
        out[start : start + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return out


def _sign_flip_p(ds: Sequence[np.ndarray], rng: np.random.Generator, rounds: int) -> tuple[float, str]:
    """Two-sided p-value that the mean of per-set mean differences is 0, flipping each row's sign at random
    (exactly, over all sign patterns, when there are few nonzero differences)."""
    observed = abs(float(np.mean([d.mean() for d in ds])))
    nonzero = [d[d != 0] for d in ds]
    total = sum(len(d) for d in nonzero)
    if total == 0:
        return 1.0, "sign_flip_exact"
    sizes = [len(d) for d in ds]
    weights = np.concatenate([d / (len(ds) * n) for d, n in zip(nonzero, sizes, strict=True)])
    tolerance = 1e-12 * max(1.0, observed)
    if total <= EXACT_UP_TO:
        patterns = ((np.arange(2**total)[:, None] >> np.arange(total)) & 1) * 2 - 1
        stats = np.abs(patterns @ weights)
        return float((stats >= observed - tolerance).mean()), "sign_flip_exact"
    hits = 0
    for start in range(0, rounds, _CHUNK):
        k = min(_CHUNK, rounds - start)
        signs = rng.choice((-1.0, 1.0), size=(k, total))
        hits += int((np.abs(signs @ weights) >= observed - tolerance).sum())
    return (hits + 1) / (rounds + 1), "permutation"


def paired(a: Sequence[float], b: Sequence[float], seed: int = SEED, rounds: int = BOOTSTRAP) -> Paired:
    """B - A over rows scored by both (a[i] and b[i] are the same row)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"paired needs two equal, non-empty lists of row scores (got {len(x)} and {len(y)})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired needs finite row scores (a NaN would test as significant)")
    d = y - x
    rng = np.random.default_rng(seed)
    if not d.any():  # identical scores: nothing to resample, nothing to test
        low = high = 0.0
    else:
        low, high = (float(v) for v in np.percentile(_bootstrap_means(d, rng, rounds), [2.5, 97.5]))
    top = binary_level(x, y)
    discordant = None
    if top is not None:
        discordant = int(((x == top) & (y == 0)).sum()), int(((x == 0) & (y == top)).sum())
        p, test = mcnemar_exact(*discordant), "mcnemar_exact"
    else:
        p, test = _sign_flip_p([d], rng, rounds)
    return Paired(len(d), float(x.mean()), float(y.mean()), float(d.mean()), low, high, p, test, discordant)


def macro(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]], seed: int = SEED, rounds: int = BOOTSTRAP
) -> Paired:
    """The mean over datasets of B - A (each dataset's (a, b) row scores): a stratified bootstrap CI (rows
    resampled within each dataset) and a sign-flip permutation p-value."""
    if not pairs:
        raise ValueError("macro needs at least one dataset")
    ds = [np.asarray(b, dtype=float) - np.asarray(a, dtype=float) for a, b in pairs]
    rng = np.random.default_rng(seed)
    if not any(d.any() for d in ds):
        low = high = 0.0
    else:
        boots = np.mean([_bootstrap_means(d, rng, rounds) for d in ds], axis=0)
        low, high = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    p, test = _sign_flip_p(ds, rng, rounds)
    return Paired(
        n=sum(len(d) for d in ds),
        a=float(np.mean([np.mean(a) for a, _ in pairs])),
        b=float(np.mean([np.mean(b) for _, b in pairs])),
        diff=float(np.mean([d.mean() for d in ds])),
        low=low,
        high=high,
        p=p,
        test=test,
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    return np.divide(num, den, out=np.full(np.shape(den), np.nan), where=den > 0)


def paired_ratio(
    a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]], seed: int = SEED, rounds: int = BOOTSTRAP
) -> Paired:
    """B - A where each model's score is sum(numerators) / sum(denominators) over the same rows (a[i] and b[i]
    are row i's (numerator, denominator)): a paired-bootstrap CI, and a permutation p-value from swapping the
    two models' values row by row (exact over all swaps up to EXACT_UP_TO rows that differ)."""
    x, y = np.asarray(a, dtype=float).reshape(-1, 2), np.asarray(b, dtype=float).reshape(-1, 2)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"paired_ratio needs two equal, non-empty lists of rows (got {len(x)} and {len(y)})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (x[:, 1] < 0).any() or (y[:, 1] < 0).any():
        raise ValueError("paired_ratio needs finite numerators and denominators of 0 or more")
    if x[:, 1].sum() <= 0 or y[:, 1].sum() <= 0:
        raise ValueError("paired_ratio needs a score for each model (every denominator is 0)")
    na, da, nb, db = x[:, 0], x[:, 1], y[:, 0], y[:, 1]
    score_a, score_b = na.sum() / da.sum(), nb.sum() / db.sum()
    diff = float(score_b - score_a)
    rng = np.random.default_rng(seed)
    differ = np.flatnonzero((na != nb) | (da != db))
    if len(differ) == 0:
        return Paired(len(x), float(score_a), float(score_b), diff, 0.0, 0.0, 1.0, "ratio_permutation_exact")
    boots = np.empty(rounds)
    n = len(x)
    for start in range(0, rounds, _CHUNK):
        k = min(_CHUNK, rounds - start)
        idx = rng.integers(0, n, size=(k, n))
        boots[start : start + k] = _ratio(nb[idx].sum(1), db[idx].sum(1)) - _ratio(na[idx].sum(1), da[idx].sum(1))
    low, high = (float(v) for v in np.nanpercentile(boots, [2.5, 97.5]))
    # a swap moves row i's values from one model to the other; rows equal in both never change a total
    same = np.ones(n, dtype=bool)
    same[differ] = False
    base = [float(v[same].sum()) for v in (na, da, nb, db)]
    ua, va, ub, vb = na[differ], da[differ], nb[differ], db[differ]
    observed = abs(diff)
    tolerance = 1e-12 * max(1.0, observed)

    def swapped(swap: np.ndarray) -> np.ndarray:  # swap: (k, m) of 0/1 -> |B - A| after each swap
        keep = 1 - swap
        a_num, a_den = base[0] + keep @ ua + swap @ ub, base[1] + keep @ va + swap @ vb
        b_num, b_den = base[2] + keep @ ub + swap @ ua, base[3] + keep @ vb + swap @ va
        return np.abs(_ratio(b_num, b_den) - _ratio(a_num, a_den))

    m = len(differ)
    if m <= EXACT_UP_TO:
        swaps = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        stats = swapped(swaps.astype(float))
        p, test = float((np.nan_to_num(stats, nan=-1.0) >= observed - tolerance).mean()), "ratio_permutation_exact"
    else:
        hits = 0
        for start in range(0, rounds, _CHUNK):
            k = min(_CHUNK, rounds - start)
            stats = swapped(rng.integers(0, 2, size=(k, m)).astype(float))
            hits += int((np.nan_to_num(stats, nan=-1.0) >= observed - tolerance).sum())
        p, test = (hits + 1) / (rounds + 1), "ratio_permutation"
    return Paired(n, float(score_a), float(score_b), diff, low, high, p, test)
