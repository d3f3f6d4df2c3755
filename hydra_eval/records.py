"""Frozen records that flow through the pipeline: sample -> request -> response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One dataset row, normalised: its fields (as the prompt templates see them) and the gold index."""

    id: str
    fields: Mapping[str, Any]
    gold: int


@dataclass(frozen=True)
class ScoreRequest:
    """Score tokens[score_from:], each predicted from all tokens before it."""

    tokens: tuple[int, ...]
    score_from: int


@dataclass(frozen=True)
class ScoreResult:
    logprob: float  # sum of log-probabilities of the scored tokens
    n_scored: int
    greedy: bool  # every scored token is the argmax of its distribution


@dataclass(frozen=True)
class Generation:
    text: str  # decoded continuation, cut at the first stop string
    n_prompt_tokens: int
    n_new_tokens: int
    request: Mapping[str, Any] | None = None  # API models: token usage, latency and attempts of the request
