"""Inputs longer than model.max_seq_len: cut from the left, counted, shown; tied candidates reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hydra_eval import scoring
from hydra_eval.backends.local import fit_prompt
from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run
from hydra_eval.records import GenPrediction, LoglikelihoodResponse, PplPrediction, Verdict
from tests.helpers import summary_lines

# -- pure parts


def test_a_prompt_that_fits_with_its_new_tokens_is_kept_whole():
    assert fit_prompt([1, 2, 3], max_new_tokens=4, max_len=7) == ([1, 2, 3], 0, 4)


def test_a_long_prompt_keeps_its_last_tokens_leaving_room_for_the_new_ones():  # lm-eval's generate_until
    assert fit_prompt(list(range(10)), max_new_tokens=4, max_len=10) == ([4, 5, 6, 7, 8, 9], 4, 4)


def test_new_tokens_that_fill_the_window_stop_at_the_window():
    """arena_hard's 4096 new tokens on a 2048-token model: the prompt stays whole, the generation gets the
    rest of the window; a prompt that fills the window itself keeps its last half."""
    assert fit_prompt([1, 2, 3], max_new_tokens=512, max_len=512) == ([1, 2, 3], 0, 509)
    assert fit_prompt(list(range(600)), max_new_tokens=4096, max_len=512) == (list(range(344, 600)), 344, 256)


def test_tied_lists_the_candidates_that_share_the_chosen_score():
    assert scoring.tied([-3.0, -3.0, -5.0], 0) == (0, 1)
    assert scoring.tied([0.5, 0.2, 0.2], 1) == (1, 2)  # the lowest wins (OpenCompass): tied too
    assert scoring.tied([-3.0, -2.0], 1) is None


def test_rows_of_earlier_files_read_as_not_cut_and_uncut_rows_are_written_as_before():
    response = {"logprob": -1.0, "n_tokens": 5, "n_scored": 2, "greedy": False}
    assert LoglikelihoodResponse.from_json(response).truncated == 0
    assert LoglikelihoodResponse.from_json(response).to_json() == response
    cut = LoglikelihoodResponse(-1.0, 600, 511, False, truncated=88)
    assert LoglikelihoodResponse.from_json(cut.to_json()) == cut
    row = PplPrediction(0, "a", 0, ("x", "y"), (cut, LoglikelihoodResponse(-2.0, 9, 2, False)), prompts=("p", "q"))
    assert row.truncated == 88
    gen = {"schema_version": 2, "idx": 0, "id": "a", "gold": 0, "prompt": "p", "generation": "g"}
    gen.update(finish_reasons=["eos"], n_prompt_tokens=3, n_new_tokens=1, options=[])
    assert GenPrediction.from_json(gen).truncated == 0 and GenPrediction.from_json(gen).to_json() == gen
    long = GenPrediction(0, "a", 0, "p", ("g",), ("eos",), 412, 1, truncated=86)
    assert GenPrediction.from_json(long.to_json()) == long
    assert Verdict(correct=True).to_json() == {"correct": True}
    assert Verdict(correct=True, pred=0, tied=(0, 1)).to_json()["tied"] == [0, 1]


# -- on the tiny model (max_seq_len 512, one token per byte)

FILLER = " ".join(f"filler{i:02d}w" for i in range(93))  # 929 bytes: each choice is ~935 tokens


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_long_choices_that_tie_after_the_cut_are_counted_and_reported(compose_cfg, tmp_path, caplog, capsys):
    """Cut to their last 512 tokens, "WRONG ..." and "RIGHT ..." are the same tokens: they tie, the first wins,
    so the score says only where the gold sits. Both the cut and the tie are counted and shown."""
    rows = [
        {"question": "Pick.", "choices": ["RIGHT " + FILLER, "WRONG " + FILLER], "answer": 0},
        {"question": "Pick.", "choices": ["WRONG " + FILLER, "RIGHT " + FILLER], "answer": 1},
        {"question": "Sky colour?", "choices": ["green", "blue"], "answer": 1},
    ]
    path = write(tmp_path / "long.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        results = run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}"))
    assert results is not None
    metrics = {**results.metrics, **results.diagnostics}  # input_truncated, tied: diagnostics
    assert metrics["input_truncated"] == pytest.approx(200 / 3) and metrics["tied"] == pytest.approx(200 / 3)
    judged = read_jsonl(tmp_path / "out" / "judged" / "tiny_llama" / "custom.jsonl")
    assert [r.get("tied") for r in judged] == [[0, 1], [0, 1], None]
    assert [r.get("tied_norm") for r in judged] == [[0, 1], [0, 1], None]
    cut = [[c.get("truncated", 0) > 0 for c in r["candidates"]] for r in judged]
    assert cut == [[True, True], [True, True], [False, False]]
    out = capsys.readouterr().out
    table = {tuple(line.split()[2:4]) for line in summary_lines(out)[2:]}
    assert not {("input_truncated", "ppl"), ("tied", "ppl")} & table  # diagnostics: under the table
    [line] = [line for line in out.splitlines() if line.startswith("diagnostics: ")]
    assert "input_truncated 66.6667" in line and "tied 66.6667" in line
    text = caplog.text
    assert "2 of 3 custom rows" in text and "model.max_seq_len" in text and "tied" in text


def test_gen_prompts_are_cut_to_leave_room_for_the_new_tokens_and_counted(compose_cfg, tmp_path, caplog, capsys):
    """lm-eval's rule: a prompt keeps its last max_seq_len - max_new_tokens tokens. "Question: " + q + "\\nAnswer:"
    is len(q) + 18 tokens: 3203 and 498 tokens here, on a 512-token model with 100 new tokens."""
    rows = [
        {"question": "x" * 3185, "answer": "a"},
        {"question": "y" * 480, "answer": "b"},
        {"question": "H2O is?", "answer": "water"},
    ]
    path = write(tmp_path / "long.jsonl", rows)
    args = ("model=tiny_llama", "dataset=custom", f"dataset.path={path}", "dataset.mode=gen")
    with caplog.at_level(logging.WARNING):
        results = run(compose_cfg(*args, "dataset.gen.max_out_len=100"))
    assert results is not None
    assert results.diagnostics["input_truncated"] == pytest.approx(200 / 3) and "tied" not in results.diagnostics
    predictions = read_jsonl(tmp_path / "out" / "predictions" / "tiny_llama" / "custom.jsonl")
    assert [r.get("truncated", 0) for r in predictions] == [3203 - 412, 498 - 412, 0]
    assert [r["n_prompt_tokens"] for r in predictions] == [412, 412, 25]
    out = capsys.readouterr().out
    table = {tuple(line.split()[2:4]) for line in summary_lines(out)[2:]}
    assert ("input_truncated", "gen") not in table  # a diagnostic: under the table
    assert any(line.startswith("diagnostics: ") and "input_truncated" in line for line in out.splitlines())
    assert "2 of 3 custom rows" in caplog.text


def test_new_tokens_beyond_the_window_stop_at_the_window(compose_cfg, tmp_path):
    """600 new tokens asked of a 512-token model: the job runs, every generation ends at the window."""
    path = write(tmp_path / "qa.jsonl", [{"question": "H2O is?", "answer": "water"}])
    args = ("model=tiny_llama", "dataset=custom", f"dataset.path={path}", "dataset.mode=gen")
    cfg = compose_cfg(*args, "dataset.gen.max_out_len=600", "dataset.gen.stop=[]")
    results = run(cfg)
    assert results is not None and "input_truncated" not in results.diagnostics
    (row,) = read_jsonl(Path(cfg.output_dir) / "predictions" / "tiny_llama" / "custom.jsonl")
    assert row["n_prompt_tokens"] + row["n_new_tokens"] <= 512 < row["n_prompt_tokens"] + 600
    assert row["finish_reasons"] == ["length"]
