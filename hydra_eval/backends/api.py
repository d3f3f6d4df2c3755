"""A model behind an OpenAI-compatible endpoint, with LocalLM's two jobs: score texts, generate text.

Scoring asks /completions for the prompt's own log-probabilities (echo + logprobs, one new token), so it
works on endpoints that return prompt logprobs (vLLM, llama.cpp's Python server, TGI's OpenAI route); chat
endpoints cannot score. Every request's token usage, latency and attempts are kept with its row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from hydra_eval.backends.api_client import ApiError, Call, Endpoint
from hydra_eval.backends.local import cut_at_stop
from hydra_eval.errors import UserError
from hydra_eval.records import Generation
from hydra_eval.requests import split_lmeval

ENDPOINTS = ("auto", "chat", "completions")
MAX_STOP = 4  # the OpenAI API takes at most 4 stop strings; the rest are cut here
# Any language model predicts the second half of this almost surely (SmolLM2-135M: mean logprob -0.05);
# logprobs shifted by one token score it near -13.
CANARY = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16"
CANARY_MIN_LOGPROB = -3.0


@dataclass(frozen=True)
class TextScore:
    logprob: float  # sum over the scored tokens
    n_scored: int
    n_tokens: int  # tokens of the whole text, as the server counted them
    greedy: bool
    request: dict[str, Any]


def request_record(call: Call) -> dict[str, Any]:
    usage = getattr(call.response, "usage", None)
    return {
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
        "latency_s": round(call.latency_s, 4),
        "attempts": call.attempts,
    }


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


class ApiLM:
    """Wraps one OpenAI-compatible endpoint (model.api)."""

    scores_text = True  # infer sends (context, continuation) texts, not token ids

    def __init__(self, model_cfg: Any, progress: bool = False):
        api = model_cfg.api
        if api.endpoint not in ENDPOINTS:
            raise UserError(f"model.api.endpoint must be one of {', '.join(ENDPOINTS)}, not '{api.endpoint}'")
        self.api = api
        self.served = api.model or model_cfg.name
        self.seed = model_cfg.seed
        self.endpoint = Endpoint(api)
        self.progress = progress
        self.tokens_computed = 0  # prompt + completion tokens the server reported
        self.head_positions = 0
        self.checked = False  # prompt logprobs checked (check_prompt_logprobs)

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

    def score_texts(self, groups: Sequence[Sequence[tuple[str, str]]], convention: str) -> list[list[TextScore]]:
        """Log-likelihood of each (context, continuation): lmeval scores the continuation's tokens,
        opencompass every token of the text after the first."""
        if self.api.endpoint == "chat":
            raise UserError(
                "ppl datasets need a /completions endpoint that returns prompt logprobs; "
                "model.api.endpoint=chat cannot score (set it to completions or auto)"
            )
        if self.api.check_logprobs and not self.checked:
            self.check_prompt_logprobs()
        pairs = [split_lmeval(c, x) if convention == "lmeval" else (c, x) for g in groups for c, x in g]
        bar = tqdm(total=len(pairs), desc="score", unit="req", disable=not self.progress)
        calls = self.endpoint.run(self._echo, pairs, bar)
        bar.close()
        self._count(calls)
        flat = []
        for (context, continuation), call in zip(pairs, calls, strict=True):
            text = context + continuation
            start = len(context) if convention == "lmeval" else 0
            total, scored, n_prompt, greedy = score_echo(call.response.choices[0].logprobs, text, start)
            flat.append(TextScore(total, scored, n_prompt, greedy, request_record(call)))
        out, i = [], 0
        for g in groups:
            out.append(flat[i : i + len(g)])
            i += len(g)
        return out

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        stop: Sequence[str],
        chat: bool,
        desc: str = "generate",
        temperature: float = 0.0,
        seeds: Sequence[int] | None = None,
    ) -> list[Generation]:
        """One request per prompt; greedy (temperature 0) unless sampling, each row with its own seed."""
        use_chat = self.api.endpoint == "chat" or (self.api.endpoint == "auto" and chat)
        items = [(p, seeds[i] if seeds is not None else self.seed) for i, p in enumerate(prompts)]
        common: dict[str, Any] = {
            "model": self.served,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            **({"stop": list(stop)[:MAX_STOP]} if stop else {}),
        }

        async def send(client: Any, item: tuple[str, int]) -> Any:
            prompt, seed = item
            if use_chat:
                messages = [{"role": "user", "content": prompt}]
                return await client.chat.completions.create(messages=messages, seed=seed, **common)
            return await client.completions.create(prompt=prompt, seed=seed, **common)

        bar = tqdm(total=len(items), desc=desc, unit="req", disable=not self.progress)
        calls = self.endpoint.run(send, items, bar)
        bar.close()
        self._count(calls)
        out = []
        for call in calls:
            choice = call.response.choices[0]
            text = (choice.message.content if use_chat else choice.text) or ""
            record = request_record(call)
            out.append(
                Generation(
                    text=cut_at_stop(text, stop),
                    n_prompt_tokens=record["prompt_tokens"] or 0,
                    n_new_tokens=record["completion_tokens"] or 0,
                    request=record,
                )
            )
        return out
