"""The tiny model end to end into a temp folder: both modes, the three stages, the CLI and a sweep."""

import json

import pytest

from hydra_eval.errors import UserError
from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run
from tests.conftest import ROOT
from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("dataset", "metrics"),
    [("piqa", {"accuracy"}), ("piqa_lmeval", {"acc", "acc_norm"}), ("siqa", {"accuracy"})],
)
def test_all_stages_in_one_job(compose_cfg, dataset, metrics, capsys):
    cfg = compose_cfg("model=tiny_llama", f"dataset={dataset}", "dataset.limit=12")
    results = run(cfg)
    assert results is not None and results["n"] == 12
    assert {k for k in results["metrics"] if not k.endswith("_stderr")} == metrics
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
    assert staged["metrics"] == together["metrics"]
    run(compose_cfg(*base, "mode=viz", f"output_dir={split}"))
    assert f"{together['metrics']['accuracy']:.2f}" in capsys.readouterr().out


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
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("dataset ", "piqa ", "siqa "))]
    assert [line.split()[0] for line in lines] == ["dataset", "piqa", "siqa"]
    assert [line.split()[3] for line in lines[1:]] == ["ppl", "gen"]
    assert len(list(tmp_path.glob("summary/summary_*.csv"))) == 1
    for job in ("0", "1"):
        assert (tmp_path / job / "hydra-eval.log").is_file()
        assert (tmp_path / job / "config.yaml").is_file()
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*/results/*/*.json")]
    assert sorted(r["dataset"] for r in results) == ["piqa", "siqa"]


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
