"""Samples -> requests -> backend -> predictions, for each kind of task; and the judge and metrics of each.

A task is chosen once from the dataset config (`for_dataset`): multiple choice or a single continuation by
log-likelihood (dataset.mode=ppl), or generation (dataset.mode=gen). The infer stage only calls `predict`,
the eval stage `judge` and `metrics`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hydra_eval import judges, metrics, prompts, reasoning, sampling
from hydra_eval.backends import Backend
from hydra_eval.errors import UserError
from hydra_eval.records import (
    GenerationRequest,
    GenerationResponse,
    GenPrediction,
    LoglikelihoodRequest,
    Message,
    PplPrediction,
    Prediction,
    Sample,
    Split,
    Verdict,
)
from hydra_eval.schema import DatasetConfig, DatasetMode, GenConfig, Metric, ModelConfig, PplConfig


class Task(Protocol):
    @property
    def convention(self) -> str:
        """How the numbers are made, for the results file: the ppl convention, or the extractor."""
        ...

    def predict(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], shots: Sequence[Sequence[Sample]]
    ) -> list[Prediction]:
        """Predictions for `rows`, each with its few-shot examples."""
        ...

    def judge(self, rows: Sequence[Prediction]) -> tuple[judges.Judge, list[Verdict]]: ...


def _group(dataset: DatasetConfig, sample: Sample) -> str | None:
    return str(sample.fields[dataset.group_metrics_by]) if dataset.group_metrics_by else None


@dataclass(frozen=True)
class LoglikelihoodTask:
    """Candidates scored by log-likelihood: multiple choice, or one continuation (dataset.ppl.task)."""

    dataset: DatasetConfig
    ppl: PplConfig
    max_seq_len: int | None = None  # the model's window: fewshot.drop_to_fit keeps each text within it

    @property
    def convention(self) -> str:
        return self.ppl.convention.value

    def _pairs(self, backend: Backend, sample: Sample, shots: Sequence[Sample]) -> list[tuple[str, str]]:
        pairs = prompts.ppl_candidates(self.ppl, sample, prompts.prefix(self.dataset, sample, list(shots)))
        if not (self.dataset.fewshot.drop_to_fit and self.max_seq_len and shots):
            return pairs
        kept, out = list(shots), []
        for j in range(len(pairs)):  # OpenCompass's PPLInferencer: label by label; what it dropped stays out
            while True:
                context, continuation = prompts.ppl_candidates(
                    self.ppl, sample, prompts.prefix(self.dataset, sample, kept)
                )[j]
                n = backend.count_tokens([context + continuation], special=True)  # as OpenCompass counts
                if n is None:
                    raise UserError(
                        "dataset.fewshot.drop_to_fit needs the model's tokenizer here (not a served model)"
                    )
                if not kept or n[0] <= self.max_seq_len:
                    break
                kept = kept[:-1]
            out.append((context, continuation))
        return out

    def predict(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], shots: Sequence[Sequence[Sample]]
    ) -> list[Prediction]:
        pairs_of = [self._pairs(backend, s, shot) for (_, s), shot in zip(rows, shots, strict=True)]
        groups = [[LoglikelihoodRequest(c, x) for c, x in pairs] for pairs in pairs_of]
        scored = backend.loglikelihood(groups, self.ppl.convention)
        out: list[Prediction] = []
        for (idx, sample), pairs, candidates in zip(rows, pairs_of, scored, strict=True):
            shared = len({c for c, _ in pairs}) == 1 and len(pairs) > 1  # one shared context, stored once
            out.append(
                PplPrediction(
                    idx=idx,
                    id=sample.id,
                    gold=sample.gold,
                    choices=tuple(prompts.choice_texts(self.ppl, sample)),
                    candidates=tuple(candidates),
                    context=pairs[0][0] if shared else None,
                    continuations=tuple(x for _, x in pairs) if shared else None,
                    prompts=None if shared else tuple(c + x for c, x in pairs),
                    group=_group(self.dataset, sample),
                )
            )
        return out

    def judge(self, rows: Sequence[Prediction]) -> tuple[judges.Judge, list[Verdict]]:
        judge = judges.for_dataset(self.dataset, rows)
        return judge, judge.judge(rows)


@dataclass(frozen=True)
class GenerationTask:
    """Generated answers: greedy, or num_samples seeded samples per row (avg@k, pass@k, maj@k)."""

    dataset: DatasetConfig
    gen: GenConfig
    model: ModelConfig

    @property
    def convention(self) -> str:
        return self.gen.extractor.value

    @property
    def chat(self) -> bool:
        return self.model.chat_template if self.gen.chat_template is None else self.gen.chat_template

    def _requests(
        self, sample: Sample, prompt: str | None, messages: tuple[Message, ...] | None
    ) -> list[GenerationRequest]:
        gen, model = self.gen, self.model
        kwargs = dict(model.chat_template_kwargs) if messages and model.chat_template_kwargs else None
        common: dict[str, Any] = {
            "stop": tuple(gen.stop),
            "max_new_tokens": gen.max_out_len or model.max_out_len,
            "chat_template_kwargs": kwargs,
        }
        n = max(1, gen.num_samples)
        if n == 1:
            return [GenerationRequest(prompt, messages, seed=model.seed, **common)]
        # n samples per row, each seeded by (model seed, row id, sample number): not by batch or shard
        return [
            GenerationRequest(
                prompt,
                messages,
                temperature=gen.temperature,
                top_p=gen.top_p,
                top_k=gen.top_k,
                seed=zlib.crc32(f"{model.seed}:{sample.id}:{j}".encode()),
                **common,
            )
            for j in range(n)
        ]

    def _split(self, backend: Backend, texts: Sequence[str]) -> tuple[tuple[Split, ...] | None, list[int] | None]:
        """model.reasoning.strip: each generation's reasoning and answer, and their token counts."""
        r = self.model.reasoning
        if not r.strip:
            return None, None
        splits = tuple(reasoning.split(t, r.start, r.end) for t in texts)
        counts = backend.count_tokens([s.reasoning or "" for s in splits] + [s.answer for s in splits])
        return splits, counts

    @property
    def kept_fields(self) -> list[str]:
        """Sample fields copied into predictions: the dataset's, and those its judge reads."""
        judge = self.dataset.judge
        wanted = [*self.gen.keep_fields, self.gen.turns_field, judge.reference_field, judge.baseline_field]
        return list(dict.fromkeys(f for f in wanted if f))

    def predict(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], shots: Sequence[Sequence[Sample]]
    ) -> list[Prediction]:
        gen, dataset = self.gen, self.dataset
        system = gen.system_prompt if gen.system_prompt is not None else self.model.system_prompt
        if gen.turns_field:
            return self._predict_turns(backend, rows, system)
        pairs = [(s, list(shot)) for (_, s), shot in zip(rows, shots, strict=True)]
        chats: list[tuple[Message, ...] | None] = [None] * len(rows)
        if self.chat:
            chats = [prompts.gen_messages(dataset, s, sh, system, gen.fewshot_as_multiturn) for s, sh in pairs]
            per_row = [self._requests(s, None, m) for (s, _), m in zip(pairs, chats, strict=True)]
        else:
            per_row = [self._requests(s, prompts.gen_text(dataset, s, sh, system), None) for s, sh in pairs]
        flat = backend.generate([r for rs in per_row for r in rs])
        out: list[Prediction] = []
        start = 0
        for (idx, s), messages, requests in zip(rows, chats, per_row, strict=True):
            responses = flat[start : start + len(requests)]
            start += len(requests)
            usage = [r.usage for r in responses if r.usage is not None]
            splits, counts = self._split(backend, [r.text for r in responses])
            k = len(responses)
            out.append(
                GenPrediction(
                    idx=idx,
                    id=s.id,
                    gold=s.gold,
                    prompt=requests[0].text,
                    generations=tuple(r.text for r in responses),
                    finish_reasons=tuple(r.finish_reason for r in responses),
                    n_prompt_tokens=responses[0].n_prompt_tokens,
                    n_new_tokens=sum(r.n_new_tokens for r in responses),
                    options=tuple(s.fields[f] for f in gen.option_fields),
                    requests=tuple(usage) if len(usage) == len(responses) else None,
                    answers=tuple(s.fields[gen.answers_field]) if gen.answers_field else None,
                    fields={f: s.fields[f] for f in self.kept_fields} if self.kept_fields else None,
                    group=_group(self.dataset, s),
                    messages=messages,
                    splits=splits,
                    reasoning_tokens=tuple(counts[:k]) if counts is not None else None,
                    answer_tokens=tuple(counts[k:]) if counts is not None else None,
                    truncated=max(r.truncated for r in responses),
                )
            )
        return out

    def _predict_turns(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], system: str | None
    ) -> list[Prediction]:
        """Multi-turn (MT-Bench): every row's first turn in one batch, then every row's second turn after its own
        first answer, and so on. Greedy, one sample per row."""
        gen = self.gen
        assert gen.turns_field is not None
        turns = [[gen.template.format(**s.fields, turn=t) for t in s.fields[gen.turns_field]] for _, s in rows]
        history: list[list[Message]] = [[Message("system", system)] if system else [] for _ in rows]
        responses: list[list[GenerationResponse]] = [[] for _ in rows]
        asked: list[tuple[Message, ...]] = [() for _ in rows]
        for t in range(max((len(x) for x in turns), default=0)):
            live = [i for i, x in enumerate(turns) if t < len(x)]
            for i in live:
                history[i].append(Message("user", turns[i][t]))
                asked[i] = tuple(history[i])
            requests = [self._requests(rows[i][1], None, asked[i])[0] for i in live]
            for i, r in zip(live, backend.generate(requests), strict=True):
                responses[i].append(r)
                history[i].append(Message("assistant", r.text))
        strip = self.model.reasoning
        out: list[Prediction] = []
        for (idx, s), said, messages, rs in zip(rows, turns, asked, responses, strict=True):
            answers = tuple(
                reasoning.split(r.text, strip.start, strip.end).answer if strip.strip else r.text for r in rs
            )
            usage = [r.usage for r in rs if r.usage is not None]
            out.append(
                GenPrediction(
                    idx=idx,
                    id=s.id,
                    gold=s.gold,
                    prompt=said[0],
                    generations=(rs[-1].text,),
                    finish_reasons=tuple(r.finish_reason for r in rs),
                    n_prompt_tokens=rs[-1].n_prompt_tokens,
                    n_new_tokens=sum(r.n_new_tokens for r in rs),
                    requests=tuple(usage) if len(usage) == len(rs) else None,
                    answers=tuple(s.fields[gen.answers_field]) if gen.answers_field else None,
                    fields={f: s.fields[f] for f in self.kept_fields},
                    group=_group(self.dataset, s),
                    messages=messages,
                    turns=answers,
                    truncated=max((r.truncated for r in rs), default=0),
                )
            )
        return out

    def judge(self, rows: Sequence[Prediction]) -> tuple[judges.Judge, list[Verdict]]:
        judge = judges.for_dataset(self.dataset, rows)
        return judge, sampling.judge_samples(judge, [r for r in rows if isinstance(r, GenPrediction)])


def for_dataset(dataset: DatasetConfig, model: ModelConfig) -> Task:
    """The task a dataset config describes (the one place its mode becomes an object)."""
    if dataset.mode is DatasetMode.ppl:
        assert dataset.ppl is not None  # validate.check
        return LoglikelihoodTask(dataset, dataset.ppl, getattr(model, "max_seq_len", None))
    assert dataset.gen is not None
    return GenerationTask(dataset, dataset.gen, model)


def metric_names(dataset: DatasetConfig, judge: judges.Judge) -> tuple[Metric, ...]:
    """dataset.ppl.metrics when given, else the judge's defaults."""
    if dataset.ppl is not None and dataset.mode is DatasetMode.ppl and dataset.ppl.metrics:
        return tuple(dataset.ppl.metrics)
    return judge.default_metrics


def score(dataset: DatasetConfig, judge: judges.Judge, verdicts: Sequence[Verdict]) -> dict[str, float]:
    """The judge's metrics; with num_samples = k > 1, avg@k, pass@k and maj@k instead."""
    gen = dataset.gen if dataset.mode is DatasetMode.gen else None
    if gen is not None and gen.num_samples > 1:
        return sampling.metrics(verdicts, gen.num_samples, gen.pass_at_k)
    return metrics.compute(metric_names(dataset, judge), verdicts)


def per_row(
    dataset: DatasetConfig, judge: judges.Judge, ids: Sequence[str], verdicts: Sequence[Verdict]
) -> dict[str, dict[str, float]]:
    """Each row's value behind every metric of `score` that is a plain mean over rows (row id -> value); none
    with num_samples > 1 (pass@k and avg@k are means of per-row estimates, kept out of paired tests) or when
    ids repeat (pairing by id would test fewer rows than were scored)."""
    gen = dataset.gen if dataset.mode is DatasetMode.gen else None
    if (gen is not None and gen.num_samples > 1) or len(set(ids)) != len(ids):
        return {}
    values = metrics.per_row(metric_names(dataset, judge), verdicts)
    return {name: dict(zip(ids, rows, strict=True)) for name, rows in values.items()}
