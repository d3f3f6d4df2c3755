"""Samples -> requests -> backend -> predictions, for each kind of task; and the judge and metrics of each.

A task is chosen once from the dataset config (`for_dataset`): multiple choice or a single continuation by
log-likelihood (dataset.mode=ppl), or generation (dataset.mode=gen). The infer stage only calls `predict`,
the eval stage `judge` and `metrics`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hydra_eval import judges, metrics, prompts
from hydra_eval.backends import Backend
from hydra_eval.records import (
    GenerationRequest,
    GenPrediction,
    LoglikelihoodRequest,
    Message,
    PplPrediction,
    Prediction,
    Sample,
    Verdict,
)
from hydra_eval.schema import DatasetConfig, DatasetMode, GenConfig, Metric, ModelConfig, PplConfig


class Task(Protocol):
    @property
    def convention(self) -> str:
        """How the numbers are made, for the results file: the ppl convention, or the extractor."""
        ...

    def predict(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], prefixes: Sequence[str]
    ) -> list[Prediction]: ...

    def judge(self, rows: Sequence[Prediction]) -> tuple[judges.Judge, list[Verdict]]: ...


def _group(dataset: DatasetConfig, sample: Sample) -> str | None:
    return str(sample.fields[dataset.group_metrics_by]) if dataset.group_metrics_by else None


@dataclass(frozen=True)
class LoglikelihoodTask:
    """Candidates scored by log-likelihood: multiple choice, or one continuation (dataset.ppl.task)."""

    dataset: DatasetConfig
    ppl: PplConfig

    @property
    def convention(self) -> str:
        return self.ppl.convention.value

    def predict(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], prefixes: Sequence[str]
    ) -> list[Prediction]:
        pairs_of = [prompts.ppl_candidates(self.ppl, s, p) for (_, s), p in zip(rows, prefixes, strict=True)]
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
    """Generated answers: greedy, or num_samples seeded samples per row (pass@k)."""

    dataset: DatasetConfig
    gen: GenConfig
    model: ModelConfig

    @property
    def convention(self) -> str:
        return self.gen.extractor.value

    def _requests(self, sample: Sample, prompt: str) -> list[GenerationRequest]:
        gen, model = self.gen, self.model
        chat = model.chat_template if gen.chat_template is None else gen.chat_template
        prompt_text = None if chat else prompt
        messages = (Message("user", prompt),) if chat else None
        stop, max_new = tuple(gen.stop), gen.max_out_len or model.max_out_len
        n = max(1, gen.num_samples)
        if n == 1:
            return [GenerationRequest(prompt_text, messages, stop, max_new, seed=model.seed)]
        # n samples per row, each seeded by (row, sample number)
        return [
            GenerationRequest(
                prompt_text,
                messages,
                stop,
                max_new,
                temperature=gen.temperature,
                seed=zlib.crc32(f"{model.seed}:{sample.id}:{j}".encode()),
            )
            for j in range(n)
        ]

    def predict(
        self, backend: Backend, rows: Sequence[tuple[int, Sample]], prefixes: Sequence[str]
    ) -> list[Prediction]:
        gen = self.gen
        texts = [p + prompts.gen_prompt(gen, s) for (_, s), p in zip(rows, prefixes, strict=True)]
        per_row = [self._requests(s, t) for (_, s), t in zip(rows, texts, strict=True)]
        flat = backend.generate([r for rs in per_row for r in rs])
        out: list[Prediction] = []
        start = 0
        for (idx, s), text, requests in zip(rows, texts, per_row, strict=True):
            responses = flat[start : start + len(requests)]
            start += len(requests)
            usage = [r.usage for r in responses if r.usage is not None]
            out.append(
                GenPrediction(
                    idx=idx,
                    id=s.id,
                    gold=s.gold,
                    prompt=text,
                    generations=tuple(r.text for r in responses),
                    finish_reasons=tuple(r.finish_reason for r in responses),
                    n_prompt_tokens=responses[0].n_prompt_tokens,
                    n_new_tokens=sum(r.n_new_tokens for r in responses),
                    options=tuple(s.fields[f] for f in gen.option_fields),
                    requests=tuple(usage) if len(usage) == len(responses) else None,
                    answers=tuple(s.fields[gen.answers_field]) if gen.answers_field else None,
                    fields={f: s.fields[f] for f in gen.keep_fields} if gen.keep_fields else None,
                    group=_group(self.dataset, s),
                )
            )
        return out

    def judge(self, rows: Sequence[Prediction]) -> tuple[judges.Judge, list[Verdict]]:
        judge = judges.for_dataset(self.dataset, rows)
        return judge, judge.judge(rows)


def for_dataset(dataset: DatasetConfig, model: ModelConfig) -> Task:
    """The task a dataset config describes (the one place its mode becomes an object)."""
    if dataset.mode is DatasetMode.ppl:
        assert dataset.ppl is not None  # validate.check
        return LoglikelihoodTask(dataset, dataset.ppl)
    assert dataset.gen is not None
    return GenerationTask(dataset, dataset.gen, model)


def metric_names(dataset: DatasetConfig, judge: judges.Judge) -> tuple[Metric, ...]:
    """dataset.ppl.metrics when given, else the judge's defaults."""
    if dataset.ppl is not None and dataset.mode is DatasetMode.ppl and dataset.ppl.metrics:
        return tuple(dataset.ppl.metrics)
    return judge.default_metrics


def score(dataset: DatasetConfig, judge: judges.Judge, verdicts: Sequence[Verdict]) -> dict[str, float]:
    if isinstance(judge, judges.Execute):
        from hydra_eval import execution

        return execution.metrics(verdicts, dataset)
    return metrics.compute(metric_names(dataset, judge), verdicts)
