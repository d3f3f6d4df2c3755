"""Prompt rendering and the dataset version hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from hydra_eval.config import plain
from hydra_eval.records import Message, Sample
from hydra_eval.schema import VERSION_SECTIONS, VERSIONED, DatasetConfig, GenConfig, PplConfig


def render(template: str, sample: Sample) -> str:
    return template.format(**sample.fields)


def ppl_candidates(ppl: PplConfig, sample: Sample, prefix: str = "") -> list[tuple[str, str]]:
    """(context, continuation) per candidate; the full text is their concatenation. `prefix` (description
    and few-shot examples) goes before every context."""
    if ppl.contexts_field:  # partial scoring: the candidates are contexts, the continuation is shared
        continuation = ppl.target_delimiter + render(ppl.context, sample)
        return [(prefix + c, continuation) for c in sample.fields[ppl.contexts_field]]
    context = prefix + render(ppl.context, sample)
    return [(context, ppl.target_delimiter + choice) for choice in choice_texts(ppl, sample)]


def choice_texts(ppl: PplConfig, sample: Sample) -> list[str]:
    """The bare choices (no delimiter): lm-eval's acc_norm divides by their length in characters."""
    if ppl.contexts_field:
        return list(sample.fields[ppl.contexts_field])
    if ppl.choices_field:
        return [str(c) for c in sample.fields[ppl.choices_field]]
    return [render(choice, sample) for choice in ppl.choices]


def shot_text(dataset: DatasetConfig, shot: Sample) -> str:
    """One solved example, as lm-eval renders it: the question's context, the delimiter, the gold answer."""
    if dataset.gen is not None:
        return render(dataset.gen.template, shot) + render(dataset.gen.shot_answer, shot)
    assert dataset.ppl is not None  # validate.check: the section of the dataset's mode exists
    context, continuation = ppl_candidates(dataset.ppl, shot)[shot.gold]
    return context + continuation


def prefix(dataset: DatasetConfig, sample: Sample, shots: list[Sample]) -> str:
    """Description, then the examples, each followed by the few-shot delimiter, then the few-shot suffix."""
    head = render(dataset.description, sample) if dataset.description else ""
    return head + examples(dataset, shots) + dataset.fewshot.suffix


def examples(dataset: DatasetConfig, shots: Sequence[Sample]) -> str:
    """The solved examples, each followed by the few-shot delimiter."""
    return "".join(shot_text(dataset, s) + dataset.fewshot.delimiter for s in shots)


def gen_prompt(gen: GenConfig, sample: Sample) -> str:
    return render(gen.template, sample)


def system_text(dataset: DatasetConfig, sample: Sample, system: str | None) -> str:
    """lm-eval's system prompt: the system instruction and the task description, joined by the few-shot
    delimiter unless either has whitespace at the join (lm-eval's maybe_delimit); either alone when the other
    is absent."""
    description = render(dataset.description, sample) if dataset.description else ""
    if not system or not description:
        return system or description
    glued = system[-1].isspace() or description[0].isspace()
    return system + ("" if glued else dataset.fewshot.delimiter) + description


def gen_text(dataset: DatasetConfig, sample: Sample, shots: Sequence[Sample], system: str | None) -> str:
    """A raw (no chat template) generation prompt as lm-eval builds it: system prompt, the examples each
    followed by the few-shot delimiter, the question."""
    assert dataset.gen is not None
    body = examples(dataset, shots) + dataset.fewshot.suffix + gen_prompt(dataset.gen, sample)
    return system_text(dataset, sample, system) + body


def gen_messages(
    dataset: DatasetConfig, sample: Sample, shots: Sequence[Sample], system: str | None, multiturn: bool
) -> tuple[Message, ...]:
    """Chat messages as lm-eval's apply_chat_template builds them: a system message (system prompt and
    description), then the examples as user/assistant turns (fewshot_as_multiturn) or inlined in the one
    user turn before the question."""
    gen = dataset.gen
    assert gen is not None
    head = system_text(dataset, sample, system)
    messages = [Message("system", head)] if head else []
    question = gen_prompt(gen, sample)
    if multiturn:
        for shot in shots:
            messages.append(Message("user", gen_prompt(gen, shot)))
            messages.append(Message("assistant", render(gen.shot_answer, shot).lstrip()))
        messages.append(Message("user", question))
    else:
        messages.append(Message("user", examples(dataset, shots) + dataset.fewshot.suffix + question))
    return tuple(messages)


def inference_settings(dataset: DatasetConfig) -> dict[str, Any]:
    """What decides a dataset's prompts and how they are scored, the input of its version hash: exactly the
    fields schema.VERSIONED names, defaults included; a section (fewshot, ppl, gen) field by field."""
    return _versioned(dataset, DatasetConfig)


def _versioned(node: Any, cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in VERSIONED[cls]:
        value = getattr(node, name)
        section = VERSION_SECTIONS.get(name) if cls is DatasetConfig else None
        out[name] = _versioned(value, section) if section is not None and value is not None else plain(value)
    return out


def version(dataset: DatasetConfig) -> str:
    """First 6 hex chars of sha256 over the sorted-key JSON of the inference settings (OpenCompass style)."""
    blob = json.dumps(inference_settings(dataset), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:6]
