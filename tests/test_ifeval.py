"""IFEval: Google's instruction checkers run as lm-eval's ifeval task runs them (strict, loose, both levels)."""

from __future__ import annotations

import pytest

from hydra_eval import judges, tasks
from hydra_eval.config import typed
from hydra_eval.data.loader import load_samples
from hydra_eval.errors import UserError
from hydra_eval.ifeval_check import check, loose_variants, sentence_tokenizer_missing
from hydra_eval.records import GenPrediction


def test_strict_and_loose_per_instruction():
    ids, kwargs = ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}]
    text = "this whole answer is written in plain english and in lower case letters only"
    assert check(text.replace("plain", "plain,"), ids, kwargs, "p").strict == (False, True)
    assert check(text, ids, kwargs, "p").strict == (True, True)
    # loose also tries the response without its first line (a preamble such as "Sure, Here:")
    checked = check("Sure, Here:\n" + text, ids, kwargs, "p")
    assert checked.strict == (False, False) and checked.loose == (True, True)
    assert check("", ids, kwargs, "p").strict == (False, False)  # an empty response follows nothing


def test_empty_arguments_are_dropped_as_lm_eval_does():
    # the hub layout fills every argument slot; lm-eval keeps only the truthy ones
    kwargs = [{"num_words": 3, "relation": "at least", "num_sentences": None, "keywords": None}]
    assert check("one two three", ["length_constraints:number_words"], kwargs, "p").strict == (True,)


def test_loose_variants_are_googles_eight():
    variants = loose_variants("*a*\nb\nc")
    assert len(variants) == 8 and variants[:2] == ["*a*\nb\nc", "a\nb\nc"] and "b" in variants


LOWER = "this answer is in english and in lower case"


def test_ifeval_rows_and_the_four_lmeval_metrics(compose_cfg):
    cfg = typed(compose_cfg("dataset=ifeval"))
    samples = load_samples(cfg.dataset).samples
    assert len(samples) == 541 and sum(len(s.fields["instruction_id_list"]) for s in samples) == 834
    rows = [
        GenPrediction(0, "0", 0, "Answer in lowercase.", (LOWER,), ("eos",), 0, 0,
                      fields={"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"],
                              "kwargs": [{}, {}]}),
        GenPrediction(1, "1", 0, "No commas.", ("Yes, NO",), ("eos",), 0, 0,
                      fields={"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}),
    ]  # fmt: skip
    judge = judges.for_dataset(cfg.dataset, rows)
    metrics = tasks.score(cfg.dataset, judge, judge.judge(rows))
    assert metrics["prompt_level_strict_acc"] == 50.0
    assert metrics["inst_level_strict_acc"] == pytest.approx(100 * 2 / 3)
    assert {"prompt_level_loose_acc", "inst_level_loose_acc"} <= set(metrics)


@pytest.mark.skipif(sentence_tokenizer_missing() is None, reason="NLTK's punkt is installed here")
def test_without_punkt_prompts_that_need_it_stop_the_job_before_generation(compose_cfg):
    with pytest.raises(
        UserError, match=r"1 selected ifeval prompts have instructions .* \(python -m nltk.downloader"
    ):
        judges.preflight(typed(compose_cfg("dataset=ifeval", "dataset.limit=30")).dataset)
    judges.preflight(typed(compose_cfg("dataset=ifeval", "dataset.limit=5")).dataset)  # none of those needs it
