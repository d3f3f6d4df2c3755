"""Frozen records that cross a stage boundary: sample -> request -> response -> prediction -> verdict.

A prediction is what the infer stage writes (one line of predictions/<model>/<dataset>.jsonl), a verdict
what the eval stage decides about it; eval writes both together to its own judged file. Every line carries
SCHEMA_VERSION, and readers refuse lines of another version (`check_version`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra_eval.errors import UserError

SCHEMA_VERSION = 2  # 1: the files before versions (no schema_version field)

Json = dict[str, Any]


def check_version(row: Mapping[str, Any], where: str) -> None:
    """A line written by another version of the file format is refused, not misread."""
    version = row.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{where} holds format version {version}, this hydra-eval reads version {SCHEMA_VERSION}: "
            "rerun mode=infer into a new folder (or with the hydra-eval that wrote it)"
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """One dataset row, normalised: its fields (as the prompt templates see them) and the gold index."""

    id: str
    fields: Mapping[str, Any]
    gold: int


@dataclass(frozen=True, slots=True)
class Usage:
    """One request to a served model: its token counts, latency and attempts (retries + 1)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    attempts: int

    def to_json(self) -> Json:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Usage:
        return cls(d.get("prompt_tokens"), d.get("completion_tokens"), float(d["latency_s"]), int(d["attempts"]))


@dataclass(frozen=True, slots=True)
class LoglikelihoodRequest:
    """Score `continuation` after `context`. How the pair becomes tokens is the backend's business, by
    convention (lm-eval: the continuation's tokens; OpenCompass: the whole text)."""

    context: str
    continuation: str


@dataclass(frozen=True, slots=True)
class LoglikelihoodResponse:
    logprob: float  # sum of log-probabilities of the scored tokens
    n_tokens: int  # tokens of the whole text (OpenCompass divides by these)
    n_scored: int
    greedy: bool  # every scored token is the argmax of its distribution
    usage: Usage | None = None  # served models: the request behind it
    truncated: int = 0  # tokens cut from the left to fit model.max_seq_len (written only when some were)

    def to_json(self) -> Json:
        out: Json = {"logprob": self.logprob, "n_tokens": self.n_tokens, "n_scored": self.n_scored}
        out["greedy"] = self.greedy
        if self.truncated:
            out["truncated"] = self.truncated
        if self.usage is not None:
            out["request"] = self.usage.to_json()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LoglikelihoodResponse:
        usage = Usage.from_json(d["request"]) if "request" in d else None
        values = (float(d["logprob"]), int(d["n_tokens"]), int(d["n_scored"]), bool(d["greedy"]))
        return cls(*values, usage, int(d.get("truncated", 0)))


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Generate after a raw `prompt`, or after chat `messages` (the backend applies its chat template, with
    `chat_template_kwargs`)."""

    prompt: str | None
    messages: tuple[Message, ...] | None
    stop: tuple[str, ...]
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    seed: int = 0  # sampling is seeded per request, so a row's sample does not depend on its batch
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    chat_template_kwargs: Mapping[str, Any] | None = None

    @property
    def sampling(self) -> tuple[float, float, int]:
        """What decides how tokens are drawn (requests that share it can share a batch)."""
        return (self.temperature, self.top_p, self.top_k)

    @property
    def text(self) -> str:
        """The prompt's text: the raw prompt, or the last message's content."""
        if self.prompt is not None:
            return self.prompt
        return self.messages[-1].content if self.messages else ""


# Why a generation ended: a stop string, the end-of-sequence token, the max new tokens; `stop` is a served
# model's word for either of the first two (OpenAI's API does not say which)
FINISH_REASONS = ("stop_string", "eos", "length", "stop")


@dataclass(frozen=True, slots=True)
class GenerationResponse:
    text: str  # the continuation, cut at the first stop string
    finish_reason: str  # FINISH_REASONS
    n_prompt_tokens: int  # the prompt's tokens the model was given
    n_new_tokens: int
    usage: Usage | None = None
    truncated: int = 0  # prompt tokens cut from the left to leave room for the new ones in model.max_seq_len


@dataclass(frozen=True, slots=True)
class PplPrediction:
    """The infer stage's output for one multiple-choice / log-likelihood row."""

    idx: int  # the row's position in the job's sample list (cache and shard order)
    id: str
    gold: int
    choices: tuple[str, ...]  # the bare choices (lm-eval's acc_norm divides by their length)
    candidates: tuple[LoglikelihoodResponse, ...]
    context: str | None = None  # one context shared by every candidate, stored once ...
    continuations: tuple[str, ...] | None = None
    prompts: tuple[str, ...] | None = None  # ... or one whole text per candidate
    group: str | None = None  # dataset.group_metrics_by's value

    @property
    def truncated(self) -> int:
        """The most tokens cut from the left of a candidate's text to fit model.max_seq_len."""
        return max((c.truncated for c in self.candidates), default=0)

    def to_json(self) -> Json:
        out: Json = {"schema_version": SCHEMA_VERSION, "idx": self.idx, "id": self.id, "gold": self.gold}
        if self.context is not None:
            out.update(context=self.context, continuations=list(self.continuations or ()))
        else:
            out["prompts"] = list(self.prompts or ())
        out.update(choices=list(self.choices), candidates=[c.to_json() for c in self.candidates])
        if self.group is not None:
            out["group"] = self.group
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PplPrediction:
        continuations = d.get("continuations")
        return cls(
            idx=int(d["idx"]),
            id=str(d["id"]),
            gold=int(d["gold"]),
            choices=tuple(d["choices"]),
            candidates=tuple(LoglikelihoodResponse.from_json(c) for c in d["candidates"]),
            context=d.get("context"),
            continuations=tuple(continuations) if continuations is not None else None,
            prompts=tuple(d["prompts"]) if "prompts" in d else None,
            group=d.get("group"),
        )


@dataclass(frozen=True, slots=True)
class Split:
    """A generation split by model.reasoning: the thinking (None: the output had none) and the answer."""

    reasoning: str | None
    answer: str
    closed: bool  # false: a reasoning block was opened and never closed (the answer is then empty)


@dataclass(frozen=True, slots=True)
class GenPrediction:
    """The infer stage's output for one generation row (num_samples generations)."""

    idx: int
    id: str
    gold: int
    prompt: str  # the text before any chat template
    generations: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    n_prompt_tokens: int
    n_new_tokens: int  # over all generations
    options: tuple[str, ...] = ()  # option texts (edit distance)
    requests: tuple[Usage, ...] | None = None  # served models: one per generation
    answers: tuple[str, ...] | None = None  # accepted answers
    fields: Mapping[str, Any] | None = None  # sample fields the eval stage needs (tests, entry point, ...)
    group: str | None = None
    messages: tuple[Message, ...] | None = None  # chat: what the chat template was given
    splits: tuple[Split, ...] | None = None  # model.reasoning.strip: one per generation
    reasoning_tokens: tuple[int, ...] | None = None  # tokens of each reasoning and answer (backends that know)
    answer_tokens: tuple[int, ...] | None = None
    turns: tuple[str, ...] | None = None  # multi-turn: the answer to each user turn (the generation: the last)
    truncated: int = 0  # prompt tokens cut from the left to fit model.max_seq_len (the most of its requests)

    @property
    def generation(self) -> str:
        return self.generations[0]

    @property
    def outputs(self) -> tuple[str, ...]:
        """What is scored, one per generation: the answer after the reasoning, or the whole generation."""
        return tuple(s.answer for s in self.splits) if self.splits is not None else self.generations

    @property
    def output(self) -> str:
        return self.outputs[0]

    def to_json(self) -> Json:
        out: Json = {"schema_version": SCHEMA_VERSION, "idx": self.idx, "id": self.id, "gold": self.gold}
        out.update(prompt=self.prompt, generation=self.generation)
        if len(self.generations) > 1:
            out["generations"] = list(self.generations)
        out.update(
            finish_reasons=list(self.finish_reasons),
            n_prompt_tokens=self.n_prompt_tokens,
            n_new_tokens=self.n_new_tokens,
            options=list(self.options),
        )
        if self.requests is not None:
            out["requests"] = [u.to_json() for u in self.requests]
        if self.answers is not None:
            out["answers"] = list(self.answers)
        if self.fields is not None:
            out["fields"] = dict(self.fields)
        if self.group is not None:
            out["group"] = self.group
        if self.messages is not None:
            out["messages"] = [{"role": m.role, "content": m.content} for m in self.messages]
        if self.splits is not None:
            out["reasoning"] = [s.reasoning for s in self.splits]
            out["outputs"] = [s.answer for s in self.splits]
            out["reasoning_closed"] = [s.closed for s in self.splits]
        if self.reasoning_tokens is not None and self.answer_tokens is not None:
            out.update(reasoning_tokens=list(self.reasoning_tokens), answer_tokens=list(self.answer_tokens))
        if self.turns is not None:
            out["turns"] = list(self.turns)
        if self.truncated:
            out["truncated"] = self.truncated
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GenPrediction:
        return cls(
            idx=int(d["idx"]),
            id=str(d["id"]),
            gold=int(d["gold"]),
            prompt=str(d["prompt"]),
            generations=tuple(d.get("generations") or [d["generation"]]),
            finish_reasons=tuple(d["finish_reasons"]),
            n_prompt_tokens=int(d["n_prompt_tokens"]),
            n_new_tokens=int(d["n_new_tokens"]),
            options=tuple(d.get("options", ())),
            requests=tuple(Usage.from_json(u) for u in d["requests"]) if "requests" in d else None,
            answers=tuple(d["answers"]) if "answers" in d else None,
            fields=d.get("fields"),
            group=d.get("group"),
            messages=tuple(Message(m["role"], m["content"]) for m in d["messages"]) if "messages" in d else None,
            splits=tuple(
                Split(r, a, bool(c))
                for r, a, c in zip(d["reasoning"], d["outputs"], d["reasoning_closed"], strict=True)
            )
            if "outputs" in d
            else None,
            reasoning_tokens=tuple(d["reasoning_tokens"]) if "reasoning_tokens" in d else None,
            answer_tokens=tuple(d["answer_tokens"]) if "answer_tokens" in d else None,
            turns=tuple(d["turns"]) if "turns" in d else None,
            truncated=int(d.get("truncated", 0)),
        )


Prediction = PplPrediction | GenPrediction


def prediction_from_json(d: Mapping[str, Any], where: str) -> Prediction:
    check_version(d, where)
    return PplPrediction.from_json(d) if "candidates" in d else GenPrediction.from_json(d)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One program run in the sandbox."""

    status: str  # passed | failed | timeout | error (the harness, not the program)
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the eval stage decided about one prediction. Only the fields a judge sets are written."""

    correct: bool
    logprob: float | None = None  # loglikelihood task: the continuation's log-likelihood
    extracted: bool = False  # an answer was read from a generation (`answer` is then written, null = none)
    answer: str | None = None
    scores: tuple[float, ...] | None = None  # per candidate
    scores_norm: tuple[float, ...] | None = None
    pred: int | None = None  # the chosen candidate or option (-1: none)
    pred_norm: int | None = None
    correct_norm: bool | None = None
    correct_strict: bool | None = None
    correct_loose: bool | None = None  # IFEval: every instruction followed, loosely
    inst_strict: tuple[bool, ...] | None = None  # IFEval: each instruction followed, strictly and loosely
    inst_loose: tuple[bool, ...] | None = None
    n_passed: int | None = None  # code: programs that passed, of `outcomes`
    outcomes: tuple[Outcome, ...] | None = None
    harness_error: str | None = None  # the harness failed (never the model's failure): the job fails
    # num_samples > 1: each sample's verdict (the fields above are the first sample's)
    sample_correct: tuple[bool, ...] | None = None
    sample_answers: tuple[str | None, ...] | None = None
    # candidates whose score equals the chosen one's (the first of them was chosen, by order), if several
    tied: tuple[int, ...] | None = None
    tied_norm: tuple[int, ...] | None = None

    def to_json(self) -> Json:
        out: Json = {}
        if self.logprob is not None:
            out["logprob"] = self.logprob
        if self.extracted:
            out["answer"] = self.answer
        for name in ("scores", "scores_norm"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value)
        if self.pred is not None:
            out["pred"] = self.pred
        out["correct"] = self.correct
        for name in ("pred_norm", "correct_norm", "correct_strict", "correct_loose", "n_passed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("inst_strict", "inst_loose", "tied", "tied_norm"):
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        if self.outcomes is not None:
            out["outcomes"] = [{"status": o.status, "detail": o.detail} for o in self.outcomes]
        if self.harness_error is not None:
            out["harness_error"] = self.harness_error
        if self.sample_correct is not None:
            out["sample_correct"] = list(self.sample_correct)
        if self.sample_answers is not None:
            out["sample_answers"] = list(self.sample_answers)
        return out


@dataclass(frozen=True, slots=True)
class Judged:
    """A line of the judged file: the prediction and its verdict, side by side."""

    prediction: Prediction
    verdict: Verdict

    def to_json(self) -> Json:
        return {**self.prediction.to_json(), **self.verdict.to_json()}


@dataclass(frozen=True, slots=True)
class Judgment:
    """One judge call's outcome (judgments/<model>/<dataset>.jsonl): which row, turn and game (0: single or
    reference; pairwise 1: the baseline was assistant A, 2: the judged model was), the judge's raw reply, the
    verdict read from it (null with `error` when it did not parse), the rationale before it, and the judged
    model's score: the rating, 1/0 for correct, or the game's 1 / 0.5 / 0 (a strong verdict weighs more)."""

    idx: int
    id: str
    turn: int
    game: int
    key: str  # the judge call's content key (the judge cache's)
    raw: str
    verdict: str | None
    score: float | None
    weight: int = 1
    error: str | None = None  # why no verdict was read: a parse failure, counted apart
    rationale: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None  # served judges

    def to_json(self) -> Json:
        return {
            "schema_version": SCHEMA_VERSION,
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> Judgment:
        check_version(d, where)
        return cls(**{k: v for k, v in d.items() if k != "schema_version"})


@dataclass(frozen=True, slots=True)
class Counters:
    """What a backend computed so far (throughput numbers of the infer metadata)."""

    load_s: float = 0.0
    tokens_computed: int = 0  # local: real tokens through the transformer body; served: reported tokens
    head_positions: int = 0  # local: positions through the LM head


@dataclass(frozen=True, slots=True)
class InferMeta:
    """predictions/<model>/<dataset>.meta.json: what the infer stage computed, from what, and how fast."""

    model: str
    dataset: str
    version: str  # the dataset's prompt version (prompts.version)
    mode: str  # ppl | gen
    n: int
    data_source: str
    fingerprints: Mapping[str, Any]  # {"data": file -> sha256, "model": the backend's identity}
    cache_key: str | None  # None for merged shards
    shard: Mapping[str, Any]  # {"index", "count", "rows": [start, end], "merged_from"?}
    reused: Mapping[str, int]  # {"cache", "folder", "computed"}
    load_s: float
    infer_s: float
    tokens_computed: int
    head_positions: int
    row_keys: tuple[str, ...] = ()  # each row's cache key, in the file's order (what reuse= matches)

    def to_json(self) -> Json:
        computed, infer_s = self.reused["computed"], self.infer_s
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "version": self.version,
            "mode": self.mode,
            "n": self.n,
            "data_source": self.data_source,
            "fingerprints": dict(self.fingerprints),
            "cache_key": self.cache_key,
            "shard": dict(self.shard),
            "reused": dict(self.reused),
            "timings": {"load_s": self.load_s, "infer_s": infer_s},
            "throughput": {
                "examples_per_s": computed / infer_s if infer_s else None,
                "tokens_computed": self.tokens_computed,
                "head_positions": self.head_positions,
                "tokens_per_s": self.tokens_computed / infer_s if infer_s else None,
            },
            "row_keys": list(self.row_keys),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> InferMeta:
        check_version(d, where)
        return cls(
            model=d["model"],
            dataset=d["dataset"],
            version=d["version"],
            mode=d["mode"],
            n=int(d["n"]),
            data_source=d["data_source"],
            fingerprints=d["fingerprints"],
            cache_key=d["cache_key"],
            shard=d["shard"],
            reused=d["reused"],
            load_s=float(d["timings"]["load_s"]),
            infer_s=float(d["timings"]["infer_s"]),
            tokens_computed=int(d["throughput"]["tokens_computed"]),
            head_positions=int(d["throughput"]["head_positions"]),
            row_keys=tuple(d.get("row_keys", ())),
        )
