"""LLM-as-judge (hydra_eval/judging/): the judge stage between infer and eval, its cache, verdicts and scores,
multi-turn generation, and judge jobs in a sweep. Fake models here (their replies are set per test); the real
judge runs are in docs/benchmarks.md section 7 and tests/test_slow.py."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from hydra_eval.config import typed
from hydra_eval.errors import UserError
from hydra_eval.judging import prompts, scores
from hydra_eval.judging.verdicts import PARSERS
from hydra_eval.outputs import JobFiles, read_json, read_jsonl
from hydra_eval.pipeline import run
from hydra_eval.records import GenPrediction, Judgment, Message, Sample
from hydra_eval.schema import JudgeMode, JudgeSettings, VerdictFormat
from tests.helpers import kill_after_first_block, run_cli

FAKE = ["model=fake", "model.chat_template=true", "judge=fake"]


def files_of(cfg) -> JobFiles:
    return JobFiles(Path(cfg.output_dir), cfg.model.name, cfg.dataset.name)


def run_messages(composed, row_id: str) -> str:
    """The user message the judge got for a row (rebuilt as the judge stage builds it)."""
    from hydra_eval.data.loader import load_samples
    from hydra_eval.judging.stage import _read_rows

    cfg = typed(composed)
    samples = {s.id: s for s in load_samples(cfg.dataset).samples}
    rows = [r for r in _read_rows(files_of(cfg).predictions) if r.id == row_id]
    [item] = prompts.items(cfg.dataset.judge, cfg.dataset.gen, rows, samples)
    return item.messages[-1].content


def test_mt_bench_both_turns_judged_and_the_second_turn_sees_the_first_answer(compose_cfg):
    cfg = compose_cfg(
        *FAKE,
        "model.reply='My first answer.'",
        "dataset=mt_bench",
        "dataset.limit=3",
        "judge.reply='Fine. Rating: [[7]]'",
    )
    results = run(cfg, print_summary=False)
    assert results is not None
    m = {**results.metrics, **results.diagnostics}  # judge calls and parse failures: diagnostics
    assert m["score"] == 7.0 and m["score_turn1"] == 7.0 and m["score_turn2"] == 7.0
    assert m["judge_calls"] == 6 and m["judge_parse_failures"] == 0
    assert m["score/writing"] == 7.0 and m["score_ci_low"] == m["score_ci_high"] == 7.0
    assert results.judge.computed == 6 and results.judge.judge == "fake"
    files = files_of(cfg)
    [row, *_] = read_jsonl(files.predictions)
    assert row["turns"] == ["My first answer.", "My first answer."]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user"]
    assert row["messages"][1]["content"] == "My first answer."  # turn 2 follows the model's own turn 1
    judged = read_jsonl(files.judged)
    assert judged[0]["judge_verdicts"] == ["7", "7"]
    assert judged[0]["judgments"][1]["raw"] == "Fine. Rating: [[7]]"
    assert judged[0]["judgments"][1]["rationale"] == "Fine. Rating:"


def test_mt_bench_uses_the_reference_prompt_for_math_and_the_conversation_for_turn_two(compose_cfg):
    cfg = typed(compose_cfg(*FAKE, "dataset=mt_bench"))
    row = GenPrediction(
        idx=0,
        id="111",
        gold=0,
        prompt="q1",
        generations=("a2",),
        finish_reasons=("eos", "eos"),
        n_prompt_tokens=1,
        n_new_tokens=2,
        fields={"turns": ["Q one", "Q two"], "reference": ["R one", "R two"]},
        turns=("A one", "A two"),
    )
    sample = Sample("111", {"turns": ["Q one", "Q two"], "reference": ["R one", "R two"]}, 0)
    first, second = prompts.items(cfg.dataset.judge, cfg.dataset.gen, [row], {"111": sample})
    assert first.messages[0] == Message("system", "You are a helpful assistant.")
    assert "[The Start of Reference Answer]\nR one\n" in first.messages[1].content
    assert "[Question]\nQ one\n" in first.messages[1].content and "\nA one\n" in first.messages[1].content
    assert "focus on the assistant's answer to the second question" in second.messages[0].content
    text = second.messages[1].content
    assert text.index("R two") < text.index("Q two\n\n### Assistant A:\nA two")


def test_a_rerun_makes_no_judge_call(compose_cfg, caplog):
    args = (*FAKE, "dataset=mt_bench", "dataset.limit=2", "judge.reply='[[8]]'")
    run(compose_cfg(*args, "hydra.run.dir=unused"), print_summary=False)
    caplog.set_level(logging.INFO)
    cfg = compose_cfg(*args)
    results = run(cfg, print_summary=False)
    assert results is not None and results.judge.computed == 0 and results.judge.reused == 4
    assert "judge: 4 reused from cache" in caplog.text
    assert results.metrics["score"] == 8.0


def test_unparsed_verdicts_are_counted_and_never_scored_as_zero(compose_cfg):
    cfg = compose_cfg(*FAKE, "dataset=mt_bench", "dataset.limit=2", "judge.reply='I cannot rate this.'")
    results = run(cfg, print_summary=False)
    assert results is not None
    m = {**results.metrics, **results.diagnostics}  # judge calls and parse failures: diagnostics
    assert m["judge_parse_failures"] == 4 and math.isnan(m["score"])  # no verdict: no score, not 0
    [j, *_] = read_jsonl(files_of(cfg).judgments)
    assert j["verdict"] is None and j["score"] is None and j["error"].startswith("no [[rating]]")


def test_pairwise_judges_both_orders_and_cancels_a_position_biased_judge(compose_cfg, tmp_path):
    base = compose_cfg(
        "model=fake",
        "model.chat_template=true",
        "dataset=arena_hard",
        "dataset.limit=3",
        "mode=infer",
        f"output_dir={tmp_path / 'baseline'}",
    )
    run(base, print_summary=False)
    cfg = compose_cfg(
        "model=fake_b",
        "model.chat_template=true",
        "judge=fake",
        "dataset=arena_hard",
        "dataset.limit=3",
        "dataset.judge.baseline=fake",
        f"dataset.judge.baseline_dir={tmp_path}",
        "judge.reply='[[B>>A]]'",
    )
    results = run(cfg, print_summary=False)
    assert results is not None
    m = {**results.metrics, **results.diagnostics}  # judge calls and parse failures: diagnostics
    # always "B much better": a win when the judged model is B (game 1), a loss when it is A (game 2)
    assert m["win_rate"] == 50.0 and m["wins"] == 3 and m["losses"] == 3 and m["order_consistency"] == 0.0
    rows = read_jsonl(files_of(cfg).judgments)
    assert [(r["game"], r["score"], r["weight"]) for r in rows[:2]] == [(1, 1.0, 3), (2, 0.0, 3)]


def test_alpaca_eval_judges_against_the_reference_output_in_the_data(compose_cfg):
    cfg = compose_cfg(
        *FAKE,
        "model.reply=mine",
        "dataset=alpaca_eval",
        "dataset.limit=2",
        "judge.reply='Assistant A is better. [[A]]'",
    )
    results = run(cfg, print_summary=False)
    assert results is not None and results.metrics["win_rate"] == 50.0
    [first, second, *_] = read_jsonl(files_of(cfg).judgments)
    assert (first["game"], first["score"], second["game"], second["score"]) == (1, 0.0, 2, 1.0)
    prediction = read_jsonl(files_of(cfg).predictions)[0]
    assert prediction["fields"]["reference_output"].startswith("Some famous actors")


def test_reference_mode_checks_answers_against_the_gold_answer(compose_cfg):
    cfg = compose_cfg(
        *FAKE,
        "dataset=gsm8k",
        "dataset.limit=2",
        "dataset.judge.mode=reference",
        "judge.reply='Same value. [[CORRECT]]'",
    )
    results = run(cfg, print_summary=False)
    assert results is not None and results.metrics["accuracy"] == 100.0
    assert results.convention.startswith("judge:fake:correct:")
    [row, _] = read_jsonl(files_of(cfg).judged)
    [asked] = [m for m in read_jsonl(files_of(cfg).judgments) if m["id"] == row["id"]]
    assert row["prompt"].count("Q: ") == 9  # the model saw 8 solved examples, then the question ...
    message = run_messages(cfg, row["id"])
    assert message.count("Q: ") == 1 and "[Gold Answer]\n" + row["answers"][0] in message  # ... the judge only it
    assert asked["verdict"] == "CORRECT"


def test_a_judged_dataset_without_a_judge_is_one_error_before_any_generation(compose_cfg, tmp_path):
    cfg = compose_cfg("model=fake", "model.chat_template=true", "dataset=mt_bench")
    with pytest.raises(UserError, match="scored by a judge model: give judge=<model config>"):
        run(cfg, print_summary=False)
    assert not (tmp_path / "out" / "predictions").exists()


def test_pairwise_without_a_baseline_is_one_error_before_any_generation(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAKE, "dataset=arena_hard")
    with pytest.raises(UserError, match="needs the baseline's answers"):
        run(cfg, print_summary=False)
    cfg = compose_cfg(
        *FAKE, "dataset=arena_hard", "dataset.judge.baseline=nosuch", f"dataset.judge.baseline_dir={tmp_path}"
    )
    with pytest.raises(UserError, match="no predictions/nosuch/arena_hard.jsonl below it"):
        run(cfg, print_summary=False)
    assert not (tmp_path / "out" / "predictions").exists()


def run_baseline(compose_cfg, tmp_path, *overrides):
    """The baseline model `fake` answers arena_hard into tmp_path/baseline (mode=infer)."""
    cfg = compose_cfg(
        "model=fake",
        "model.chat_template=true",
        "dataset=arena_hard",
        "mode=infer",
        f"output_dir={tmp_path / 'baseline'}",
        *overrides,
    )
    run(cfg, print_summary=False)


def judged_against_baseline(compose_cfg, tmp_path, *overrides):
    return compose_cfg(
        "model=fake_b",
        "model.chat_template=true",
        "judge=fake",
        "dataset=arena_hard",
        "dataset.judge.baseline=fake",
        f"dataset.judge.baseline_dir={tmp_path / 'baseline'}",
        *overrides,
    )


def test_a_baseline_missing_rows_is_one_error_before_any_generation(compose_cfg, tmp_path):
    run_baseline(compose_cfg, tmp_path, "dataset.limit=2")
    cfg = judged_against_baseline(compose_cfg, tmp_path, "dataset.limit=3")
    with pytest.raises(UserError, match="the baseline fake has no answer for 1 of 3 rows of arena_hard"):
        run(cfg, print_summary=False)
    assert not (tmp_path / "out" / "predictions").exists()


def test_a_baseline_made_from_another_data_file_is_refused_before_any_generation(compose_cfg, tmp_path):
    from tests.conftest import DATA_DIR

    other = tmp_path / "other"
    other.mkdir()
    rows = read_jsonl(DATA_DIR / "arena_hard" / "question.jsonl")[:3]
    for row in rows:  # the same ids, other questions
        row["turns"] = [{"content": "Name a colour."}]
    (other / "question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_baseline(compose_cfg, tmp_path, "dataset.limit=3", f"dataset.local_dir={other}")
    cfg = judged_against_baseline(compose_cfg, tmp_path, "dataset.limit=3")
    with pytest.raises(UserError, match="answered other data: .*question.jsonl"):
        run(cfg, print_summary=False)
    assert not (tmp_path / "out" / "predictions").exists()


def test_an_unreachable_served_judge_is_one_error_before_any_generation(compose_cfg, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    cfg = compose_cfg(
        "model=fake",
        "model.chat_template=true",
        "dataset=mt_bench",
        "dataset.limit=1",
        "judge=llamacpp_smollm2",
        f"judge.api.base_url={url}",
        "judge.api.retries=0",
    )
    with pytest.raises(UserError, match=f"judge=llamacpp_smollm2: cannot reach {url}"):
        run(cfg, print_summary=False)
    assert not (tmp_path / "out" / "predictions").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.judge.max_new_tokens=0", "dataset.judge.max_new_tokens must be"),
        ("dataset.judge.bootstrap=-1", "dataset.judge.bootstrap must be"),
        ("dataset.judge.turns=[0,2]", "1-based turn numbers"),
        ("dataset.judge.temperature=-0.5", "dataset.judge.temperature must be"),
    ],
)
def test_judge_settings_out_of_range_are_one_error_before_any_work(compose_cfg, tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        run(compose_cfg(*FAKE, "dataset=mt_bench", override), print_summary=False)
    assert not (tmp_path / "out" / "predictions").exists()


def test_multi_turn_needs_chat_messages(compose_cfg):
    with pytest.raises(UserError, match="multi-turn"):
        run(compose_cfg("model=fake", "dataset=mt_bench", "dataset.gen.chat_template=false"), print_summary=False)


def _j(id_: str, game: int, score: float | None, weight: int = 1, turn: int = 1) -> Judgment:
    return Judgment(0, id_, turn, game, "k", "", None, score, weight, None if score is not None else "x")


def test_win_rate_weights_strong_verdicts_and_leaves_failures_out():
    settings = JudgeSettings(mode=JudgeMode.pairwise, bootstrap=200)
    judgments = [_j("a", 1, 1.0, 3), _j("a", 2, 1.0), _j("b", 1, 0.5), _j("b", 2, None)]
    m = scores.compute(settings, ["a", "b"], judgments)
    assert m["win_rate"] == pytest.approx(100 * 4.5 / 5)
    assert (m["wins"], m["ties"], m["losses"], m["judge_parse_failures"]) == (2, 1, 0, 1)
    assert m["order_consistency"] == 100.0  # only "a" has both orders parsed, and they agree


def test_bootstrap_ci_is_seeded_and_matches_a_direct_computation():
    rng = np.random.RandomState(7)
    num, den = rng.randint(0, 3, 50).astype(float), np.full(50, 2.0)
    low, high = scores.ratio_ci(num, den, 1000, seed=0)
    picks = np.random.RandomState(0).randint(0, 50, size=(1000, 50))
    stats = num[picks].sum(1) / den[picks].sum(1)
    assert (low, high) == tuple(np.percentile(stats, [2.5, 97.5]))
    assert low < num.sum() / den.sum() < high
    assert scores.ratio_ci(num, den, 1000, seed=0) == (low, high)


@pytest.mark.process
def test_a_sweep_runs_the_judge_job_after_the_jobs_it_judges(tmp_path):
    args = [
        "-m",
        "model=fake,fake_b",
        "model.chat_template=true",
        "dataset=arena_hard",
        "dataset.limit=3",
        "dataset.judge.baseline=fake",
        "judge=fake",
        "judge.reply='[[A=B]]'",
        "tracking=none",
        "progress=false",
    ]
    proc = run_cli(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", outputs=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = read_json(tmp_path / "sweep" / "plan.json")
    assert [j["job_overrides"][-1] for j in plan] == ["mode=infer", "mode=infer"]
    result = read_json(tmp_path / "sweep" / "1" / "results" / "fake_b" / "arena_hard.json")
    assert result["metrics"]["win_rate"] == 50.0 and result["metrics"]["ties"] == 6
    assert (tmp_path / "sweep" / "2" / "hydra-eval.log").is_file()  # the judge job, numbered after them
    assert "win_rate" in proc.stdout and "fake_b" in proc.stdout
    assert read_json(tmp_path / "sweep" / "failed.json") == []
    again = run_cli(*args, f"hydra.sweep.dir={tmp_path / 'again'}", outputs=tmp_path, cache=tmp_path / "cache")
    assert again.returncode == 0
    meta = read_json(tmp_path / "again" / "1" / "judgments" / "fake_b" / "arena_hard.meta.json")
    assert meta["computed"] == 0 and meta["reused"] == 6


def test_a_baseline_missing_from_the_sweep_is_one_line_before_launch(tmp_path):
    proc = run_cli(
        "-m",
        "model=fake_b",
        "dataset=arena_hard",
        "dataset.judge.baseline=fake",
        "judge=fake",
        "tracking=none",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        outputs=tmp_path,
    )
    assert proc.returncode == 1
    assert "no fake x arena_hard job in this sweep" in proc.stderr
    assert not list((tmp_path / "sweep").glob("[0-9]*"))


@pytest.mark.process
def test_a_judge_job_killed_after_a_saved_block_resumes_and_computes_only_the_rest(tmp_path):
    args = [
        "model=fake",
        "model.chat_template=true",
        "dataset=mt_bench",
        "dataset.limit=12",
        "judge=tiny_llama",
        "dataset.judge.max_new_tokens=48",
        "checkpoint_every=4",
        "tracking=none",
        "progress=false",
    ]
    ref = run_cli(*args, f"hydra.run.dir={tmp_path / 'ref'}", outputs=tmp_path, cache=tmp_path / "ref_cache")
    assert ref.returncode == 0, ref.stderr[-3000:]
    job = run_cli(
        *args, f"hydra.run.dir={tmp_path / 'killed'}", outputs=tmp_path, cache=tmp_path / "cache", background=True
    )
    saved = kill_after_first_block(job, tmp_path / "cache", "judgments/*/rows.jsonl")
    assert 4 <= saved < 24 and saved % 4 == 0
    rerun = run_cli(*args, f"hydra.run.dir={tmp_path / 'rerun'}", outputs=tmp_path, cache=tmp_path / "cache")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    meta = read_json(tmp_path / "rerun" / "judgments" / "fake" / "mt_bench.meta.json")
    assert meta["reused"] >= saved and meta["computed"] == 24 - meta["reused"]
    assert f"judge: {meta['reused']} reused from cache" in rerun.stderr
    path = Path("judgments") / "fake" / "mt_bench.jsonl"
    assert read_jsonl(tmp_path / "rerun" / path) == read_jsonl(tmp_path / "ref" / path)


def test_a_dry_run_counts_the_judge_jobs_and_a_single_mode_baseline_setting_is_ignored(tmp_path):
    proc = run_cli(
        "-m",
        "model=fake,fake_b",
        "dataset=arena_hard,mt_bench,alpaca_eval",
        "dataset.judge.baseline=fake",
        "judge=fake",
        "dry_run=true",
        "tracking=none",
        outputs=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert all(line.endswith("mode=infer") for line in lines[2:8])
    # arena_hard: fake_b against the baseline fake; mt_bench and alpaca_eval (no baseline model): both models
    assert lines[-1] == "then 5 judge job(s) (judge=fake), one per judged job, after all of these"


GOLDEN = Path(__file__).parent / "golden" / "judge_replies.jsonl"


@pytest.mark.parametrize("case", read_jsonl(GOLDEN), ids=lambda c: c["source"][:60])
def test_parsers_on_real_judge_replies(case):
    """Replies of the real judges of docs/benchmarks.md section 7 (SmolLM2-135M, local and served), the
    malformed ones included, with the verdict each benchmark's own parser would read."""
    parsed = PARSERS[VerdictFormat(case["format"])](case["text"])
    expect = case["expect"]
    if "error" in expect:
        assert not parsed.ok and expect["error"] in (parsed.error or "") and parsed.label is None
    else:
        assert parsed.ok and parsed.label == expect["label"] and parsed.winner == expect.get("winner")
        assert parsed.value == expect.get("value")
        assert parsed.strong == expect.get("strong", False)


@pytest.mark.parametrize(
    ("fmt", "text", "label", "value", "winner", "error"),
    [  # constructed replies: every branch of each parser
        ("rating", "Good. Rating: [[5]]", "5", 5.0, None, None),
        ("rating", "Rating: [[8.5]] and later [[2]]", "8.5", 8.5, None, None),  # the first, as FastChat
        ("rating", "Rating: [7]", "7", 7.0, None, None),  # FastChat's fallback pattern
        ("rating", "Rating: [[11]]", "11", None, None, "outside 1-10"),
        ("rating", "Rating: 7", None, None, None, "no [[rating]]"),
        ("arena", "My final verdict is: [[b>>a]]", "B>>A", None, "B", None),  # read upper-cased
        ("arena", "Assistant A: [[A>B]]. Overall [[A>B]]", "A>B", None, "A", None),
        ("arena", "[[B=A]]", "B=A", None, "tie", None),
        ("arena", "First [[A>B]], then [[B>A]]", None, None, None, "conflicting"),
        ("arena", "[[AB]]", "AB", None, None, "unknown verdict"),
        ("arena", "verdict [A>>B]", "A>>B", None, "A", None),
        ("abc", "Assistant B wins. [[B]]", "B", None, "B", None),
        ("abc", "[[C]]", "C", None, "tie", None),
        ("abc", "[[A]] or maybe [[B]]", None, None, None, "conflicting"),
        ("correct", "It matches. [[CORRECT]]", "CORRECT", 1.0, None, None),
        ("correct", "[[correct]]? No: [[INCORRECT]]", "INCORRECT", 0.0, None, None),  # the last one
        ("correct", "Incorrect.", "INCORRECT", 0.0, None, None),
        ("correct", "It is right.", None, None, None, "no [[CORRECT]]"),
    ],
)
def test_parsers_on_constructed_replies(fmt, text, label, value, winner, error):
    parsed = PARSERS[VerdictFormat(fmt)](text)
    assert (parsed.label, parsed.value, parsed.winner) == (label, value, winner)
    assert (parsed.error is None) if error is None else (error in (parsed.error or ""))


@pytest.mark.process
def test_a_pairwise_sweep_of_the_baseline_alone_judges_nothing_and_ends_cleanly(tmp_path):
    proc = run_cli(
        "-m",
        "model=fake",
        "model.chat_template=true",
        "dataset=arena_hard",
        "dataset.limit=2",
        "dataset.judge.baseline=fake",
        "judge=fake",
        "tracking=none",
        "progress=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        outputs=tmp_path,
        cache=tmp_path / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_json(tmp_path / "sweep" / "failed.json") == []
    assert not (tmp_path / "sweep" / "1").exists()  # no judge job: the baseline is not judged against itself
