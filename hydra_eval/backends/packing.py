"""Prefix-shared packing of the candidates of one question into one row.

A multiple-choice question's candidates share a token prefix (the question, in both conventions). The row holds
that prefix once, then each candidate's own tokens; an attention mask lets each candidate see the prefix and
its own earlier tokens only, and position ids restart after the prefix for every candidate. The hidden states
are then exactly those of separate full sequences, while the prefix is computed once.

LM-head entries (a position and the token it must predict) are computed once too: an entry inside the prefix
serves every candidate that scores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra_eval.backends.tokenize import ScoreRequest


@dataclass(frozen=True)
class PackedGroup:
    tokens: list[int]
    positions: list[int]
    segments: list[int]  # 0 = shared prefix, k + 1 = candidate k
    entry_pos: list[int]  # row position whose hidden state predicts entry_target
    entry_target: list[int]
    pair_entry: list[int]  # entry index ...
    pair_cand: list[int]  # ... counted for this candidate
    n_candidates: int


def shared_prefix(requests: Sequence[ScoreRequest]) -> int:
    """Longest common token prefix, leaving every request at least one token of its own."""
    first = requests[0].tokens
    limit = min(len(r.tokens) for r in requests) - 1
    n = 0
    while n < limit and all(r.tokens[n] == first[n] for r in requests):
        n += 1
    return n


def pack_group(requests: Sequence[ScoreRequest]) -> PackedGroup:
    p = shared_prefix(requests)
    tokens = list(requests[0].tokens[:p])
    positions = list(range(p))
    segments = [0] * p
    # Shared entries: prefix position q predicts prefix token q + 1 (q + 1 < p).
    first_shared = max(min(r.score_from for r in requests) - 1, 0)
    entry_pos = list(range(first_shared, p - 1))
    entry_target = list(tokens[first_shared + 1 : p])
    pair_entry: list[int] = []
    pair_cand: list[int] = []
    for k, r in enumerate(requests):
        start = max(r.score_from - 1, first_shared)
        shared = range(start - first_shared, max(p - 1 - first_shared, 0))
        pair_entry.extend(shared)
        pair_cand.extend([k] * len(shared))
        own = r.tokens[p:]
        offset = len(tokens)
        # Own entries: the prefix's last position predicts own[0]; own position i predicts own[i + 1].
        own_pos = [p - 1] + list(range(offset, offset + len(own) - 1))
        own_first = max(r.score_from - p, 0)  # first own token that is scored
        base = len(entry_pos)
        entry_pos.extend(own_pos[own_first:])
        entry_target.extend(own[own_first:])
        n_own = len(own) - own_first
        pair_entry.extend(range(base, base + n_own))
        pair_cand.extend([k] * n_own)
        tokens.extend(own)
        positions.extend(range(p, p + len(own)))
        segments.extend([k + 1] * len(own))
    return PackedGroup(tokens, positions, segments, entry_pos, entry_target, pair_entry, pair_cand, len(requests))


def budget_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices sorted longest first, cut into batches whose padded size (rows x longest) fits the budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@dataclass(frozen=True)
class Collated:
    ids: Any  # (B, T) long
    positions: Any  # (B, T) long
    mask: Any  # (B, 1, T, T) bool, True = may attend
    entry_row: Any
    entry_col: Any
    flat: Any  # (N,) index of each real token in the padded (B * T) layout, row by row
    entry_flat: Any  # each entry's index among the N real tokens
    entry_target: Any
    pair_entry: Any  # into the batch's flat entry list
    pair_cand: Any  # into the batch's flat candidate list
    n_candidates: int
    real_tokens: int


def collate(groups: Sequence[PackedGroup], pad_id: int) -> Collated:
    import torch

    width = max(len(g.tokens) for g in groups)
    ids = torch.full((len(groups), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(groups), width), dtype=torch.long)
    segments = torch.full((len(groups), width), -1, dtype=torch.long)
    rows, cols, targets, pair_entry, pair_cand, flat, entry_flat = [], [], [], [], [], [], []
    n_entries = n_cands = n_real = 0
    for b, g in enumerate(groups):
        n = len(g.tokens)
        ids[b, :n] = torch.tensor(g.tokens)
        positions[b, :n] = torch.tensor(g.positions)
        segments[b, :n] = torch.tensor(g.segments)
        rows.append(torch.full((len(g.entry_pos),), b))
        cols.append(torch.tensor(g.entry_pos, dtype=torch.long))
        flat.append(torch.arange(n) + b * width)
        entry_flat.append(cols[-1] + n_real)
        n_real += n
        targets.append(torch.tensor(g.entry_target, dtype=torch.long))
        pair_entry.append(torch.tensor(g.pair_entry, dtype=torch.long) + n_entries)
        pair_cand.append(torch.tensor(g.pair_cand, dtype=torch.long) + n_cands)
        n_entries += len(g.entry_pos)
        n_cands += g.n_candidates
    index = torch.arange(width)
    causal = index[None, :] <= index[:, None]
    query, key = segments[:, :, None], segments[:, None, :]
    same_or_prefix = (key == 0) | (key == query)
    mask = causal[None] & same_or_prefix & (key >= 0) & (query >= 0)
    mask |= torch.eye(width, dtype=torch.bool)[None]  # padding rows attend to themselves (no NaN)
    return Collated(
        ids=ids,
        positions=positions,
        mask=mask[:, None],
        entry_row=torch.cat(rows),
        entry_col=torch.cat(cols),
        flat=torch.cat(flat),
        entry_flat=torch.cat(entry_flat),
        entry_target=torch.cat(targets),
        pair_entry=torch.cat(pair_entry),
        pair_cand=torch.cat(pair_cand),
        n_candidates=n_cands,
        real_tokens=n_real,
    )
