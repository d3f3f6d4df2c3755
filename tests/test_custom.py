"""dataset=custom: your own multiple-choice or QA file, end to end on the tiny model."""

from __future__ import annotations

import json

import pytest

from hydra_eval.data.loader import load_samples
from hydra_eval.errors import UserError
from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run

MC = [
    {"question": "Which is a fruit?", "choices": ["apple", "stone", "chair"], "answer": 0},
    {"question": "Sky colour?", "choices": ["green", "blue"], "answer": "B"},
    {"question": "2+2?", "choices": ["3", "4", "5"], "answer": "4"},
    {"question": "Opposite of hot?", "choices": ["cold", "warm"], "answer": "A"},
]
QA = [
    {"question": "Capital of France?", "answer": "Paris"},
    {"question": "Largest planet?", "answer": ["Jupiter", "planet Jupiter"]},
    {"question": "H2O is?", "answer": "water"},
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("mode", ["ppl", "gen"])
def test_custom_multiple_choice_end_to_end(compose_cfg, tmp_path, mode):
    path = write(tmp_path / "mc.jsonl", MC)
    results = run(
        compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}", f"dataset.mode={mode}")
    )
    assert results is not None and results.n == 4
    expected = {"acc", "acc_norm"} if mode == "ppl" else {"accuracy", "length_capped"}
    assert {k for k in results.metrics if not k.endswith("_stderr")} == expected - {"length_capped"}
    assert ("length_capped" in results.diagnostics) == ("length_capped" in expected)  # beside the scores
    rows = read_jsonl(tmp_path / "out" / "predictions" / "tiny_llama" / "custom.jsonl")
    assert [r["gold"] for r in rows] == [0, 1, 1, 0]
    if mode == "gen":
        assert rows[0]["prompt"] == "Question: Which is a fruit?\nA. apple\nB. stone\nC. chair\nAnswer:"


@pytest.mark.parametrize("mode", ["ppl", "gen"])
def test_custom_qa_end_to_end(compose_cfg, tmp_path, mode):
    path = write(tmp_path / "qa.jsonl", QA)
    results = run(
        compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}", f"dataset.mode={mode}")
    )
    assert results is not None and results.n == 3
    expected = {"acc", "perplexity"} if mode == "ppl" else {"accuracy", "length_capped"}
    assert {k for k in results.metrics if not k.endswith("_stderr")} == expected - {"length_capped"}
    assert ("length_capped" in results.diagnostics) == ("length_capped" in expected)  # beside the scores
    if mode == "gen":
        rows = read_jsonl(tmp_path / "out" / "predictions" / "tiny_llama" / "custom.jsonl")
        assert rows[1]["answers"] == ["Jupiter", "planet Jupiter"]


def test_custom_csv_and_fewshot_file(compose_cfg, tmp_path):
    csv_path = tmp_path / "mc.csv"
    csv_path.write_text(
        'question,A,B,C,answer\nWhich is a fruit?,apple,stone,chair,A\n"Sky, colour?",green,blue,,B\n'
    )
    shots = write(tmp_path / "shots.jsonl", MC)
    cfg = compose_cfg(
        "model=tiny_llama",
        "dataset=custom",
        f"dataset.path={csv_path}",
        f"dataset.fewshot_path={shots}",
        "dataset.fewshot.k=2",
        "dataset.mode=gen",
    )
    data = load_samples(cfg.dataset)
    assert [s.fields["choices"] for s in data.samples] == [["apple", "stone", "chair"], ["green", "blue"]]
    assert not data.fewshot_same_split and len(data.fewshot) == 4
    results = run(cfg)
    assert results is not None and results.n == 2
    rows = read_jsonl(tmp_path / "out" / "predictions" / "tiny_llama" / "custom.jsonl")
    assert rows[0]["prompt"].count("Answer:") == 3  # two solved examples, then the question


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"question": "q", "choices": ["a"], "answer": 0}', "choices must be a list of at least 2"),
        ('{"question": "q", "choices": ["a", "b"], "answer": "C"}', "answer 'C' is not the text, index or letter"),
        ('{"question": "", "answer": "x"}', "needs a non-empty question and answer"),
        ("{oops", "not valid JSON"),
    ],
)
def test_malformed_custom_rows_name_file_and_line(compose_cfg, tmp_path, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(MC[0]) + "\n\n" + line + "\n")
    cfg = compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}")
    with pytest.raises(UserError, match=f"bad.jsonl:3: .*{needle}"):
        run(cfg)
    assert not (tmp_path / "out" / "results").exists() and not (tmp_path / "out" / "predictions").exists()


def test_custom_without_a_path_is_one_clear_error(compose_cfg):
    with pytest.raises(UserError, match=r"needs a file: dataset.path="):
        load_samples(compose_cfg("dataset=custom").dataset)


def test_answers_match_choice_text_before_index_and_blank_choices_are_refused(tmp_path):
    from hydra_eval.data import custom

    rows = [{"question": "Which is two?", "choices": ["1", "2", "3"], "answer": "2"}]
    assert custom.record_to_sample(rows[0], 0).gold == 1
    path = tmp_path / "gap.csv"
    path.write_text("question,A,B,C,D,answer\nq,x,,z,w,C\n")
    with pytest.raises(UserError, match=r"gap.csv:2: malformed row, a blank choice"):
        custom.read_local(tmp_path, {"rows": "gap.csv"})


@pytest.mark.parametrize(
    ("ids", "where", "first"),
    [(["a", "b", "a", "c"], 3, 1), ([None, "0", "x", "y"], 2, 1)],  # a row without an id is its index
)
def test_a_repeated_id_is_a_malformed_row(compose_cfg, tmp_path, ids, where, first):
    """Models are compared row by row on the id: two rows of one id would be one row of the comparison."""
    rows = [{**r, **({"id": i} if i is not None else {})} for r, i in zip(MC, ids, strict=True)]
    path = write(tmp_path / "dup.jsonl", rows)
    cfg = compose_cfg("model=fake", "dataset=custom", f"dataset.path={path}", "dataset.limit=1")  # whole file
    expected = rf"dup.jsonl:{where}: malformed row, id '.+' again \(first at .*dup.jsonl:{first}\)"
    with pytest.raises(UserError, match=expected):
        load_samples(cfg.dataset)


def test_an_empty_file_is_named_and_the_source_is_the_file(compose_cfg, tmp_path, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match=f"no rows in {empty} "):
        load_samples(compose_cfg("dataset=custom", f"dataset.path={empty}").dataset)
    write(tmp_path / "mc.jsonl", MC)
    monkeypatch.chdir(tmp_path)  # dataset.path relative to where you run
    cfg = compose_cfg("model=fake", "dataset=custom", "dataset.path=mc.jsonl")
    assert load_samples(cfg.dataset).source == str(tmp_path / "mc.jsonl")
    run(cfg, print_summary=False)
    meta = json.loads((tmp_path / "out" / "predictions" / "fake" / "custom.meta.json").read_text())
    assert meta["data_source"] == str(tmp_path / "mc.jsonl")
