"""The Results record: written once by eval, read by everything downstream; older files refused in one line."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from hydra_eval import results as records
from hydra_eval.errors import UserError
from hydra_eval.results import FailedJob, JudgeMeta, Results
from tests.conftest import ROOT

PACKAGE = ROOT / "hydra_eval"


def test_a_results_file_of_an_older_version_is_refused_in_one_line(tmp_path):
    old = tmp_path / "piqa.json"
    old.write_text(
        json.dumps({"schema_version": 2, "model": "m", "dataset": "piqa", "metrics": {"accuracy": 1.0}})
    )
    with pytest.raises(UserError, match=r"results format version 2, .* reads version 3: rerun mode=eval") as e:
        records.read(old)
    assert "\n" not in str(e.value)


def test_a_record_survives_its_json_exactly():
    per_row = {"accuracy": {"0": 100.0, "1": 0.0}, "win_rate": {"0": (300.0, 3.0), "1": (50.0, 2.0)}}
    metrics = {"accuracy": 50.0, "accuracy_stderr": 50.0, "win_rate": 70.0, "perplexity": 3.5}
    judge = JudgeMeta("j", {"model": "x"}, "pairwise", "ab", "p1", baseline="b", requests=4)
    r = Results("m", "piqa", "v", "ppl", 2, "src", {"data": {"f": "h"}}, "c", metrics,
                diagnostics={"judge_calls": 4.0}, per_row=per_row, ci=records.intervals(metrics, per_row),
                ids=("0", "1"), judge=judge, data_fingerprint="abc")  # fmt: skip
    again = Results.from_json(json.loads(json.dumps(r.to_json())), "x")
    assert again == r and again.ratios == {"win_rate": per_row["win_rate"]} and set(again.scores) == {"accuracy"}
    assert set(r.ci) == {"accuracy"}  # a ratio's and a metric without rows or stderr: no CI here
    assert r.ci["accuracy"].value == 50.0 and math.isclose(r.ci["accuracy"].half, 1.959963984540054 * 50)


def test_failed_jobs_are_records():
    f = FailedJob("m", "piqa", "1/1", 3, "UserError: x", "/log", ("model=m",))
    assert FailedJob.from_json(json.loads(json.dumps(f.to_json()))) == f


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_only_the_records_module_indexes_a_results_dict():
    """Everything downstream reads typed fields: `results["` appears nowhere else in the package."""
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "results.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if 'results["' in line
    ]
    assert hits == []


def test_the_row_views_hold_no_metric_table_scale_guess_or_score():
    text = (PACKAGE / "rowviews.py").read_text(encoding="utf-8")
    assert "VERDICT_FIELD" not in text and "scale" not in text and "metrics" not in text
    assert not re.search(r'"task" in', text)  # no sniffing of lm-eval rows: the record's mode says so


def test_the_mlflow_mirror_imports_neither_the_comparison_nor_the_row_views():
    found = imports_of(PACKAGE / "tracking.py")
    banned = {"hydra_eval.compare", "hydra_eval.rowviews", "hydra_eval.summary"}
    assert not {m for m in found if m in banned or m.split(".")[-1] in {"compare", "rowviews", "summary"}}
