"""Prompt rendering and the dataset version hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import OmegaConf

from hydra_eval.records import Sample


def render(template: str, sample: Sample) -> str:
    return template.format(**sample.fields)


def ppl_candidates(ppl: Any, sample: Sample) -> list[tuple[str, str]]:
    """(context, continuation) per choice; the full text is their concatenation."""
    context = render(ppl.context, sample)
    return [(context, ppl.target_delimiter + render(choice, sample)) for choice in ppl.choices]


def choice_texts(ppl: Any, sample: Sample) -> list[str]:
    """The bare choices (no delimiter): lm-eval's acc_norm divides by their length in characters."""
    return [render(choice, sample) for choice in ppl.choices]


def gen_prompt(gen: Any, sample: Sample) -> str:
    return render(gen.template, sample)


def inference_settings(dataset: Any) -> dict[str, Any]:
    """What decides a dataset's prompts and how they are scored: the input of its version hash."""
    settings: dict[str, Any] = {"mode": dataset.mode}
    section = dataset.ppl if dataset.mode == "ppl" else dataset.gen
    settings[dataset.mode] = OmegaConf.to_container(section, resolve=True) if section is not None else None
    return settings


def version(dataset: Any) -> str:
    """First 6 hex chars of sha256 over the sorted-key JSON of the inference settings (OpenCompass style)."""
    blob = json.dumps(inference_settings(dataset), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:6]
