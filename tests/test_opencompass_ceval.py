"""dataset=ceval_oc / cmmlu_oc: OpenCompass 0.5.4's ceval_ppl and cmmlu_ppl conventions. The prompts must be
OpenCompass's own, character for character (tests/golden/opencompass_ceval_cmmlu_prompts.jsonl was written by
its retriever and template: scripts/opencompass_ceval_cmmlu.py --render), including its field-by-field
placeholder filling (LaTeX such as \\bar{A} in a question) and CSV rows with line breaks inside a field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydra_eval.backends.fake import FakeBackend, FakeModelConfig
from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run
from hydra_eval.records import Sample

GOLDEN = Path(__file__).parent / "golden" / "opencompass_ceval_cmmlu_prompts.jsonl"


@pytest.mark.parametrize("dataset", ["ceval_oc", "cmmlu_oc"])
def test_prompts_are_opencompass_own(compose_cfg, tmp_path, dataset):
    golden = [
        g for g in map(json.loads, GOLDEN.read_text(encoding="utf-8").splitlines()) if g["dataset"] == dataset
    ]
    subjects = sorted({g["subject"] for g in golden})
    cfg = compose_cfg("model=fake", f"dataset={dataset}", f"dataset.subsets=[{','.join(subjects)}]")
    assert run(cfg, print_summary=False) is not None
    rows = read_jsonl(tmp_path / "out" / "predictions" / "fake" / f"{dataset}.jsonl")
    by_subject: dict[str, list[dict]] = {}
    for r in rows:
        by_subject.setdefault(r["id"].split("/")[0], []).append(r)
    for g in golden:
        row = by_subject[g["subject"]][g["i"]]
        texts = [row["context"] + c for c in row["continuations"]]
        assert texts == [g["prompts"][label] for label in "ABCD"], (g["subject"], g["i"])
        assert "ABCD"[row["gold"]] == g["gold"]


def test_examples_are_dropped_from_the_last_until_the_text_fits(compose_cfg):
    """OpenCompass's PPLInferencer: while a label's text has more tokens than max_seq_len, drop the last
    example; the next labels start from what is left."""
    from hydra_eval.config import typed
    from hydra_eval.tasks import LoglikelihoodTask

    dataset = typed(compose_cfg("model=fake", "dataset=ceval_oc")).dataset
    assert dataset.ppl is not None
    shots = [Sample(id=f"s{i}", fields=_fields(" ".join(["w"] * 100)), gold=0) for i in range(5)]
    long_choice = dataset.ppl.choices[:3] + [" ".join(["x"] * 150)]  # the last label's text is longer
    ppl = type(dataset.ppl)(**{**dataset.ppl.__dict__, "choices": long_choice})
    question = Sample(id="q", fields=_fields("what"), gold=1)
    backend = FakeBackend(FakeModelConfig(name="fake"))  # its tokens are words
    pairs = LoglikelihoodTask(dataset, ppl, max_seq_len=420)._pairs(backend, question, shots)
    words = [len((c + x).split()) for c, x in pairs]
    n_shots = [(c + x).count(" w\n") for c, x in pairs]  # each example's question ends " w" then its options
    assert all(n <= 420 for n in words)
    assert n_shots[0] == n_shots[1] == n_shots[2] > n_shots[3]  # labels A-C kept more; D dropped one more
    unlimited = LoglikelihoodTask(dataset, ppl, max_seq_len=None)._pairs(backend, question, shots)
    assert all((c + x).count(" w\n") == 5 for c, x in unlimited)


def _fields(question: str) -> dict[str, str]:
    return {
        "question": question,
        "A": "a",
        "B": "b",
        "C": "c",
        "D": "d",
        "subject": "logic",
        "subject_zh": "逻辑学",
    }


def test_the_total_is_the_plain_mean_of_the_subjects(compose_cfg):
    cfg = compose_cfg("model=fake", "dataset=ceval_oc", "dataset.subsets=[middle_school_geography,logic]")
    results = run(cfg, print_summary=False)
    assert results is not None
    m = results.metrics
    subjects = [m["accuracy/logic"], m["accuracy/middle_school_geography"]]
    assert m["accuracy/naive_average"] == pytest.approx(sum(subjects) / 2)
    assert results.n == 12 + 22  # sizes differ: the pooled accuracy weighs logic more


def test_tokens_are_counted_as_the_text_is_scored_with_special_tokens(compose_cfg):
    """OpenCompass counts a prompt's tokens with the tokenizer's special tokens (a BOS counts); so does the
    drop rule, through the backend, or a text one token short of the limit would keep an example it drops."""
    from hydra_eval.config import typed
    from hydra_eval.tasks import LoglikelihoodTask

    class WithBos(FakeBackend):
        def count_tokens(self, texts, special=False):  # type: ignore[no-untyped-def]
            return [len(t.split()) + int(special) for t in texts]

    dataset = typed(compose_cfg("model=fake", "dataset=ceval_oc")).dataset
    assert dataset.ppl is not None
    shots = [Sample(id=f"s{i}", fields=_fields("shot zz"), gold=0) for i in range(2)]
    question = Sample(id="q", fields=_fields("what"), gold=1)
    backend = WithBos(FakeModelConfig(name="fake"))
    context, continuation = LoglikelihoodTask(dataset, dataset.ppl, None)._pairs(backend, question, shots)[0]
    words = len((context + continuation).split())  # the whole text without the BOS: exactly at the limit
    pairs = LoglikelihoodTask(dataset, dataset.ppl, max_seq_len=words)._pairs(backend, question, shots)
    assert all((c + x).count(" zz\n") == 1 for c, x in pairs)  # with its BOS it is one over: an example goes


def test_bad_settings_and_rows_are_one_line(compose_cfg, tmp_path):
    from hydra_eval.data.ceval_oc import record_to_sample
    from hydra_eval.errors import UserError

    with pytest.raises(UserError, match="drop_to_fit is OpenCompass's ppl rule"):
        run(compose_cfg("model=fake", "dataset=gsm8k", "dataset.fewshot.drop_to_fit=true"), print_summary=False)
    with pytest.raises(UserError, match="group_average averages the groups"):
        run(compose_cfg("model=fake", "dataset=piqa", "dataset.group_average=true"), print_summary=False)
    entry = {"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "AB"}
    with pytest.raises(UserError, match="'AB' is not one of A-D"):
        record_to_sample({"subject": "logic", "entry": entry}, 0)
    with pytest.raises(UserError, match="no data for dataset 'cmmlu_oc'"):
        run(compose_cfg("model=fake", "dataset=cmmlu_oc", f"paths.data_dir={tmp_path}"), print_summary=False)
