"""Rows whose input did not fit the model's window, and multiple-choice rows decided by order: their shares,
shown beside the scores (results, table, MLflow) and warned about in the job's log.

A text longer than model.max_seq_len loses its first tokens (ppl: each candidate's text; gen: the prompt, so
that it and the new tokens fit, as lm-eval does); the backend records how many. Candidates with the same best
score tie and the first of them is chosen: when a cut removed what told them apart, the score says only where
the gold sits. A job with neither reports neither metric, so the numbers of inputs that fit are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from hydra_eval.records import Prediction, Verdict

log = logging.getLogger(__name__)


def summary(rows: Sequence[Prediction], verdicts: Sequence[Verdict] = ()) -> dict[str, float]:
    """`input_truncated`: percent of rows with a cut input; `tied`: percent of rows whose chosen candidate
    (by score, or by acc_norm's score) tied with another. Only those above zero."""
    out: dict[str, float] = {}
    cut = sum(r.truncated > 0 for r in rows)
    if cut:
        out["input_truncated"] = 100 * cut / len(rows)
    tied = sum(v.tied is not None or v.tied_norm is not None for v in verdicts)
    if tied:
        out["tied"] = 100 * tied / len(verdicts)
    return out


def warn(dataset: str, n_rows: int, stats: Mapping[str, float]) -> None:
    """One line for each kind, whenever any row has it (a cut input or a tie is never routine)."""
    if "input_truncated" in stats:
        share = stats["input_truncated"]
        log.warning(
            "%d of %d %s rows did not fit model.max_seq_len and lost their first tokens (input_truncated %.1f%%): "
            "raise model.max_seq_len, or shorten the prompts (fewer shots)",
            round(share * n_rows / 100),
            n_rows,
            dataset,
            share,
        )
    if "tied" in stats:
        share = stats["tied"]
        log.warning(
            "%d of %d %s rows have candidates tied at the best score, the first chosen by its place (tied %.1f%%; "
            "`tied` in the judged rows)",
            round(share * n_rows / 100),
            n_rows,
            dataset,
            share,
        )


def check(dataset: str, rows: Sequence[Prediction], verdicts: Sequence[Verdict] = ()) -> dict[str, float]:
    """summary(), warned about: the metrics to add to the job's results."""
    stats = summary(rows, verdicts)
    warn(dataset, len(rows), stats)
    return stats
