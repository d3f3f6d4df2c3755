"""Recompute a sweep's model comparison from its files, without hydra-eval's code, and check comparison.json.

For every pair in <sweep>/summary/comparison.json whose metric is a 0/1 verdict (accuracy-like), read both
models' judged rows (each prediction with its verdict), pair them by row id and recompute: each model's score,
the difference, the discordant counts, McNemar's exact p-value (a binomial sum written out here, no scipy), the
paired bootstrap 95% CI (numpy, same seed and draws) and, as a sanity check, the normal-theory CI of the mean
difference; then the macro average over datasets. Prints one line per pair; exits 1 on any mismatch.

    python scripts/compare_check.py outputs/multirun/<sweep>
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

FIELD = {"accuracy": "correct", "acc": "correct", "acc_norm": "correct_norm", "accuracy_strict": "correct_strict"}
CHUNK = 500


def rows(sweep: Path, model: str, dataset: str) -> dict[str, dict]:
    (path,) = sweep.glob(f"*/judged/{model}/{dataset}.jsonl")
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def mcnemar(a_only: int, b_only: int) -> float:
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def boot(d: np.ndarray, rng: np.random.Generator, rounds: int) -> np.ndarray:
    out = np.empty(rounds)
    for s in range(0, rounds, CHUNK):
        k = min(CHUNK, rounds - s)
        out[s : s + k] = d[rng.integers(0, len(d), size=(k, len(d)))].mean(axis=1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", type=Path)
    a = p.parse_args()
    comparison = json.loads((a.sweep / "summary" / "comparison.json").read_text())
    seed, rounds = comparison["seed"], comparison["bootstrap_rounds"]
    bad, per_pair, skipped = 0, {}, []
    print("| dataset | metric | A | B | rows | A | B | B - A | bootstrap 95% CI | normal CI | p | same |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for pair in comparison["pairs"]:
        field = FIELD.get(pair["metric"])
        if field is None:
            skipped.append(f"{pair['dataset']} {pair['metric']}")
            continue
        ra, rb = rows(a.sweep, pair["model_a"], pair["dataset"]), rows(a.sweep, pair["model_b"], pair["dataset"])
        ids = sorted(set(ra) & set(rb))
        x = np.array([100.0 * bool(ra[i][field]) for i in ids])
        y = np.array([100.0 * bool(rb[i][field]) for i in ids])
        d = y - x
        a_only, b_only = int(((x > 0) & (y == 0)).sum()), int(((x == 0) & (y > 0)).sum())
        low, high = (
            (0.0, 0.0) if not d.any() else np.percentile(boot(d, np.random.default_rng(seed), rounds), [2.5, 97.5])
        )
        half = 1.959963984540054 * d.std(ddof=1) / math.sqrt(len(d))
        mine = {"n": len(ids), "score_a": x.mean(), "score_b": y.mean(), "diff": d.mean(), "ci_low": low,
                "ci_high": high, "p": mcnemar(a_only, b_only), "discordant": [a_only, b_only]}  # fmt: skip
        ok = all((mine[k] == pair[k]) if k in ("n", "discordant") else abs(mine[k] - pair[k]) < 1e-9 for k in mine)
        bad += not ok
        per_pair.setdefault((pair["model_a"], pair["model_b"]), {}).setdefault(pair["dataset"], d)
        print(
            f"| {pair['dataset']} | {pair['metric']} | {pair['model_a']} | {pair['model_b']} | {len(ids)} | "
            f"{x.mean():.2f} | {y.mean():.2f} | {d.mean():+.2f} | [{low:+.2f}, {high:+.2f}] | "
            f"[{d.mean() - half:+.2f}, {d.mean() + half:+.2f}] | {mine['p']:.4g} | {'yes' if ok else 'NO'} |"
        )
    for m in comparison["macro"]:
        sets = per_pair.get((m["model_a"], m["model_b"]), {})
        ds = [sets[name.split(":")[0]] for name in m["metric"].split(", ") if name.split(":")[0] in sets]
        if len(ds) != len(m["metric"].split(", ")):
            continue
        rng = np.random.default_rng(seed)
        diff = float(np.mean([d.mean() for d in ds]))
        if any(d.any() for d in ds):
            low, high = np.percentile(np.mean([boot(d, rng, rounds) for d in ds], axis=0), [2.5, 97.5])
        else:
            low = high = 0.0
        ok = abs(diff - m["diff"]) < 1e-9 and abs(low - m["ci_low"]) < 1e-9 and abs(high - m["ci_high"]) < 1e-9
        bad += not ok
        print(
            f"| macro average | {m['metric']} | {m['model_a']} | {m['model_b']} | {sum(len(d) for d in ds)} | "
            f"{m['score_a']:.2f} | {m['score_b']:.2f} | {diff:+.2f} | [{low:+.2f}, {high:+.2f}] | - | "
            f"{m['p']:.4g} (sign-flip) | {'yes' if ok else 'NO'} |"
        )
    print(f"\n{'all match' if not bad else f'{bad} mismatch(es)'} (seed {seed}, {rounds} bootstrap rounds)")
    if skipped:
        print(f"not rechecked (not a 0/1 verdict field this script knows): {', '.join(skipped)}")
    print("not rechecked: the macro average's sign-flip p-value (randomized) and the per-model intervals")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
