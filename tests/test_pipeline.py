"""The tiny model end to end into a temp folder: both modes, the three stages, the CLI and a sweep."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hydra_eval.errors import UserError
from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run
from tests.conftest import DATA_DIR, ROOT
from tests.helpers import record, run_cli, summary_lines


@pytest.mark.parametrize(
    ("dataset", "metrics"),
    [("piqa", {"accuracy"}), ("piqa_lmeval", {"acc", "acc_norm"}), ("siqa", {"accuracy", "length_capped"})],
)
def test_all_stages_in_one_job(compose_cfg, dataset, metrics, capsys):
    cfg = compose_cfg("model=tiny_llama", f"dataset={dataset}", "dataset.limit=12")
    results = run(cfg)
    assert results is not None and results.n == 12
    assert {k for k in results.metrics if not k.endswith("_stderr")} == metrics - {"length_capped"}
    assert ("length_capped" in results.diagnostics) == ("length_capped" in metrics)  # beside the scores
    out = cfg.output_dir
    rows = read_jsonl(__import__("pathlib").Path(out) / "judged" / "tiny_llama" / f"{dataset}.jsonl")
    assert len(rows) == 12 and all({"id", "gold", "pred", "correct"} <= r.keys() for r in rows)
    if dataset == "siqa":
        assert all("generation" in r and "answer" in r for r in rows)
    else:
        assert all(len(r["continuations"]) == 2 and len(r["scores"]) == 2 for r in rows)  # one shared context
        assert all(r["context"].endswith(("A:", "Answer:")) for r in rows)
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["dataset", "version", "metric", "mode", "tiny_llama"]
    assert f"{dataset}  " in table


def test_infer_then_eval_then_viz_equals_all(compose_cfg, tmp_path, capsys):
    base = ["model=tiny_llama", "dataset=piqa", "dataset.limit=10"]
    together = run(compose_cfg(*base, f"output_dir={tmp_path / 'all'}"))
    capsys.readouterr()
    split = tmp_path / "split"
    assert run(compose_cfg(*base, "mode=infer", f"output_dir={split}")) is None
    assert not (split / "results").exists()
    predictions = split / "predictions" / "tiny_llama" / "piqa.jsonl"
    written = predictions.read_bytes()
    # eval never builds the backend (a target that does not exist is never imported) ...
    staged = run(compose_cfg(*base, "mode=eval", "model._target_=no.such.backend", f"output_dir={split}"))
    assert staged is not None and together is not None
    assert predictions.read_bytes() == written  # ... and never rewrites what infer wrote
    assert all(r["schema_version"] == 2 for r in read_jsonl(predictions))
    assert staged.metrics == together.metrics
    run(compose_cfg(*base, "mode=viz", f"output_dir={split}"))
    assert f"{together.metrics['accuracy']:.2f}" in capsys.readouterr().out


def test_eval_without_predictions_is_a_user_error(compose_cfg):
    with pytest.raises(UserError, match="no predictions"):
        run(compose_cfg("model=tiny_llama", "mode=eval"))


def test_eval_refuses_predictions_of_another_prompt_version(compose_cfg, tmp_path):
    out = f"output_dir={tmp_path}"
    run(compose_cfg("model=tiny_llama", "dataset.limit=4", "mode=infer", out))
    with pytest.raises(UserError, match="version"):
        run(
            compose_cfg("model=tiny_llama", "dataset.limit=4", "mode=eval", "dataset.ppl.context='Q: {goal}'", out)
        )


def cli(*args, cwd=ROOT):
    return run_cli(*args, cwd=cwd, timeout=300)


@pytest.mark.process
def test_sweep_prints_one_table(tmp_path):
    proc = cli(
        "-m",
        "model=tiny_llama",
        "dataset=piqa,siqa",
        "dataset.limit=6",
        "tracking=none",
        "progress=false",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in summary_lines(proc.stdout) if line.startswith(("dataset ", "piqa ", "siqa "))]
    assert [line.split()[0] for line in lines] == ["dataset", "piqa", "siqa"]
    assert [line.split()[2:4] for line in lines[1:]] == [
        ["accuracy", "ppl"],
        ["accuracy", "gen"],
    ]  # length_capped is a diagnostic: a line under the table, not a metric row
    assert any(line.startswith("diagnostics: ") and "length_capped" in line for line in proc.stdout.splitlines())
    assert len(list(tmp_path.glob("summary/summary_*.csv"))) == 1
    for job in ("0", "1"):
        assert (tmp_path / job / "hydra-eval.log").is_file()
        assert (tmp_path / job / "config.yaml").is_file()
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*/results/*/*.json")]
    assert sorted(r["dataset"] for r in results) == ["piqa", "siqa"]


@pytest.mark.process
@pytest.mark.parametrize(
    ("override", "needle"),
    [("model=nosuch", "nosuch"), ("paths.data_dir=/nonexistent", "no data for dataset 'piqa'")],
)
def test_cli_errors_are_one_line(override, needle, tmp_path):
    proc = cli(override, "dataset.hf_path=null", "tracking=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert needle in lines[0], proc.stderr
    assert not any("Traceback" in line for line in lines)


# The fake backend (hydra_eval/backends/fake.py): the pipeline without weights


@pytest.mark.parametrize(
    ("dataset", "metric"), [("piqa", "accuracy"), ("piqa_lmeval", "acc"), ("siqa", "accuracy")]
)
def test_the_fake_backend_runs_every_stage_deterministically(compose_cfg, tmp_path, dataset, metric):
    base = ["model=fake", f"dataset={dataset}", "dataset.limit=20", "resume=false"]
    first = run(compose_cfg(*base, f"output_dir={tmp_path / 'a'}"), print_summary=False)
    second = run(compose_cfg(*base, f"output_dir={tmp_path / 'b'}"), print_summary=False)
    assert first is not None and second is not None
    assert first.metrics == second.metrics and metric in first.metrics
    a = (tmp_path / "a" / "predictions" / "fake" / f"{dataset}.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "predictions" / "fake" / f"{dataset}.jsonl").read_bytes()


def test_fake_replies_are_judged_by_the_extractor(compose_cfg):
    cfg = compose_cfg("model=fake", "model.reply='B. because'", "dataset=siqa", "dataset.limit=30")
    results = run(cfg, print_summary=False)
    assert results is not None
    rows = read_jsonl(Path(cfg.output_dir) / "judged" / "fake" / "siqa.jsonl")
    assert {r["answer"] for r in rows} == {"B"} and all(r["finish_reasons"] == ["eos"] for r in rows)
    gold_b = sum(r["gold"] == 1 for r in rows)
    assert results.metrics["accuracy"] == pytest.approx(100 * gold_b / 30)


@pytest.mark.process
def test_the_fake_backend_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_module\n"
        "from hydra_eval.config import setup\n"
        "from hydra_eval.pipeline import run\n"
        "setup()\n"
        "with initialize_config_module(config_module='hydra_eval.conf', version_base='1.3'):\n"
        f"    cfg = compose('config', ['model=fake', 'dataset.limit=5', 'tracking=none',\n"
        f"        'output_dir={tmp_path}', 'paths.data_dir={DATA_DIR}', 'paths.cache_dir={tmp_path / 'cache'}'])\n"
        "assert run(cfg, print_summary=False).n == 5\n"
        "assert 'torch' not in sys.modules, 'the fake backend imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_summary_table_aligns_cjk_names_by_display_width():
    """C-Eval/CMMLU subjects are Chinese: a CJK character takes two terminal columns, so columns are padded by
    display width, not by code points."""
    from hydra_eval.summary import display_width, table, to_text

    results = [
        record(
            "模型甲", "ceval", "abc123", "ppl", {"acc": 41.5, "acc/计算机网络": 52.63, "acc/college_physics": 30.0}
        ),
        record("smollm2_135m", "cmmlu", "def456", "ppl", {"acc/中国历史": 25.0}),
    ]
    lines = to_text(table(results)).splitlines()
    assert display_width("计算机网络") == 10 and display_width("acc") == 3

    def starts(line: str) -> list[int]:  # the terminal column where each cell begins
        cols, col, prev = [], 0, " "
        for i, ch in enumerate(line):
            if ch != " " and prev == " " and (i < 2 or line[i - 2 : i] == "  " or i == 0):
                cols.append(col)
            col += display_width(ch)
            prev = ch
        return cols

    header = starts(lines[0])
    assert len(header) == 6
    body = [starts(line) for line in lines[2:]]
    assert all(row[:4] == header[:4] for row in body)  # dataset, version, metric, mode line up
    assert {row[-1] for row in body if len(row) == 6} == {header[-1]}  # and the last model's column
    assert "acc/计算机网络" in lines[3] or "acc/计算机网络" in lines[4]


# The predictions cache keys each row by its own content (issue 29): more rows, an edited row, shards or an
# earlier folder compute only what is new; a changed prompt, model or setting never reuses a row


def infer_fake(compose_cfg, tmp_path, name, *overrides, cache="cache"):
    """mode=infer on the fake model into tmp_path/name with the cache tmp_path/cache: (reused counts, rows)."""
    cfg = compose_cfg(
        "model=fake",
        "mode=infer",
        f"paths.cache_dir={tmp_path / cache}",
        f"output_dir={tmp_path / name}",
        *overrides,
    )
    run(cfg, print_summary=False)
    folder = Path(cfg.output_dir) / "predictions" / "fake"
    meta = json.loads((folder / f"{cfg.dataset.name}.meta.json").read_text())
    return meta["reused"], read_jsonl(folder / f"{cfg.dataset.name}.jsonl")


def test_a_raised_limit_computes_only_the_new_rows(compose_cfg, tmp_path):
    reused, _ = infer_fake(compose_cfg, tmp_path, "a", "dataset=siqa", "dataset.limit=150")
    assert reused == {"cache": 0, "folder": 0, "computed": 150}
    reused, rows = infer_fake(compose_cfg, tmp_path, "b", "dataset=siqa", "dataset.limit=160")
    assert reused == {"cache": 150, "folder": 0, "computed": 10}
    _, fresh = infer_fake(compose_cfg, tmp_path, "c", "dataset=siqa", "dataset.limit=160", cache="fresh")
    assert rows == fresh  # the same file as a run that computed every row


def test_an_edited_row_is_the_only_one_computed_again(compose_cfg, tmp_path):
    data = tmp_path / "qa.jsonl"
    questions = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(20)]
    data.write_text("".join(json.dumps(q) + "\n" for q in questions))
    args = ("dataset=custom", f"dataset.path={data}", "dataset.mode=gen")
    assert infer_fake(compose_cfg, tmp_path, "a", *args)[0]["computed"] == 20
    questions[5]["question"] = "What is five plus five?"
    data.write_text("".join(json.dumps(q) + "\n" for q in questions))
    reused, rows = infer_fake(compose_cfg, tmp_path, "b", *args)
    assert reused == {"cache": 19, "folder": 0, "computed": 1}
    assert "five plus five" in rows[5]["prompt"] and [r["idx"] for r in rows] == list(range(20))


@pytest.mark.parametrize(
    "change", ["model.reply='B'", "model.seed=7", "model.max_out_len=3", "dataset.gen.template='Q: {question}'"]
)
def test_a_changed_model_prompt_or_setting_never_reuses_a_row(compose_cfg, tmp_path, change):
    base = ("dataset=siqa", "dataset.limit=6")
    assert infer_fake(compose_cfg, tmp_path, "a", *base)[0]["computed"] == 6
    assert infer_fake(compose_cfg, tmp_path, "b", *base, change)[0] == {"cache": 0, "folder": 0, "computed": 6}


def test_shards_and_a_whole_run_share_their_rows(compose_cfg, tmp_path):
    base = ("dataset=siqa", "dataset.limit=20", "checkpoint_every=4")
    shards = [
        infer_fake(compose_cfg, tmp_path, f"s{i}", *base, "shard.count=2", f"shard.index={i}") for i in (0, 1)
    ]
    assert sum(reused["computed"] for reused, _ in shards) == 20
    reused, rows = infer_fake(compose_cfg, tmp_path, "whole", *base)
    assert reused == {"cache": 20, "folder": 0, "computed": 0}
    assert rows == infer_fake(compose_cfg, tmp_path, "fresh", *base, cache="fresh")[1]


def test_reuse_takes_the_matching_rows_of_an_earlier_folder(compose_cfg, tmp_path):
    infer_fake(compose_cfg, tmp_path, "first", "dataset=siqa", "dataset.limit=10")
    again = ("dataset=siqa", "dataset.limit=12", f"reuse={tmp_path / 'first'}")
    reused, rows = infer_fake(compose_cfg, tmp_path, "second", *again, cache="other")
    assert reused == {"cache": 0, "folder": 10, "computed": 2}
    assert rows == infer_fake(compose_cfg, tmp_path, "fresh", "dataset=siqa", "dataset.limit=12", cache="fresh")[1]
    changed = infer_fake(compose_cfg, tmp_path, "third", *again, "model.reply='B'", cache="third")[0]
    assert changed == {"cache": 0, "folder": 0, "computed": 12}
