"""The OpenAI-compatible backend (vLLM, TGI, llama.cpp's server, a hosted API): score texts, generate text.

Scoring asks /completions for the prompt's own log-probabilities (echo + logprobs, one new token), so it
works on endpoints that return prompt logprobs (vLLM, llama.cpp's Python server, TGI's OpenAI route); chat
endpoints cannot score. Every request's token usage, latency and attempts are kept with its row. Texts go
as they are: the server enforces its own window (no tokenizer here to cut or count them; records'
`truncated` stays 0)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_eval.backends import BackendEnv
from hydra_eval.backends.api_client import ApiError, Call, Endpoint, api_key
from hydra_eval.backends.local import cut_at_stop
from hydra_eval.backends.tokenize import split_lmeval
from hydra_eval.errors import UserError
from hydra_eval.records import (
    Counters,
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    Usage,
)
from hydra_eval.schema import ApiConfig, Convention, ModelConfig
from hydra_eval.schema import Endpoint as EndpointKind


@dataclass
class OpenAIModelConfig(ModelConfig):
    """conf/model/*.yaml with `defaults: [base_api]`."""

    _target_: str = "hydra_eval.backends.api.build"
    num_cpus: int = 1  # the client needs little; the server runs elsewhere
    mem_gb: int = 2
    api: ApiConfig = field(default_factory=ApiConfig)


SCHEMA = OpenAIModelConfig
MAX_STOP = 4  # the OpenAI API takes at most 4 stop strings; the rest are cut here
# Any language model predicts the second half of this almost surely (SmolLM2-135M: mean logprob -0.05);
# logprobs shifted by one token score it near -13.
CANARY = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16"
CANARY_MIN_LOGPROB = -3.0


def usage_of(call: Call) -> Usage:
    usage = getattr(call.response, "usage", None)
    return Usage(
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=round(call.latency_s, 4),
        attempts=call.attempts,
    )


def score_echo(logprobs: Any, text: str, score_from_char: int) -> tuple[float, int, int, bool]:
    """(sum of logprobs, tokens scored, prompt tokens, all scored tokens greedy) from an echoed prompt's
    logprobs: the tokens starting at or after score_from_char are scored; the generated token is ignored."""
    if logprobs is None or not getattr(logprobs, "token_logprobs", None) or logprobs.text_offset is None:
        raise ApiError("the endpoint returned no prompt logprobs (echo + logprobs); it cannot score ppl datasets")
    total, scored, n_prompt, greedy = 0.0, 0, 0, True
    tops = logprobs.top_logprobs or [None] * len(logprobs.token_logprobs)
    for offset, lp, top in zip(logprobs.text_offset, logprobs.token_logprobs, tops, strict=False):
        if offset >= len(text):
            break  # the generated token
        n_prompt += 1
        if offset < score_from_char or lp is None:
            continue
        total += lp
        scored += 1
        if top:
            greedy = greedy and lp >= max(top.values()) - 1e-6
    return total, scored, n_prompt, greedy


def finish_reason(choice: Any, cut_here: bool) -> str:
    """records.FINISH_REASONS from an OpenAI choice: `length`, a stop string (vLLM says which in
    `stop_reason`; or one this client cut), else the server's `stop` (a stop string or end of sequence)."""
    reason = getattr(choice, "finish_reason", None) or "stop"
    if reason == "length":
        return "length"
    stop_reason = getattr(choice, "stop_reason", None)
    if cut_here or isinstance(stop_reason, str):
        return "stop_string"
    if reason == "stop" and stop_reason is None and hasattr(choice, "stop_reason"):
        return "eos"  # vLLM: stop_reason is None at the end-of-sequence token
    return "stop"


class ApiBackend:
    """One OpenAI-compatible endpoint (model.api)."""

    def __init__(self, cfg: OpenAIModelConfig, job_dir: str | None = None):
        self.api = cfg.api
        self.served = cfg.api.model or cfg.name
        self._endpoint = Endpoint(cfg.api)
        self.tokens_computed = 0  # prompt + completion tokens the server reported
        self.checked = False  # prompt logprobs checked (check_prompt_logprobs)
        self.server = None
        if cfg.api.serve.command:  # started on the first request, stopped by close()
            from hydra_eval.serve import ManagedServer

            key = api_key(cfg.api) if cfg.api.api_key_env else None
            self.server = ManagedServer(cfg.api.serve, Path(job_dir or ".") / "server.log", key)

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint; a managed server is started here once, and the URL is the port it got."""
        if self.server is not None and self.server.proc is None and not self.server.base_url:
            self.api = dataclasses.replace(self.api, base_url=self.server.start())
            self._endpoint = Endpoint(self.api)
        return self._endpoint

    def identity(self) -> dict[str, object]:
        """What the server serves is its business: the key is where and what is asked (for a server the job
        starts, its command: the port changes from run to run)."""
        where = f"serve:{' '.join(self.api.serve.command)}" if self.server else self.api.base_url
        return {"api": f"{where}|{self.served}|{self.api.endpoint.value}"}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def counters(self) -> Counters:
        return Counters(tokens_computed=self.tokens_computed)

    def _count(self, calls: Sequence[Call]) -> None:
        for call in calls:
            usage = getattr(call.response, "usage", None)
            self.tokens_computed += (getattr(usage, "prompt_tokens", 0) or 0) + (
                getattr(usage, "completion_tokens", 0) or 0
            )

    async def _echo(self, client: Any, pair: tuple[str, str]) -> Any:
        return await client.completions.create(
            model=self.served, prompt=pair[0] + pair[1], max_tokens=1, echo=True, logprobs=1, temperature=0.0
        )

    def check_prompt_logprobs(self) -> None:
        """Refuse to score when the endpoint's prompt logprobs do not belong to their tokens: a counting
        sequence must come back likely. Numbers from such a server would be wrong without any error."""
        [call] = self.endpoint.run(self._echo, [(CANARY, "")])
        self._count([call])
        total, scored, _, _ = score_echo(call.response.choices[0].logprobs, CANARY, len(CANARY) // 2)
        mean = total / max(scored, 1)
        if mean < CANARY_MIN_LOGPROB:
            raise ApiError(
                f"{self.api.base_url} returns prompt logprobs that do not match their tokens (mean {mean:.1f} on "
                f"'{CANARY}'; llama-cpp-python shifts them by one token for models without a BOS token): "
                "ppl datasets would be scored wrong, so they are refused. Use gen datasets with this server, or "
                "model.api.check_logprobs=false to score anyway"
            )
        self.checked = True

    def loglikelihood(
        self, groups: Sequence[Sequence[LoglikelihoodRequest]], convention: Convention
    ) -> list[list[LoglikelihoodResponse]]:
        """Log-likelihood of each (context, continuation): lmeval scores the continuation's tokens,
        opencompass every token of the text after the first."""
        if self.api.endpoint is EndpointKind.chat:
            raise UserError(
                "ppl datasets need a /completions endpoint that returns prompt logprobs; "
                "model.api.endpoint=chat cannot score (set it to completions or auto)"
            )
        if self.api.check_logprobs and not self.checked:
            self.check_prompt_logprobs()
        lmeval = convention is Convention.lmeval
        pairs = [
            split_lmeval(r.context, r.continuation) if lmeval else (r.context, r.continuation)
            for g in groups
            for r in g
        ]
        calls = self.endpoint.run(self._echo, pairs)
        self._count(calls)
        flat = []
        for (context, continuation), call in zip(pairs, calls, strict=True):
            text = context + continuation
            start = len(context) if lmeval else 0
            total, scored, n_prompt, greedy = score_echo(call.response.choices[0].logprobs, text, start)
            flat.append(LoglikelihoodResponse(total, n_prompt, scored, greedy, usage_of(call)))
        out, i = [], 0
        for g in groups:
            out.append(flat[i : i + len(g)])
            i += len(g)
        return out

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        raise UserError(
            f"model {self.served}: rolling log-likelihood (lm-eval's perplexity tasks) is not done by a served "
            "model (model.api) yet: use an in-process model (e.g. model=smollm2_135m)"
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """One request per prompt: chat messages to /chat/completions, raw prompts to /completions (or as
        given by model.api.endpoint); greedy at temperature 0, else sampled with the request's seed."""
        calls = self.endpoint.run(self._send, list(requests))
        self._count(calls)
        out = []
        for request, call in zip(requests, calls, strict=True):
            choice = call.response.choices[0]
            text = (choice.message.content if self._chat(request) else choice.text) or ""
            usage = usage_of(call)
            cut = cut_at_stop(text, request.stop)
            out.append(
                GenerationResponse(
                    text=cut,
                    finish_reason=finish_reason(choice, cut_here=len(cut) < len(text)),
                    n_prompt_tokens=usage.prompt_tokens or 0,
                    n_new_tokens=usage.completion_tokens or 0,
                    usage=usage,
                )
            )
        return out

    def count_tokens(self, texts: Sequence[str], special: bool = False) -> list[int] | None:
        return None  # the tokenizer is the server's

    def _chat(self, request: GenerationRequest) -> bool:
        endpoint = self.api.endpoint
        return endpoint is EndpointKind.chat or (endpoint is EndpointKind.auto and request.messages is not None)

    async def _send(self, client: Any, request: GenerationRequest) -> Any:
        common: dict[str, Any] = {
            "model": self.served,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            **({"stop": list(request.stop)[:MAX_STOP]} if request.stop else {}),
            **({"top_p": request.top_p} if request.top_p < 1.0 else {}),
        }
        extra: dict[str, Any] = {"top_k": request.top_k} if request.top_k > 0 else {}  # vLLM, llama.cpp
        if self._chat(request) and request.chat_template_kwargs:
            extra["chat_template_kwargs"] = dict(request.chat_template_kwargs)  # vLLM, SGLang
        if extra:
            common["extra_body"] = extra
        if self._chat(request):
            chat = request.messages or ()
            messages = [{"role": m.role, "content": m.content} for m in chat] or [
                {"role": "user", "content": request.text}
            ]
            return await client.chat.completions.create(messages=messages, **common)
        return await client.completions.create(prompt=request.text, **common)


def build(cfg: OpenAIModelConfig, env: BackendEnv) -> ApiBackend:
    return ApiBackend(cfg, env.job_dir)
