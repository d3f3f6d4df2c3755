"""Dataset versions change only on purpose (issue 30 step 2).

A version hashes exactly the fields `schema.VERSIONED` names, defaults included. Every field of the dataset's
prompt and scoring classes is decided (versioned or not), and every shipped dataset's version is pinned here:
adding a field, marking one, or editing a dataset's prompt fails a test until this list is edited with it.
Regenerate after a deliberate change with: python -m tests.test_versions
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hydra_eval import prompts
from hydra_eval.schema import UNVERSIONED, VERSION_SECTIONS, VERSIONED, DatasetConfig

DATASETS = Path(__file__).resolve().parents[1] / "hydra_eval" / "conf" / "dataset"

# dataset config -> its version (the mode=lmeval ones share one: lm-eval's own version is what they report)
VERSIONS = {
    "agieval": "cb35a3",
    "aime24": "450bdf",
    "aime25": "450bdf",
    "alpaca_eval": "bf88c1",
    "arc_challenge": "fad377",
    "arc_easy": "f73ea0",
    "arena_hard": "052d4a",
    "bbh": "7fa886",
    "boolq": "1f9d11",
    "ceval": "cb35a3",
    "ceval_oc": "cc32fa",
    "cmmlu": "cb35a3",
    "cmmlu_oc": "b28faa",
    "custom": "890431",
    "gsm8k": "62cdc2",
    "hellaswag": "ad9a8e",
    "humaneval": "eb0670",
    "ifeval": "797958",
    "lambada": "da1eff",
    "lmeval": "cb35a3",
    "math500": "1bd605",
    "math500_minerva": "a6436e",
    "mbpp": "ea17ab",
    "mmlu": "cfa21d",
    "mmlu_pro": "97f9f0",
    "mt_bench": "4e8594",
    "nq_open": "cb35a3",
    "piqa": "b05a95",
    "piqa_gen": "f6d85b",
    "piqa_lmeval": "f9f758",
    "race": "cb35a3",
    "siqa": "cfe19b",
    "triviaqa": "f927ea",
    "truthfulqa": "cb35a3",
    "winogrande": "b6a974",
}


def test_every_shipped_dataset_is_pinned():
    assert sorted(p.stem for p in DATASETS.glob("*.yaml")) == sorted(VERSIONS)


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_version_is_pinned(compose_cfg, name):
    got = prompts.version(compose_cfg(f"dataset={name}").dataset)
    assert got == VERSIONS[name], f"dataset={name}: version {got}, pinned {VERSIONS[name]} (a deliberate change?)"


@pytest.mark.parametrize("cls", list(VERSIONED), ids=lambda c: c.__name__)
def test_every_field_is_decided(cls):
    """A field of the prompt/scoring classes is either in the version or listed as not in it, once."""
    names = [f.name for f in dataclasses.fields(cls)]
    marked = [*VERSIONED[cls], *UNVERSIONED[cls]]
    assert sorted(marked) == sorted(names), f"{cls.__name__}: decide {sorted(set(names) - set(marked))}"
    assert len(set(marked)) == len(marked) and not set(VERSIONED[cls]) & set(UNVERSIONED[cls])


def test_sections_are_versioned_field_by_field():
    assert set(VERSION_SECTIONS) <= set(VERSIONED[DatasetConfig])
    assert set(VERSION_SECTIONS.values()) == set(VERSIONED) - {DatasetConfig}


def test_a_versioned_field_counts_at_its_default(compose_cfg):
    """The hash is not 'whatever differs from the defaults': a default value is hashed like any other."""
    ds = compose_cfg("dataset=gsm8k").dataset
    assert "top_k" in prompts.inference_settings(ds)["gen"]
    assert "length_warn_share" not in prompts.inference_settings(ds)["gen"]
    assert prompts.version(ds) != prompts.version(compose_cfg("dataset=gsm8k", "dataset.gen.top_k=5").dataset)


if __name__ == "__main__":  # print the table above for the current tree
    from hydra import compose, initialize_config_module

    from hydra_eval.config import setup

    setup()
    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        for path in sorted(DATASETS.glob("*.yaml")):
            cfg = compose(config_name="config", overrides=[f"dataset={path.stem}", "tracking=none"])
            print(f'    "{path.stem}": "{prompts.version(cfg.dataset)}",')
