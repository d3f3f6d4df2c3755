"""Few-shot examples for a question: fixed k from a train/dev split (or the evaluated split, never the
question itself), first-n or seeded random, optionally from the question's own group (MMLU's subject)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def select(fewshot: Any, sample: Sample, pool: Sequence[Sample], same_split: bool) -> list[Sample]:
    if not fewshot.k:
        return []
    group = fewshot.group_by
    candidates = [
        s
        for s in pool
        if not (same_split and s.id == sample.id) and (group is None or s.fields[group] == sample.fields[group])
    ]
    if len(candidates) < fewshot.k:
        where = f" with {group}={sample.fields[group]!r}" if group else ""
        raise UserError(f"fewshot.k={fewshot.k} but only {len(candidates)} example(s){where} for row {sample.id}")
    if fewshot.sampler == "first_n":
        return list(candidates[: fewshot.k])
    if fewshot.sampler == "random":  # seeded per question: the same examples whatever the shard or batch
        return random.Random(f"{fewshot.seed}:{sample.id}").sample(list(candidates), fewshot.k)
    raise UserError(f"fewshot.sampler must be first_n or random, not '{fewshot.sampler}'")
