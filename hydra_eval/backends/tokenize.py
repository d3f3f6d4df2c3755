"""(context, continuation) text pairs -> token requests, the way each anchor tool tokenizes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra_eval.records import GenerationRequest, LoglikelihoodRequest
from hydra_eval.schema import Convention


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Score tokens[score_from:], each predicted from all tokens before it."""

    tokens: tuple[int, ...]
    score_from: int


@dataclass(frozen=True, slots=True)
class ScoreResult:
    logprob: float  # sum of log-probabilities of the scored tokens
    n_scored: int
    greedy: bool  # every scored token is the argmax of its distribution


Encode = Callable[[str, bool], list[int]]  # (text, add_special_tokens) -> token ids


def opencompass_request(context: str, continuation: str, encode: Encode) -> ScoreRequest:
    """OpenCompass get_ppl: the whole text tokenized as one string (with the tokenizer's special tokens);
    every token after the first is scored."""
    return ScoreRequest(tokens=tuple(encode(context + continuation, True)), score_from=1)


def split_lmeval(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's _encode_pair: trailing spaces of the context belong to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def lmeval_request(context: str, continuation: str, encode: Encode, prefix_token: int) -> ScoreRequest:
    """lm-eval _encode_pair: trailing spaces of the context move to the continuation; the pair is tokenized
    as one string and the context's own tokenization splits it. An empty context gets a prefix token."""
    context, continuation = split_lmeval(context, continuation)
    if not context:
        return ScoreRequest(tokens=(prefix_token, *encode(continuation, False)), score_from=1)
    whole = encode(context + continuation, False)
    n_context = len(encode(context, False))
    return ScoreRequest(tokens=tuple(whole), score_from=n_context)


def rolling_requests(tokens: list[int], prefix_token: int, max_len: int) -> list[ScoreRequest]:
    """A whole text's tokens as disjoint scoring windows (lm-eval's get_rolling_token_windows with
    context_len=1 and make_disjoint_window): the first window predicts the first max_len tokens after the
    prefix token, each later one the next max_len tokens from the max_len tokens before them, so every token
    is scored once. Each request is at most max_len + 1 tokens (max_len model inputs)."""
    if not tokens:
        return []
    first = min(max_len, len(tokens))
    out = [ScoreRequest(tokens=(prefix_token, *tokens[:first]), score_from=1)]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_len)  # pred_len = max_len - context_len + 1 = max_len
        end = done + n
        context = tokens[max(0, end - max_len - 1) : end - 1]
        context = context[: len(context) - (n - 1)]  # make_disjoint_window: the context stops before the targets
        out.append(ScoreRequest(tokens=(*context, *tokens[end - n : end]), score_from=len(context)))
        done = end
    return out


def prefix_token(tokenizer: Any) -> int:
    """lm-eval's prefix token for an empty context or a rolling window's start: BOS, else EOS."""
    return int(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)


def token_request(
    request: LoglikelihoodRequest, convention: Convention, encode: Encode, tokenizer: Any
) -> ScoreRequest:
    """A (context, continuation) pair as tokens, by convention; lm-eval's empty-context prefix is the
    tokenizer's BOS, else its EOS."""
    if convention is Convention.opencompass:
        return opencompass_request(request.context, request.continuation, encode)
    prefix = prefix_token(tokenizer)
    return lmeval_request(request.context, request.continuation, encode, prefix)


def prompt_ids(request: GenerationRequest, encode: Encode, tokenizer: Any) -> list[int]:
    """A generation prompt as tokens: the raw prompt with the tokenizer's special tokens, or the chat
    messages through the tokenizer's template (which has its own special tokens)."""
    if request.messages is None:
        return encode(request.text, True)
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **(request.chat_template_kwargs or {})
    )
    return encode(text, False)
