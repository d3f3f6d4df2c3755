"""The fake backend: deterministic scores and replies from the request texts, no weights, no torch.

For the pipeline's unit tests (`model=fake`), and the smallest example of a backend: a schema, a class with
the Protocol's five methods, a `build`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from hydra_eval.backends import BackendEnv
from hydra_eval.records import (
    Counters,
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from hydra_eval.schema import Convention, ModelConfig


@dataclass
class FakeModelConfig(ModelConfig):
    """conf/model/*.yaml with `defaults: [base_fake]`."""

    _target_: str = "hydra_eval.backends.fake.build"
    reply: str = "A"  # every generation, cut at the request's stop strings and its max new tokens (words)
    num_cpus: int = 1
    mem_gb: int = 1


SCHEMA = FakeModelConfig


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class FakeBackend:
    def __init__(self, cfg: FakeModelConfig):
        self.cfg = cfg
        self.tokens_computed = 0

    def identity(self) -> dict[str, object]:
        return {"backend": "fake", "reply": self.cfg.reply, "seed": self.cfg.seed}

    def counters(self) -> Counters:
        return Counters(tokens_computed=self.tokens_computed)

    def close(self) -> None:
        pass

    def _logprob(self, text: str) -> float:
        """A fixed pseudo-random value in (-10, 0] per text and seed."""
        return -(zlib.crc32(f"{self.cfg.seed}|{text}".encode()) % 10_000) / 1_000

    def loglikelihood(
        self, groups: Sequence[Sequence[LoglikelihoodRequest]], convention: Convention
    ) -> list[list[LoglikelihoodResponse]]:
        out = []
        for group in groups:
            scored = []
            for r in group:
                whole = r.context + r.continuation
                n_tokens = _tokens(whole)
                n_scored = n_tokens - 1 if convention is Convention.opencompass else _tokens(r.continuation)
                self.tokens_computed += n_tokens
                scored.append(LoglikelihoodResponse(self._logprob(whole), n_tokens, max(1, n_scored), False))
            out.append(scored)
        return out

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        self.tokens_computed += sum(_tokens(t) for t in texts)
        return [self._logprob(t) * max(1, _tokens(t)) for t in texts]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        out = []
        for r in requests:
            text, reason = self.cfg.reply, "eos"
            for s in r.stop:
                if s and s in text:
                    text, reason = text[: text.index(s)], "stop_string"
            words = text.split(" ")
            reason = "length" if len(words) > r.max_new_tokens else reason
            text = " ".join(words[: r.max_new_tokens])
            self.tokens_computed += _tokens(r.text) + _tokens(text)
            out.append(GenerationResponse(text, reason, _tokens(r.text), _tokens(text)))
        return out

    def count_tokens(self, texts: Sequence[str], special: bool = False) -> list[int] | None:
        return [len(t.split()) for t in texts]


def build(cfg: FakeModelConfig, env: BackendEnv) -> FakeBackend:
    return FakeBackend(cfg)
