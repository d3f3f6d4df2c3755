"""The benchmark datasets of the standard suite: original files, hub layouts, label quirks, few-shot, and
prompts as lm-eval renders them (scripts/lmeval_parity.py compares whole runs with lm-eval itself)."""

from __future__ import annotations

import pytest

from hydra_eval import fewshot, prompts
from hydra_eval.data.loader import load_samples
from hydra_eval.errors import UserError


@pytest.mark.parametrize(
    ("dataset", "rows", "golds"),
    [
        ("arc_easy", 2376, {0, 1, 2, 3, 4}),
        ("arc_challenge", 1172, {0, 1, 2, 3}),
        ("boolq", 3270, {0, 1}),
        ("winogrande", 1267, {0, 1}),
        ("lambada", 5153, {0}),
        ("mmlu", 14042, {0, 1, 2, 3}),
    ],
)
def test_full_local_files_are_read(compose_cfg, dataset, rows, golds):
    data = load_samples(compose_cfg(f"dataset={dataset}").dataset)
    assert len(data.samples) == rows
    assert {s.gold for s in data.samples} == golds
    assert data.fingerprint and all(len(v) == 64 for v in data.fingerprint.values())


def test_arc_numeric_labels_are_positions(compose_cfg):
    data = load_samples(compose_cfg("dataset=arc_easy").dataset)
    numeric = [s for s in data.samples if s.fields["labels"][0] == "1"]
    assert numeric and all(s.fields["labels"][s.gold].isdigit() for s in numeric)
    assert {len(s.fields["choices"]) for s in data.samples} == {3, 4, 5}


def test_hub_layouts_give_the_same_samples():
    from hydra_eval.data import arc, boolq, mmlu, winogrande

    ai2 = {
        "id": "x",
        "question": {"stem": "Q?", "choices": [{"text": "a", "label": "1"}, {"text": "b", "label": "2"}]},
        "answerKey": "2",
    }
    hub = {"id": "x", "question": "Q?", "choices": {"text": ["a", "b"], "label": ["1", "2"]}, "answerKey": "2"}
    assert arc.record_to_sample(ai2, 0) == arc.record_to_sample(hub, 0)
    assert boolq.record_to_sample({"question": "q", "passage": "p", "label": "true"}, 0).gold == 1
    assert boolq.record_to_sample({"question": "q", "passage": "p", "label": 0}, 0).gold == 0
    mosaic = {
        "context_options": ["The cat sat because Tom", "The cat sat because Ann"],
        "continuation": "was tired.",
        "gold": 1,
    }
    original = {"sentence": "The cat sat because _ was tired.", "option1": "Tom", "option2": "Ann", "answer": "2"}
    assert winogrande.record_to_sample(mosaic, 0) == winogrande.record_to_sample(original, 0)
    local = {"question": "Q ", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": "C"}
    assert mmlu.record_to_sample(local, 3) == mmlu.record_to_sample({**local, "answer": 2}, 3)
    with pytest.raises(UserError, match="arc row 1: malformed row"):
        arc.record_to_sample({**hub, "answerKey": "E"}, 0)


def test_winogrande_scores_only_the_shared_continuation(compose_cfg):
    cfg = compose_cfg("dataset=winogrande", "dataset.limit=1")
    [sample] = load_samples(cfg.dataset).samples
    pairs = prompts.ppl_candidates(cfg.dataset.ppl, sample)
    assert [c for c, _ in pairs] == sample.fields["contexts"]
    assert {x for _, x in pairs} == {" " + sample.fields["continuation"]}


def test_lambada_splits_off_the_last_word(compose_cfg):
    cfg = compose_cfg("dataset=lambada", "dataset.limit=1")
    [sample] = load_samples(cfg.dataset).samples
    [(context, continuation)] = prompts.ppl_candidates(cfg.dataset.ppl, sample)
    text = (context + continuation).split(" ")
    assert continuation == " " + text[-1] and " " not in continuation.strip()


def test_mmlu_five_shot_prompt_is_lmevals(compose_cfg):
    cfg = compose_cfg("dataset=mmlu", "dataset.limit=101")
    data = load_samples(cfg.dataset)
    sample = data.samples[100]  # the first anatomy question
    shots = fewshot.select(cfg.dataset.fewshot, sample, data.fewshot, data.fewshot_same_split)
    assert len(shots) == 5 and {s.fields["subject"] for s in shots} == {"anatomy"}
    context, continuation = prompts.ppl_candidates(
        cfg.dataset.ppl, sample, prompts.prefix(cfg.dataset, sample, shots)
    )[0]
    assert context.startswith(
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "What is the embryological origin of the hyoid bone?\nA. The first pharyngeal arch\n"
        "B. The first and second pharyngeal arches\nC. The second pharyngeal arch\n"
        "D. The second and third pharyngeal arches\nAnswer: D\n\n"
    )
    assert context.count("\nAnswer:") == 6 and context.endswith("\nD. " + sample.fields["choice3"] + "\nAnswer:")
    assert continuation == " A"


def test_random_fewshot_is_seeded_per_question_and_never_the_question(compose_cfg):
    cfg = compose_cfg("dataset=piqa", "dataset.limit=30", "dataset.fewshot.k=3", "dataset.fewshot.sampler=random")
    data = load_samples(cfg.dataset)
    assert data.fewshot_same_split
    picks = [fewshot.select(cfg.dataset.fewshot, s, data.fewshot, True) for s in data.samples]
    assert all(s not in shots and len(shots) == 3 for s, shots in zip(data.samples, picks, strict=True))
    assert picks == [fewshot.select(cfg.dataset.fewshot, s, data.fewshot, True) for s in data.samples]
    assert len({tuple(x.id for x in p) for p in picks}) > 1


def test_fewshot_settings_change_the_version(compose_cfg):
    # the versions of every shipped dataset are pinned in tests/test_versions.py (issue 30 step 2: piqa's
    # was 361c77 and siqa's 86c8ed while the hash left default fields out)
    piqa = prompts.version(compose_cfg("dataset=piqa").dataset)
    assert piqa == "b05a95"
    assert prompts.version(compose_cfg("dataset=piqa", "dataset.fewshot.k=2").dataset) != piqa


def test_triviaqa_prompt_has_one_question_mark_from_either_layout(compose_cfg):
    from hydra_eval.data import triviaqa

    cfg = compose_cfg("dataset=triviaqa")
    data = load_samples(cfg.dataset)
    assert len(data.samples) == 3000
    rendered = [prompts.gen_prompt(cfg.dataset.gen, s) for s in data.samples]
    assert not [p for p in rendered if "??" in p]
    mosaic = {"context": "Question: Who wrote Ulysses?\nAnswer:", "answer": "James Joyce", "aliases": ["Joyce"]}
    hub = {"question": "Who wrote Ulysses?", "answer": {"value": "James Joyce", "aliases": ["Joyce"]}}
    assert triviaqa.record_to_sample(mosaic, 0).fields == triviaqa.record_to_sample(hub, 0).fields
