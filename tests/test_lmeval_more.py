"""hydra_eval.data.lmeval_more: the data directory's raw files as the hub rows lm-eval 0.4.13's own tasks read.
Each set is written, lm-eval builds its task from the shadow YAML (its own TaskManager, as hydra_eval.lmeval does)
and the first requests are checked against the raw files: a wrong field name, type or split fails here."""

from __future__ import annotations

import bz2
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA_DIR

pytest.importorskip("lm_eval")  # the `lmeval` extra (make install has it)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every converter's files and task YAMLs in one include_path folder, and their one-line summaries."""
    from hydra_eval.data.lmeval_local import lmeval_tasks_dir
    from hydra_eval.data.lmeval_more import CONVERTERS

    out = tmp_path_factory.mktemp("lmeval_more")
    (out / "tasks").mkdir()
    summaries = {
        name: make(DATA_DIR, out / "data", out / "tasks", lmeval_tasks_dir()) for name, make in CONVERTERS.items()
    }
    return out / "tasks", summaries


@pytest.fixture(scope="module")
def manager(written: tuple[Path, dict[str, str]]) -> Any:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: a task still on the hub fails at once
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(written[0]))


def build(manager: Any, name: str, limit: int = 3) -> Any:
    """lm-eval's task `name`, its requests built for the first `limit` docs as simple_evaluate builds them."""
    task = manager.load([name])["tasks"][name]
    if task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(
        limit=limit,
        rank=0,
        world_size=1,
        apply_chat_template=False,
        fewshot_as_multiturn=False,
        chat_template=None,
        system_instruction=None,
    )
    return task


def requests(task: Any, doc_id: int) -> list[tuple[Any, ...]]:
    """The request arguments of one doc, in choice order."""
    return [tuple(i.args) for i in sorted(task.instances, key=lambda i: i.idx) if i.doc_id == doc_id]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_every_set_writes_its_rows_and_task_yamls(written):
    tasks, summaries = written
    assert summaries == {
        "arc": "arc: arc_easy test 2376, arc_easy validation 570, arc_challenge test 1172, "
        "arc_challenge validation 299 rows",
        "boolq": "boolq: 3270 rows",
        "piqa": "piqa: 1838 rows",
        "siqa": "social_iqa: 1954 rows",
        "hellaswag": "hellaswag: 10042 rows",
        "winogrande": "winogrande: 1267 rows",
        "lambada": "lambada_openai, lambada_openai_cloze_yaml: 5153 rows",
        "gsm8k": "gsm8k_cot, gsm8k_cot_llama, gsm8k_cot_zeroshot: 1319 rows",
        "bbh": "bbh (cot_fewshot, cot_zeroshot, fewshot, zeroshot): 27 subtasks, 6511 rows",
        "race_pages": "wikitext_race_pages: 131 pages",
    }
    assert len(list(tasks.glob("*.yaml"))) == 2 + 5 + 2 + 3 + 4 * 27 + 1


def _hub_num_bytes(path: Path, ints: tuple[str, ...] = ()) -> int:
    """A dataset card's num_bytes for these rows: each string's UTF-8 bytes + 4, a list 4, int64 8 (int32 4 for
    boolq's idx)."""

    def size(key: str, value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode()) + 4
        if isinstance(value, list):
            return 4 + sum(size(key, v) for v in value)
        if isinstance(value, dict):
            return sum(size(k, v) for k, v in value.items())
        return 4 if key in ints else 8

    return sum(size(k, v) for row in jsonl(path) for k, v in row.items())


def test_copies_are_the_hub_splits_byte_for_byte(written):
    """The Arrow sizes on the hub cards (allenai/ai2_arc, aps/super_glue boolq, baber/piqa, openai/gsm8k main):
    same strings, same types. lighteval/siqa is 1 byte less than the data folder's dev.jsonl (its README notes
    the same byte against the OpenCompass copy); winogrande's sentence/option split is reconstructed."""
    data = written[0].parent / "data"
    cards = {
        "arc/ARC-Easy/test.jsonl": 657514,
        "arc/ARC-Easy/validation.jsonl": 157394,
        "arc/ARC-Challenge/test.jsonl": 375511,
        "arc/ARC-Challenge/validation.jsonl": 96660,
        "piqa/validation.jsonl": 464309,
        "gsm8k/test.jsonl": 713732,
    }
    for name, num_bytes in cards.items():
        assert _hub_num_bytes(data / name) == num_bytes, name
    assert _hub_num_bytes(data / "boolq" / "validation.jsonl", ints=("idx",)) == 2116452
    assert _hub_num_bytes(data / "siqa" / "validation.jsonl") == 372815 + 1
    assert _hub_num_bytes(data / "winogrande" / "validation.jsonl") == 164183 - 46


def test_arc(manager):
    raw = jsonl(DATA_DIR / "arc_easy" / "ARC-Easy-Test.jsonl")
    task = build(manager, "arc_easy", limit=20)
    assert len(task.eval_docs) == 2376 and task.get_config("test_split") == "test"
    first = raw[0]["question"]
    reqs = requests(task, 0)
    assert [r[0] for r in reqs] == [f"Question: {first['stem']}\nAnswer:"] * 4
    assert [r[1] for r in reqs] == [" " + c["text"] for c in first["choices"]]
    docs = list(task.eval_docs)
    assert task.doc_to_target(docs[0]) == 0  # answerKey "A": "Sunlight is the source of energy ..."
    assert reqs[0][1] == " Sunlight is the source of energy for nearly all ecosystems."
    # row 15 has numeric labels "1".."4", answerKey "2": "elements"
    assert docs[14]["choices"]["label"] == ["1", "2", "3", "4"]
    assert task.doc_to_choice(docs[14])[task.doc_to_target(docs[14])] == "elements"
    assert len(requests(task, 14)) == 4

    task = build(manager, "arc_challenge")
    assert len(task.eval_docs) == 1172 and len(task.validation_docs()) == 299
    reqs = requests(task, 0)
    assert reqs[0][0].startswith("Question: An astronomer observes that a planet rotates faster")
    assert (
        len(reqs) == 4 and reqs[task.doc_to_target(task.eval_docs[0])][1] == " Planetary days will become shorter."
    )
    counts = {len(task.doc_to_choice(d)) for d in task.eval_docs}  # 3 to 5 choices
    assert counts == {3, 4, 5}


def test_boolq(manager):
    raw = jsonl(DATA_DIR / "boolq" / "val.jsonl")
    task = build(manager, "boolq")
    docs = list(task.eval_docs)
    assert len(docs) == 3270 and docs[0]["label"] == 0 and isinstance(docs[0]["idx"], int)
    reqs = requests(task, 0)
    assert [r[1] for r in reqs] == [" no", " yes"]
    assert reqs[0][0] == f"{raw[0]['passage']}\nQuestion: {raw[0]['question']}?\nAnswer:"
    assert raw[0]["label"] == "false" and task.doc_to_target(docs[0]) == 0  # "no"
    assert sum(task.doc_to_target(d) for d in docs) == sum(r["label"] == "true" for r in raw) == 2033


def test_piqa(manager):
    raw = jsonl(DATA_DIR / "piqa" / "valid.jsonl")
    labels = (DATA_DIR / "piqa" / "valid-labels.lst").read_text().split()
    task = build(manager, "piqa")
    docs = list(task.eval_docs)
    assert len(docs) == 1838 and task.get_config("validation_split") == "validation"
    reqs = requests(task, 0)
    assert reqs[0][0] == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert [r[1] for r in reqs] == [" " + raw[0]["sol1"], " " + raw[0]["sol2"]]
    assert labels[:3] == ["0", "1", "1"] and [task.doc_to_target(d) for d in docs[:3]] == [0, 1, 1]
    assert "ripped paper strips" in reqs[task.doc_to_target(docs[0])][1]


def test_social_iqa(manager):
    raw = jsonl(DATA_DIR / "siqa" / "dev.jsonl")
    task = build(manager, "social_iqa")
    docs = list(task.eval_docs)
    assert len(docs) == 1954 and docs[0]["label"] == "3"
    reqs = requests(task, 0)
    assert reqs[0][0] == f"Q: {raw[0]['context']} {raw[0]['question']}\nA:"
    assert [r[1] for r in reqs] == [" make a new plan", " Go home and see Riley", " Find somewhere to go"]
    assert task.doc_to_target(docs[0]) == 2  # dev-labels.lst line 1: "3"
    assert [task.doc_to_target(d) for d in docs[1:3]] == [0, 1]  # "1", "2"


def test_hellaswag(manager):
    """The prompts lm-eval builds from the hub rows: ctx_b capitalized after ctx_a ("... roof. He")."""
    task = build(manager, "hellaswag")
    docs = list(task.eval_docs)
    assert len(docs) == 10042 and docs[0]["label"] == "3" and docs[0]["gold"] == 3
    reqs = requests(task, 0)
    assert [r[0] for r in reqs] == ["Roof shingle removal: A man is sitting on a roof. He"] * 4
    assert reqs[3][1] == " starts pulling up roofing on a roof." and task.doc_to_target(docs[0]) == 3
    assert requests(task, 1)[0][0] == (
        "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady"
    )
    # the hub's ctx_a / ctx_b of the first rows (rowanz/hellaswag's hellaswag_val.jsonl)
    rows = jsonl(Path(task.config.dataset_kwargs["data_files"]["validation"]))
    assert [(r["ctx_a"], r["ctx_b"]) for r in rows[2:4]] == [
        (
            "Two women in a child are shown in a canoe while a man pulls the canoe while standing in the water, "
            "with other individuals visible in the background.",
            "the child and a different man",
        ),
        ("A boy is running down a track.", "the boy"),
    ]
    assert rows[8]["ctx_b"] == "then he"
    # a WikiHow item: the whole context is ctx_a, the file's text is lm-eval's query
    lines = (
        bz2.decompress((DATA_DIR / "hellaswag" / "hellaswag_val_full.txt.bz2").read_bytes()).decode().split("\n")
    )
    wikihow = next(i for i, r in enumerate(rows) if r["activity_label"] == "Personal Care and Style")
    assert rows[wikihow]["ctx_b"] == "" and docs[wikihow]["query"] == lines[6 * wikihow]
    assert docs[wikihow]["choices"] == lines[6 * wikihow + 2 : 6 * wikihow + 6]
    assert str(docs[wikihow]["gold"]) == lines[6 * wikihow + 1]


def test_winogrande(manager):
    """lm-eval's own doc_to_choice / doc_to_target on every reconstructed row give back the file's contexts
    and continuation: the requests are the hub's."""
    from lm_eval.tasks.winogrande import preprocess_winogrande as wg

    raw = jsonl(DATA_DIR / "winogrande" / "winogrande.jsonl")
    task = build(manager, "winogrande")
    docs = list(task.eval_docs)
    assert len(docs) == 1267
    for r, d in zip(raw, docs, strict=True):
        assert wg.doc_to_choice(d) == r["context_options"] and wg.doc_to_target(d) == r["continuation"]
        assert wg.doc_to_text(d) == r["gold"]
    # the hub's first rows (allenai/winogrande winogrande_xl validation)
    assert [(d["sentence"], d["option1"], d["option2"], d["answer"]) for d in docs[2:4]] == [
        (
            "They were worried the wine would ruin the bed and the blanket, but the _ was't ruined.",
            "blanket",
            "bed",
            "2",
        ),
        (
            "Terry tried to bake the eggplant in the toaster oven but the _ was too big.",
            "eggplant",
            "toaster",
            "1",
        ),
    ]
    assert docs[0]["sentence"] == "Sarah was a much better surgeon than Maria so _ always got the easier cases."
    reqs = requests(task, 0)
    assert [r[0] for r in reqs] == raw[0]["context_options"]
    assert [r[1] for r in reqs] == [" always got the easier cases."] * 2
    assert task.doc_to_text(docs[0]) == 1  # lm-eval's gold here: "Maria", answer "2"


def test_lambada_openai(manager):
    raw = jsonl(DATA_DIR / "lambada" / "lambada_test.jsonl")
    for name, suffix in (("lambada_openai", ""), ("lambada_openai_cloze_yaml", " ____. ->")):
        task = build(manager, name)
        assert len(task.eval_docs) == 5153
        context, target = requests(task, 0)[0]
        head, last = raw[0]["text"].rsplit(" ", 1)
        assert (context, target) == (head + suffix, " " + last) and last == "signs"


def test_gsm8k_cot(manager):
    raw = jsonl(DATA_DIR / "gsm8k" / "test.jsonl")
    task = build(manager, "gsm8k_cot")
    docs = list(task.eval_docs)
    assert len(docs) == 1319 and task.doc_to_target(docs[0]) == "18"  # "... #### 18"
    (context, kwargs), *rest = [r for r in requests(task, 0)]
    assert not rest and context.startswith("Q: There are 15 trees in the grove.")  # its 8 shots
    assert context.endswith(f"Q: {raw[0]['question']}\nA:") and context.count("\n\nQ: ") == 8
    assert "Q:" in kwargs["until"]
    task = build(manager, "gsm8k_cot_zeroshot")
    assert len(task.eval_docs) == 1319
    assert requests(task, 1)[0][0] == f"Q: {raw[1]['question']}\nA: Let's think step by step."
    task = build(manager, "gsm8k_cot_llama")
    assert len(task.eval_docs) == 1319 and raw[2]["question"] in requests(task, 2)[0][0]


def test_bbh(manager):
    raw = json.loads((DATA_DIR / "bbh" / "bbh" / "boolean_expressions.json").read_text())["examples"]
    task = build(manager, "bbh_cot_fewshot_boolean_expressions")
    docs = list(task.eval_docs)
    assert len(docs) == 250 and task.doc_to_target(docs[0]) == "False" == raw[0]["target"]
    (context, kwargs), *rest = requests(task, 0)
    assert not rest and context.startswith("Evaluate the result of a random Boolean expression.\n\nQ: not ( ( not")
    assert context.endswith(f"Q: {raw[0]['input']}\nA: Let's think step by step.\n") and context.count("Q: ") == 4
    for variant in ("cot_zeroshot", "fewshot", "zeroshot"):
        task = build(manager, f"bbh_{variant}_boolean_expressions", limit=1)
        assert len(task.eval_docs) == 250 and raw[0]["input"] in requests(task, 0)[0][0]
    # the group finds its 27 local members: BBH's 6511 examples
    loaded = manager.load(["bbh_cot_fewshot"])["tasks"]
    assert len(loaded) == 27 and sum(len(t.eval_docs) for t in loaded.values()) == 6511
    assert len(loaded["bbh_cot_fewshot_causal_judgement"].eval_docs) == 187
