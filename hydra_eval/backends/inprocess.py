"""A torch model in this process behind the Backend Protocol: texts become tokens here, by convention.

Shared by the transformers and tiny backends, which differ only in how the model is loaded and identified.
The model loads on the first request, so a job whose rows all come from the cache never loads it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from hydra_eval.backends.local import LocalLM, Sampling, fit_prompt
from hydra_eval.backends.tokenize import ScoreRequest, prefix_token, prompt_ids, rolling_requests, token_request
from hydra_eval.records import (
    Counters,
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from hydra_eval.schema import Convention, LocalModelConfig

log = logging.getLogger(__name__)

Loader = Callable[[], tuple[Any, Any]]  # () -> (model in eval mode on its device, tokenizer with a pad token)


class InProcessBackend:
    def __init__(self, cfg: LocalModelConfig, load: Loader, identity: dict[str, object]) -> None:
        self.cfg = cfg
        self._load = load
        self._identity = identity
        self._lm: LocalLM | None = None
        self._load_s = 0.0

    def identity(self) -> dict[str, object]:
        return dict(self._identity)

    def counters(self) -> Counters:
        lm = self._lm
        if lm is None:
            return Counters(load_s=self._load_s)
        return Counters(self._load_s, lm.tokens_computed, lm.head_positions)

    @property
    def lm(self) -> LocalLM:
        if self._lm is None:
            if self.cfg.num_threads:
                import torch

                torch.set_num_threads(self.cfg.num_threads)
            t0 = time.perf_counter()
            model, tokenizer = self._load()
            self._load_s = time.perf_counter() - t0
            log.info("model %s loaded in %.1fs", self.cfg.name, self._load_s)
            self._lm = LocalLM(
                model,
                tokenizer,
                self.cfg.batch_size,
                self.cfg.max_seq_len,
                token_budget=self.cfg.token_budget,
                kv_cache_gb=self.cfg.kv_cache_gb,
            )
        return self._lm

    def _token_request(self, request: LoglikelihoodRequest, convention: Convention) -> ScoreRequest:
        return token_request(request, convention, self.lm.encode, self.lm.tokenizer)

    def loglikelihood(
        self, groups: Sequence[Sequence[LoglikelihoodRequest]], convention: Convention
    ) -> list[list[LoglikelihoodResponse]]:
        """A text longer than model.max_seq_len loses its first tokens (LocalLM.score_groups); the response
        says how many."""
        tokens = [[self._token_request(r, convention) for r in group] for group in groups]
        window = self.cfg.max_seq_len
        return [
            [
                LoglikelihoodResponse(
                    res.logprob,
                    len(req.tokens),
                    res.n_scored,
                    res.greedy,
                    truncated=max(0, len(req.tokens) - window),
                )
                for req, res in zip(reqs, results, strict=True)
            ]
            for reqs, results in zip(tokens, self.lm.score_groups(tokens), strict=True)
        ]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """lm-eval's HFLM.loglikelihood_rolling: the text with the tokenizer's default special tokens (none
        when it already starts with BOS), windows of max_seq_len - 1 inputs (truncation keeps max_seq_len
        tokens, the last one predicted), each window scored on its own and summed."""
        lm = self.lm
        tok = lm.tokenizer
        prefix = prefix_token(tok)
        bos = tok.decode(prefix)
        windows = [
            rolling_requests(lm.encode(t, not (bos and t.startswith(bos))), prefix, self.cfg.max_seq_len - 1)
            for t in texts
        ]
        flat = [[w] for ws in windows for w in ws]
        scores = iter(group[0].logprob for group in lm.score_groups(flat))
        return [sum(next(scores) for _ in ws) for ws in windows]

    def _encode_prompt(self, request: GenerationRequest) -> list[int]:
        return prompt_ids(request, self.lm.encode, self.lm.tokenizer)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """Requests with the same decoding settings are batched together; responses come back in order. Each
        prompt is fitted to model.max_seq_len first (local.fit_prompt); the response says how many tokens it
        lost."""
        out: list[GenerationResponse | None] = [None] * len(requests)
        fitted = [fit_prompt(self._encode_prompt(r), r.max_new_tokens, self.cfg.max_seq_len) for r in requests]
        batches: dict[tuple[int, tuple[str, ...], Sampling], list[int]] = {}
        for i, r in enumerate(requests):
            batches.setdefault((fitted[i].max_new, r.stop, r.sampling), []).append(i)
        for (max_new, stop, sampling), members in batches.items():
            seeds = [requests[i].seed for i in members] if sampling[0] > 0 else None
            responses = self.lm.generate([fitted[i].ids for i in members], max_new, stop, sampling, seeds)
            for i, response in zip(members, responses, strict=True):
                cut = fitted[i].cut
                out[i] = dataclasses.replace(response, truncated=cut) if cut else response
        return [r for r in out if r is not None]

    def count_tokens(self, texts: Sequence[str], special: bool = False) -> list[int] | None:
        return self.lm.count_tokens(texts, special)

    def close(self) -> None:
        self._lm = None  # the weights go with the last reference
