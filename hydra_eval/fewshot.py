"""Few-shot examples for a question: fixed k from a train/dev split (or the evaluated split, never the
question itself), first-n or seeded random, optionally from the question's own group (MMLU's subject)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hydra_eval.errors import UserError
from hydra_eval.records import Sample
from hydra_eval.schema import FewshotConfig, Sampler


def select(fewshot: FewshotConfig, sample: Sample, pool: Sequence[Sample], same_split: bool) -> list[Sample]:
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
    return SAMPLERS[fewshot.sampler](fewshot, sample, candidates)


def first_n(fewshot: FewshotConfig, sample: Sample, candidates: Sequence[Sample]) -> list[Sample]:
    return list(candidates[: fewshot.k])


def seeded_random(fewshot: FewshotConfig, sample: Sample, candidates: Sequence[Sample]) -> list[Sample]:
    """Seeded per question: the same examples whatever the shard or batch."""
    return random.Random(f"{fewshot.seed}:{sample.id}").sample(list(candidates), fewshot.k)


SAMPLERS = {Sampler.first_n: first_n, Sampler.random: seeded_random}
