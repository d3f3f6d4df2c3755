"""Model comparison: the statistics on known answers, the comparison of jobs, the table, the report page."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hydra_eval import compare, stats, summary
from hydra_eval.errors import UserError
from hydra_eval.results import Results, intervals
from hydra_eval.rowviews import JobViews, RowView, views
from tests.browser import browse
from tests.helpers import run_cli, summary_lines


def table_2x2(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[float], list[float]]:
    """Per-row 0/1 scores of two models from a paired 2x2 table."""
    a = [1.0] * both + [1.0] * a_only + [0.0] * b_only + [0.0] * neither
    b = [1.0] * both + [0.0] * a_only + [1.0] * b_only + [0.0] * neither
    return a, b


def exact_binomial_two_sided(k: int, n: int) -> float:
    """The textbook exact McNemar p-value: 2 x P(X <= min(k, n - k)), X ~ Bin(n, 1/2), capped at 1."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize(
    ("a_only", "b_only", "p"),
    [
        (1, 9, 0.021484375),  # 2 * (1 + 10) / 1024
        (0, 5, 0.0625),  # 2 / 32
        (3, 3, 1.0),
        (0, 0, 1.0),  # no discordant pairs
        (2, 12, 2 * (1 + 14 + 91) / 2**14),
    ],
)
def test_mcnemar_exact_on_textbook_tables(a_only, b_only, p):
    assert stats.mcnemar_exact(a_only, b_only) == pytest.approx(p, rel=1e-12)
    assert stats.mcnemar_exact(a_only, b_only) == pytest.approx(exact_binomial_two_sided(b_only, a_only + b_only))


def test_paired_on_a_constructed_table_counts_the_discordant_rows():
    a, b = table_2x2(both=40, a_only=3, b_only=11, neither=46)
    r = stats.paired([100 * x for x in a], [100 * x for x in b])  # percent scores: still McNemar's
    assert r.test == "mcnemar_exact" and r.discordant == (3, 11) and r.n == 100
    assert r.diff == pytest.approx(8.0) and r.a == pytest.approx(43.0) and r.b == pytest.approx(51.0)
    assert r.p == pytest.approx(exact_binomial_two_sided(3, 14))
    assert r.low < r.diff < r.high


def test_two_identical_models_differ_by_exactly_zero_with_p_one():
    a, _ = table_2x2(30, 5, 7, 58)
    same = stats.paired(a, list(a))
    assert (same.diff, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    graded = stats.paired([0.2, 0.5, 0.9], [0.2, 0.5, 0.9])
    assert (graded.diff, graded.low, graded.high, graded.p) == (0.0, 0.0, 0.0, 1.0)
    both = stats.macro([(a, list(a)), ([0.1, 0.7], [0.1, 0.7])])
    assert (both.diff, both.low, both.high, both.p) == (0.0, 0.0, 0.0, 1.0)


def test_sign_flip_test_is_exact_for_few_rows():
    # four positive differences: only all-plus and all-minus of the 16 sign patterns are as extreme
    r = stats.paired([0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4])
    assert r.test == "sign_flip_exact" and r.p == pytest.approx(2 / 16)
    r = stats.paired([0.5, 0.5, 0.5], [0.6, 0.4, 0.5])  # +0.1, -0.1, 0: every pattern is as extreme
    assert r.p == pytest.approx(1.0)


def test_paired_bootstrap_ci_matches_normal_theory_on_a_large_sample():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.2, 4000)
    b = a + rng.normal(0.03, 0.1, 4000)
    r = stats.paired(a.tolist(), b.tolist())
    d = b - a
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert r.test == "permutation" and r.p < 1e-3
    assert r.low == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert r.high == pytest.approx(d.mean() + half, abs=0.1 * half)


def test_the_statistics_are_seeded():
    a, b = table_2x2(50, 10, 16, 24)
    assert stats.paired(a, b) == stats.paired(a, b)
    assert stats.macro([(a, b), (b, a)]) == stats.macro([(a, b), (b, a)])


def test_interval_is_the_normal_95_percent_ci_of_the_mean():
    ci = stats.interval([100.0, 0.0, 100.0, 100.0])
    assert ci.value == 75.0 and ci.half == pytest.approx(1.959963984540054 * 50 / 2)


def record(
    model: str,
    metrics: dict[str, float],
    per_row: dict[str, Any] | None = None,
    ids: list[str] | None = None,
    **fields: Any,
) -> Results:
    """A Results as eval builds it: the CIs from its per-row values (or stderr)."""
    per_row = per_row or {}
    base: dict[str, Any] = {"dataset": "piqa", "version": "v1", "mode": "ppl", "n": len(ids or [])}
    base.update(data_source="", fingerprints={}, convention="", data_fingerprint="f1")
    return Results(
        model=model,
        metrics=metrics,
        per_row=per_row,
        ci=intervals(metrics, per_row),
        ids=tuple(ids or ()),
        **{**base, **fields},
    )


def job(model: str, scores: dict[str, float], version: str = "v1", fingerprint: str = "f1") -> Results:
    values = list(scores.values())
    metrics = {"accuracy": sum(values) / len(values)}
    return record(
        model, metrics, {"accuracy": scores}, list(scores), version=version, data_fingerprint=fingerprint
    )


def job_views(j: Results) -> JobViews:
    return JobViews(
        j.model, j.dataset, {i: RowView("q" + i, "g", str(int(v)), "") for i, v in j.scores["accuracy"].items()}
    )


def test_compare_pairs_rows_by_id_and_refuses_different_rows_or_versions():
    a = job("a", {str(i): 100.0 * (i % 2) for i in range(40)})
    b = job("b", {str(i): 100.0 for i in range(40)})
    c = compare.compare([a, b])
    (pair,) = c.pairs
    assert (pair.a, pair.b, pair.result.discordant) == ("a", "b", (0, 20)) and pair.result.significant
    assert c.mark("piqa", "v1", "accuracy", "b") and not c.mark("piqa", "v1", "accuracy", "a")
    fewer = compare.compare([a, job("b", {"0": 100.0})])  # another limit of the same data
    assert not fewer.pairs and "scored different rows (40 and 1 rows, 1 shared)" in fewer.refused[0]
    other_data = compare.compare([a, job("b", {str(i): 100.0 for i in range(40)}, fingerprint="f2")])
    assert not other_data.pairs and "data fingerprints f1 and f2" in other_data.refused[0]
    other_version = compare.compare([a, job("b", {"0": 100.0}, version="v2")])
    assert not other_version.pairs and "differ in version" in other_version.refused[0]
    with pytest.raises(UserError, match="viz.baseline=zz is not one of the models compared: a, b"):
        compare.compare([a, b], baseline="zz")


def test_the_table_shows_each_value_with_its_ci_and_marks_significant_differences():
    a = job("a", {str(i): 100.0 * (i % 2) for i in range(40)})
    b = job("b", {str(i): 100.0 for i in range(40)})
    results = [a, b]
    c = compare.compare([a, b])
    rows = summary.table(results, comparison=c)
    assert rows[1][4:] == ["50.00 ± 15.69", "100.00 ± 0.00 *"]
    assert summary.table(results, comparison=c, ci=False)[1][4:] == ["50.00", "100.00 *"]
    paired = compare.paired_rows(c)
    assert paired[0] == compare.PAIRED_HEADER and paired[1][:5] == ["piqa", "accuracy", "a", "b", "40"]
    assert paired[1][7] == "+50.00 *" and paired[1][10] == "mcnemar_exact"


def test_lmeval_rows_give_per_row_scores_in_the_jobs_unit():
    from hydra_eval import lmeval

    metrics = {"arc_easy/acc": 50.0, "arc_easy/acc_stderr": 35.0, "lambada/perplexity": 12.0}
    rows = [
        {"task": "arc_easy", "doc_id": 0, "prompt": "Q0", "target": 1,
         "filtered": {"none": [[-2.0, False], [-1.0, False]]}, "metrics": {"acc": 1.0}},
        {"task": "arc_easy", "doc_id": 1, "prompt": "Q1", "target": 1,
         "filtered": {"none": [[-1.0, False], [-3.0, False]]}, "metrics": {"acc": 0.0}},
        {"task": "lambada", "doc_id": 0, "prompt": "P", "target": "x", "filtered": {"none": [[-5.0, True]]},
         "metrics": {"perplexity": -5.0}},
    ]  # fmt: skip
    scores = lmeval.per_row(metrics, rows)
    assert scores == {"arc_easy/acc": {"arc_easy:0": 100.0, "arc_easy:1": 0.0}}  # perplexity is no mean of rows
    shown = views("lmeval", rows)
    assert shown["arc_easy:0"].answer == "1" and shown["arc_easy:1"].answer == "0"


def test_native_rows_give_scores_views_and_rates():
    from hydra_eval import metrics as metric_fns
    from hydra_eval.records import Verdict
    from hydra_eval.schema import Metric

    verdicts = [
        Verdict(correct=True, extracted=True, answer="4", correct_strict=False),
        Verdict(correct=False, extracted=True, answer=None, correct_strict=False),
    ]
    values = metric_fns.per_row((Metric.accuracy, Metric.accuracy_strict), verdicts)
    per_row = {name: dict(zip(["0", "1"], v, strict=True)) for name, v in values.items()}
    j = record("m", {"accuracy": 50.0, "accuracy_strict": 0.0}, per_row, ["0", "1"], dataset="gsm8k",
               mode="gen", n=2, diagnostics={"length_capped": 50.0, "no_answer": 50.0})  # fmt: skip
    assert j.scores["accuracy"] == {"0": 100.0, "1": 0.0} and j.scores["accuracy_strict"] == {"0": 0.0, "1": 0.0}
    rows = [
        {"id": "0", "gold": 0, "prompt": "x" * 3000 + "Q?", "generation": "so 4", "answers": ["4"], "answer": "4",
         "correct": True, "correct_strict": False},
        {"id": "1", "gold": 0, "prompt": "Q2", "generation": "...", "answers": ["5"], "answer": None,
         "correct": False, "correct_strict": False},
    ]  # fmt: skip
    shown = views("gen", rows)
    assert shown["0"].prompt.endswith("Q?") and shown["0"].prompt.startswith("… ")  # the question is kept
    assert (shown["1"].answer, shown["1"].gold) == ("(none)", "5")
    assert j.rates == {"no_answer": 50.0, "truncated": 50.0}


@pytest.mark.process
def test_a_sweep_prints_the_paired_table_and_writes_comparison_files(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "model=tiny_llama,tiny_llama_b",
        "dataset=piqa,arc_easy",
        "dataset.limit=12",
        "tracking=none",
        "progress=false",
        f"hydra.sweep.dir={sweep}",
        outputs=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = summary_lines(proc.stdout)
    assert all(" ± " in line for line in table[2:])
    rest = proc.stdout.splitlines()[len(table) + 1 :]
    assert rest[0].startswith("paired on the rows both models scored")
    assert rest[1].split()[:4] == ["dataset", "metric", "A", "B"]
    assert any(line.startswith("macro average") for line in rest)
    folder = sweep / "summary"
    comparison = json.loads((folder / "comparison.json").read_text())
    assert {p["dataset"] for p in comparison["pairs"]} == {"piqa", "arc_easy"}
    assert all(p["n"] == 12 and p["model_a"] == "tiny_llama" for p in comparison["pairs"])
    assert list(folder.glob("paired_*.csv")) and list(folder.glob("paired_*.md"))
    quiet = run_cli("mode=viz", "viz.ci=false", f"hydra.run.dir={sweep}", outputs=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not any(" ± " in line for line in summary_lines(quiet.stdout))


def predictions(folder: Path, model: str, dataset: str) -> dict[str, Any]:
    path = next(folder.glob(f"*/judged/{model}/{dataset}.jsonl"))
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.process
def test_report_html_opens_offline_in_a_real_browser(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "model=tiny_llama,tiny_llama_b",
        "dataset=piqa,gsm8k",
        "dataset.limit=10",
        "model.max_out_len=16",
        "tracking=none",
        "progress=false",
        f"hydra.sweep.dir={sweep}",
        outputs=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = sweep / "summary" / "report.html"
    page = report.read_text()
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=", page) and "@import" not in page  # all inline
    dom = browse(tmp_path, report.as_uri(), "--dump-dom")
    heat = re.findall(r'<td class="v" data-model="([^"]+)" data-value="([^"]+)"', dom)
    assert sorted({m for m, _ in heat}) == ["tiny_llama", "tiny_llama_b"] and len(heat) == 4
    assert len(re.findall(r'class="bar"', dom)) == 4 and len(re.findall(r'class="ci"', dom)) == 4
    assert "mcnemar_exact" in dom  # the paired table
    # the browser opens on the first dataset (gsm8k): exactly the rows where the two answers differ
    a, b = predictions(sweep, "tiny_llama", "gsm8k"), predictions(sweep, "tiny_llama_b", "gsm8k")
    differ = sorted((i for i in a if a[i]["answer"] != b[i]["answer"]), key=int)
    assert differ  # random tiny models: some answers differ
    listed = re.findall(r'<tr data-id="([^"]+)" class="disagree">', dom)
    assert listed == differ
    assert re.search(rf'data-count="{len(differ)}"', dom)
    shot = tmp_path / "report.png"
    browse(tmp_path, report.as_uri(), f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000


@pytest.mark.process
def test_an_unknown_baseline_is_refused_before_any_job_runs(tmp_path):
    proc = run_cli(
        "-m", "model=tiny_llama,tiny_llama_b", "dataset=piqa", "viz.baseline=tiny_llam", "tracking=none",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", outputs=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "viz.baseline=tiny_llam is not one of this sweep's models: tiny_llama, tiny_llama_b" in proc.stderr
    assert not list((tmp_path / "sweep").glob("*/predictions"))


def test_rows_that_do_not_average_to_the_metric_are_not_its_rows(compose_cfg):
    # num_samples > 1: pass@1 is the mean of c/n per row, `correct` only the first sample's verdict
    from hydra_eval import tasks
    from hydra_eval.records import Verdict

    cfg = compose_cfg("dataset=gsm8k", "dataset.gen.num_samples=2")
    from hydra_eval.config import typed

    dataset = typed(cfg).dataset
    verdicts = [
        Verdict(correct=True, sample_correct=(True, False)),
        Verdict(correct=True, sample_correct=(False, False)),
    ]
    assert tasks.per_row(dataset, None, ["0", "1"], verdicts) == {}  # type: ignore[arg-type]
    nan = record("m", {"accuracy": float("nan")})
    assert nan.scores == {} and nan.ci == {}
    with pytest.raises(ValueError, match="finite"):
        stats.paired([1.0, float("nan")], [1.0, 0.0])


def test_the_report_survives_nan_values_and_html_in_rows():
    from hydra_eval import report

    a = job("a", {"0": 100.0, "1": 0.0})
    b = job("b", {"0": 0.0, "1": 0.0})
    shown = [job_views(a), job_views(b)]
    shown[1].views["0"] = RowView("<!--<script>alert(1)</script>", "</script>", "x", "y")
    results = [
        record("a", {"accuracy": 50.0}),
        record("b", {"accuracy": float("nan")}),
    ]
    page = report.render(results, shown, compare.compare([a, b]), [])
    block = page.split('<script type="application/json" id="data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block  # nothing in the data can close the block or open a comment
    data = json.loads(block)
    assert data["heat"][0]["values"] == {"a": 50.0, "b": None}
    assert data["rows"]["piqa"][0]["by"]["b"]["answer"] == "x"


def test_the_summary_is_written_when_the_comparison_fails(tmp_path, caplog):
    from hydra_eval.schema import VizConfig

    a = job("a", {"0": 100.0})
    results = [a]
    text = summary.write(tmp_path, records=results, views=[job_views(a)], viz=VizConfig(baseline="zz"))
    assert text.splitlines()[2].split()[:5] == ["piqa", "v1", "accuracy", "ppl", "100.00"]
    assert "no model comparison" in caplog.text and "viz.baseline=zz" in caplog.text
    (csv,) = tmp_path.glob("summary/summary_*.csv")
    assert csv.read_text().splitlines()[1] == "piqa,v1,accuracy,ppl,100.00"  # numbers only


def brute_ratio_permutation(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """The exact permutation p-value by hand: every way of swapping the two models' (num, den) row by row."""

    def ratio(rows: list[tuple[float, float]]) -> float:
        return sum(n for n, _ in rows) / sum(d for _, d in rows)

    observed = abs(ratio(b) - ratio(a))
    hits = total = 0
    for mask in range(2 ** len(a)):
        sa = [b[i] if mask >> i & 1 else a[i] for i in range(len(a))]
        sb = [a[i] if mask >> i & 1 else b[i] for i in range(len(a))]
        total += 1
        hits += abs(ratio(sb) - ratio(sa)) >= observed - 1e-12
    return hits / total


def test_paired_ratio_equals_the_mean_test_with_equal_weights_and_brute_force_otherwise():
    a, b = [0.0, 0.5, 1.0, 0.5, 0.0], [1.0, 0.5, 1.0, 1.0, 0.5]
    means = stats.paired(a, b)
    ratio = stats.paired_ratio([(x, 1.0) for x in a], [(y, 1.0) for y in b])
    assert (ratio.a, ratio.b, ratio.diff) == pytest.approx((means.a, means.b, means.diff))
    assert ratio.p == pytest.approx(means.p) and ratio.test == "ratio_permutation_exact"
    # win-rate rows: weighted verdicts (a strong verdict weighs 3) over their weights, a parse failure left out
    a2 = [(100.0, 2.0), (50.0, 2.0), (0.0, 1.0), (300.0, 4.0), (0.0, 0.0), (150.0, 2.0)]
    b2 = [(200.0, 2.0), (300.0, 4.0), (100.0, 2.0), (300.0, 4.0), (100.0, 1.0), (0.0, 2.0)]
    r = stats.paired_ratio(a2, b2)
    assert r.a == pytest.approx(600 / 11) and r.b == pytest.approx(1000 / 15)
    assert r.diff == pytest.approx(1000 / 15 - 600 / 11)
    assert r.p == pytest.approx(brute_ratio_permutation(a2, b2)) and r.test == "ratio_permutation_exact"
    assert r.low < r.diff < r.high and r == stats.paired_ratio(a2, b2)  # seeded
    same = stats.paired_ratio(a2, list(a2))
    assert (same.diff, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="every denominator is 0"):
        stats.paired_ratio([(0.0, 0.0)], [(1.0, 1.0)])


def test_judged_jobs_are_compared_on_their_judge_scores(compose_cfg):
    """Two models on MT-Bench, their answers rated 7 and 3 by the judge: the paired test of the judge's score
    (both turns rated on every question: equal weights, the per-question means), not a verdict field's."""
    from hydra_eval import results as records
    from hydra_eval.outputs import JobFiles
    from hydra_eval.pipeline import run

    jobs = []
    for model, reply in (("fake", "[[7]]"), ("fake_b", "[[3]]")):
        cfg = compose_cfg(f"model={model}", "model.chat_template=true", "judge=fake", f"judge.reply='{reply}'",
                          "dataset=mt_bench", "dataset.limit=4")  # fmt: skip
        assert run(cfg, print_summary=False) is not None
        jobs.append(records.read(JobFiles(Path(cfg.output_dir), model, "mt_bench").results))
    assert jobs[0].ratios["score"] == {i: (14.0, 2.0) for i in jobs[0].ids}  # two turns, 7 each
    assert "score" not in jobs[0].scores
    c = compare.compare(jobs)
    [pair] = [p for p in c.pairs if p.metric == "score"]
    assert (pair.result.a, pair.result.b, pair.result.diff, pair.result.n) == (7.0, 3.0, -4.0, 4)
    assert pair.result.test == "sign_flip_exact" and pair.result.p == pytest.approx(2 / 16)
    assert not [p for p in c.pairs if p.metric.startswith("score/")]  # per-category means: no rows of their own


def test_judge_rows_are_the_very_verdicts_the_score_aggregates():
    from hydra_eval.judging import scores
    from hydra_eval.records import Judgment
    from hydra_eval.schema import JudgeMode, JudgeSettings

    def judgment(i: str, game: int, score: float | None, weight: int) -> Judgment:
        return Judgment(int(i), i, 0, game, "k", "", None if score is None else "v", score, weight)

    judgments = [
        judgment("0", 1, 1.0, 3),
        judgment("0", 2, None, 1),
        judgment("1", 1, 0.5, 1),
        judgment("1", 2, 0.0, 1),
    ]
    settings = JudgeSettings(mode=JudgeMode.pairwise, baseline="b")
    ratios = scores.per_row(settings, ["0", "1"], judgments)
    assert ratios["win_rate"]["0"] == (300.0, 3.0)
    rows = ratios["win_rate"].values()
    reported = scores.compute(settings, ["0", "1"], judgments)["win_rate"]
    assert sum(n for n, _ in rows) / sum(d for _, d in rows) == pytest.approx(reported) == 70.0


def test_judge_rows_read_back_from_the_results_artifact_give_the_same_ratios(compose_cfg):
    """viz.source=mlflow reads each run's results artifact: the same record, ratios and CIs as the file."""
    from hydra_eval import results as records
    from hydra_eval.outputs import JobFiles, read_json
    from hydra_eval.pipeline import run

    cfg = compose_cfg("model=fake", "model.chat_template=true", "judge=fake", "judge.reply='[[6]]'",
                      "dataset=mt_bench", "dataset.limit=3")  # fmt: skip
    assert run(cfg, print_summary=False) is not None
    files = JobFiles(Path(cfg.output_dir), "fake", "mt_bench")
    written = records.read(files.results)
    again = Results.from_json(json.loads(json.dumps(read_json(files.results))), "artifact")
    assert again.ratios == written.ratios and again.ci == written.ci
    assert written.ratios["score"]


def test_judge_parse_failures_are_a_share_of_the_judge_calls_and_a_pair_without_verdicts_is_named():
    """MT-Bench: 10 questions, 20 judge calls (two turns), none parsed (SmolLM2-135M as the judge): 100% of the
    calls failed (not 200% of the rows), and the comparison says why the pair has no test."""
    from hydra_eval.results import JudgeMeta

    judge = JudgeMeta("j", None, "single", "rating", "p1")
    diagnostics = {"judge_calls": 20.0, "judge_parse_failures": 20.0}
    jobs = [
        record(m, {"score": math.nan}, {}, [str(i) for i in range(10)], dataset="mt_bench", version="v",
               mode="gen", n=10, judge=judge, diagnostics=diagnostics)
        for m in ("a", "b")
    ]  # fmt: skip
    assert jobs[0].rates == {"judge_parse_failures": 100.0} and jobs[0].ratios == {}
    c = compare.compare(jobs)
    assert c.pairs == [] and c.refused == [
        "mt_bench v: a and b: score: no judge verdict parsed for a (all 20 judge calls failed); "
        "no judge verdict parsed for b (all 20 judge calls failed): not compared"
    ]


def test_rows_that_repeat_an_id_are_not_paired_and_the_comparison_says_why(compose_cfg):
    """ids a,a,b,b,c,c,d,d (a file from before ids were checked): pairing by id would test 4 rows of 8 and take
    each model's CI from those 4 (±56.58); the CI is the job's own (n = 8) and the pair is named as refused."""
    from hydra_eval import tasks
    from hydra_eval.config import typed
    from hydra_eval.records import Verdict
    from hydra_eval.schema import Metric

    class AccuracyJudge:
        default_metrics = (Metric.accuracy,)

    ids = ["a", "a", "b", "b", "c", "c", "d", "d"]
    jobs = []
    for model, correct in (("x", [1, 1, 0, 0, 1, 1, 0, 0]), ("y", [1, 1, 1, 1, 0, 0, 0, 0])):
        verdicts = [Verdict(correct=bool(c)) for c in correct]
        dataset = typed(compose_cfg("dataset=piqa")).dataset
        per_row = tasks.per_row(dataset, AccuracyJudge(), ids, verdicts)
        metrics = {"accuracy": 50.0, "accuracy_stderr": 100 * math.sqrt(2 / 7) / math.sqrt(8)}
        jobs.append(record(model, metrics, per_row, ids, dataset="custom", version="v", n=8))
    assert jobs[0].scores == {}
    c = compare.compare(jobs)
    assert c.intervals[("custom", "v", "accuracy", "x")].half == pytest.approx(37.04, abs=0.01)
    assert c.pairs == [] and c.refused == [
        "custom v: x and y: x: 4 of 8 rows repeat an earlier row's id; y: 4 of 8 rows repeat an earlier row's id: "
        "not compared"
    ]


def test_every_comparison_not_made_is_named_with_its_reason():
    a = job("a", {str(i): 100.0 * (i % 2) for i in range(10)})
    b = job("b", {str(i): 100.0 for i in range(10)})
    no_rows = dataclasses.replace(b, model="c", per_row={}, ci={})  # pass@1 of several samples: no per-row mean
    elsewhere = dataclasses.replace(a, dataset="siqa")  # only a scored siqa
    c = compare.compare([a, b, no_rows, elsewhere], baseline="a")
    assert [(p.a, p.b) for p in c.pairs] == [("a", "b")]
    assert c.refused == [
        "piqa v1: a and c: no per-row scores of c's accuracy: not compared",
        "siqa: no result of b: not compared",
        "siqa: no result of c: not compared",
    ]
    newer = job("b", {str(i): 100.0 for i in range(10)}, version="v2")  # b again, with another prompt
    assert compare.compare([a, b, newer]).refused == ["piqa: version v2 of b only: not compared"]
