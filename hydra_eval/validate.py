"""Values a config can hold but a job cannot use: each is one clear error line before anything heavy runs.

(Closed sets of values, such as a convention or a mode, are the schema's job; these are ranges and the
schemas every config extends.)
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hydra_eval.errors import UserError
from hydra_eval.schema import Config, DatasetMode, Extractor

GROUPS = ("model", "dataset", "mode", "paths", "tracking")
NEEDS_ANSWERS = (Extractor.regex, Extractor.math, Extractor.exact_match, Extractor.gsm8k)


def _schema_selected(cfg: DictConfig | Config) -> None:
    if not isinstance(cfg, DictConfig):
        return  # a dataclass instance exists only when every required field was given
    for group in GROUPS:
        node = OmegaConf.select(cfg, group)
        # `"name" in node` is False for a ??? value: ask is_missing, which raises for an absent key
        if node is not None and _missing(node, "name"):
            raise UserError(
                f"{group}=base_* is a schema that {group} configs extend, not a {group} of its own: "
                f"pick one of the {group} configs that `hydra-eval --help` lists (conf/{group}/*.yaml)"
            )


def _missing(node: Any, key: str) -> bool:
    try:
        return OmegaConf.is_missing(node, key)
    except Exception:  # no such key in this node
        return False


def _at_least(value: Any, low: int, name: str, none_means: str | None = None) -> None:
    if value is None and none_means is not None:
        return
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < low:
        also = f" (or null for {none_means})" if none_means else ""
        raise UserError(f"{name} must be a whole number of at least {low}{also}, not {value!r}")


def check(cfg: DictConfig | Config) -> None:
    """Raise a UserError for the first value that a job cannot use."""
    _schema_selected(cfg)
    dataset = cfg.dataset
    section = {DatasetMode.ppl: "ppl", DatasetMode.gen: "gen", DatasetMode.lmeval: "lmeval"}[dataset.mode]
    if getattr(dataset, section) is None:
        raise UserError(
            f"dataset {dataset.name} has mode={dataset.mode.value} but no `{section}` section: "
            f"give dataset.{section}.* (conf/dataset/*.yaml shows both kinds)"
        )
    _at_least(dataset.limit, 1, "dataset.limit", none_means="every row")
    _at_least(dataset.fewshot.k, 0, "dataset.fewshot.k")
    _at_least(cfg.max_partition_size, 1, "max_partition_size", none_means="no sharding")
    _at_least(cfg.checkpoint_every, 1, "checkpoint_every")
    _at_least(cfg.retry, 0, "retry")
    if dataset.fewshot.drop_to_fit and dataset.mode is not DatasetMode.ppl:
        raise UserError("dataset.fewshot.drop_to_fit is OpenCompass's ppl rule: only for mode=ppl datasets")
    if dataset.group_average and not dataset.group_metrics_by:
        raise UserError("dataset.group_average averages the groups of dataset.group_metrics_by: set that too")
    if dataset.gen is not None:
        _check_gen(dataset.gen)
        if dataset.gen.turns_field:
            chat = cfg.model.chat_template if dataset.gen.chat_template is None else dataset.gen.chat_template
            if not chat:
                raise UserError(
                    f"dataset {dataset.name} is multi-turn (dataset.gen.turns_field): it needs chat messages, but "
                    f"model {cfg.model.name} has chat_template=false"
                )


def _check_gen(gen: Any) -> None:
    _at_least(gen.num_samples, 1, "dataset.gen.num_samples")
    _at_least(gen.top_k, 0, "dataset.gen.top_k")
    if not 0 < gen.top_p <= 1:
        raise UserError(f"dataset.gen.top_p must be in (0, 1], not {gen.top_p!r}")
    if gen.num_samples > 1 and not gen.temperature > 0:
        raise UserError(
            f"dataset.gen.num_samples={gen.num_samples} samples at temperature {gen.temperature!r} would all be "
            "the greedy answer: set dataset.gen.temperature above 0 (e.g. 0.6)"
        )
    if gen.turns_field and gen.num_samples > 1:
        raise UserError("dataset.gen.turns_field (multi-turn) generates one greedy answer per turn: num_samples=1")
    if gen.extractor in NEEDS_ANSWERS and not gen.answers_field:
        raise UserError(
            f"dataset.gen.extractor={gen.extractor.value} needs dataset.gen.answers_field (the accepted answers)"
        )
    if gen.extractor is Extractor.regex:
        if not gen.answer_regex:
            raise UserError("dataset.gen.extractor=regex needs dataset.gen.answer_regex (the answer's pattern)")
        try:
            re.compile(gen.answer_regex)
        except re.error as e:
            raise UserError(f"dataset.gen.answer_regex is not a valid regular expression: {e}") from None
