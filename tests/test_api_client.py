"""The API backend's pure parts: backoff, scoring an echoed prompt, usage totals, config errors. The real server
is in tests/test_api.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hydra_eval import usage
from hydra_eval.backends.api import ApiBackend, score_echo
from hydra_eval.backends.api_client import ApiError, api_key, backoff
from hydra_eval.backends.tokenize import split_lmeval
from hydra_eval.config import typed
from hydra_eval.errors import UserError
from hydra_eval.records import (
    GenerationRequest,
    GenPrediction,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    PplPrediction,
    Usage,
)
from hydra_eval.schema import Convention


def test_backoff_doubles_up_to_the_cap_and_retry_after_wins():
    assert [backoff(a, 0.5, 3.0) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff(0, 0.5, 3.0, retry_after_s=4.0) == 4.0
    assert backoff(2, 0.5, 3.0, retry_after_s=0.1) == 2.0


def echoed(text_offset, token_logprobs, top_logprobs=None):
    return SimpleNamespace(text_offset=text_offset, token_logprobs=token_logprobs, top_logprobs=top_logprobs)


def test_score_echo_scores_only_the_continuation_and_drops_the_generated_token():
    text = "Q: a\nA: yes"  # context "Q: a\nA:" (7 chars), continuation " yes"
    lp = echoed(
        [0, 2, 4, 7, 11],  # the last token (offset == len(text)) is the one the server generated
        [None, -1.0, -2.0, -0.5, -9.0],
        [None, {"a": -1.0}, {"b": -0.1, "x": -2.0}, {" yes": -0.5}, {"z": -0.1}],
    )
    assert score_echo(lp, text, 7) == (-0.5, 1, 4, True)
    total, scored, n_prompt, greedy = score_echo(lp, text, 0)  # opencompass: every token after the first
    assert (total, scored, n_prompt, greedy) == (-3.5, 3, 4, False)  # token 2 was not the top choice


def test_score_echo_without_logprobs_is_one_clear_error():
    with pytest.raises(ApiError, match="cannot score"):
        score_echo(None, "x", 0)


def test_split_lmeval_moves_trailing_spaces_to_the_continuation():
    assert split_lmeval("Answer: ", "yes") == ("Answer:", " yes")
    assert split_lmeval("Answer:", " yes") == ("Answer:", " yes")


def test_usage_summary_over_generations_and_candidates():
    def ppl(u):
        return PplPrediction(0, "0", 0, ("a",), (LoglikelihoodResponse(-1.0, 3, 1, True, u),), prompts=("x a",))

    gen = GenPrediction(0, "0", 0, "p", ("t",), ("stop",), 10, 5, requests=(Usage(10, 5, 0.2, 1),))
    rows = [gen, ppl(Usage(7, 1, 0.4, 3)), ppl(Usage(3, 1, 1.0, 1))]
    s = usage.summary(rows)
    assert s == {
        "requests": 3,
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "retries": 2,
        "latency_mean_s": pytest.approx(1.6 / 3),
        "latency_p50_s": 0.4,
        "latency_p95_s": 1.0,
    }
    assert usage.summary([ppl(None)]) is None  # a local model's rows


def test_missing_key_variable_fails_before_any_request(compose_cfg, monkeypatch):
    cfg = typed(compose_cfg("model=openai_gpt4o_mini", "dataset=siqa"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        ApiBackend(cfg.model)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert api_key(cfg.model.api) == "sk-test"


def test_chat_endpoint_cannot_score_ppl(compose_cfg, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    lm = ApiBackend(typed(compose_cfg("model=openai_gpt4o_mini", "dataset=piqa")).model)
    with pytest.raises(UserError, match="endpoint=chat cannot score"):
        lm.loglikelihood([[LoglikelihoodRequest("a", " b")]], Convention.opencompass)


def test_unreachable_endpoint_fails_with_one_line_after_its_retries(compose_cfg):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = typed(
        compose_cfg(
            "model=llamacpp_smollm2",
            f"model.api.base_url=http://127.0.0.1:{port}/v1",
            "model.api.retries=2",
            "model.api.backoff_s=0.05",
        )
    )
    lm = ApiBackend(cfg.model)
    with pytest.raises(ApiError, match=r"APIConnectionError: .*gave up after 3 attempts") as e:
        lm.generate([GenerationRequest(None, None, (), 4)])
    assert "\n" not in str(e.value)
    assert lm.endpoint.retries == 2


def test_rate_limiter_spaces_request_starts():
    import asyncio
    import time

    from hydra_eval.backends.api_client import RateLimiter

    async def starts() -> list[float]:
        limiter = RateLimiter(10.0)  # one start per 0.1 s

        async def one() -> float:
            await limiter.wait()
            return time.monotonic()

        return sorted(await asyncio.gather(*[one() for _ in range(5)]))

    # Request k starts no earlier than its slot, k intervals after the first call. (Gaps between the actual
    # wake-ups are no guarantee: on a loaded machine one wake-up comes late and the next on time.)
    begin = time.monotonic()
    times = asyncio.run(starts())
    assert all(t >= begin + k * 0.1 - 0.01 for k, t in enumerate(times))
    assert times[-1] - begin >= 0.39
