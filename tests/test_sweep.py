"""Sweeps through hydra_eval's sweeper: shards, retries, failed jobs, dry runs, resume (in-process and
submitit_local launchers; the real-Slurm tests are in test_slurm.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydra_eval.errors import UserError
from hydra_eval.outputs import read_json, read_jsonl
from tests.conftest import DATA_DIR
from tests.helpers import kill_after_first_block, run_cli, summary_lines


def hydra_eval(*args: str, tmp: Path, env: dict[str, str] | None = None, background: bool = False):
    return run_cli(
        *args,
        "tracking=none",
        "progress=false",
        outputs=tmp / "outputs",
        cache=tmp / "cache",
        env=env,
        background=background,
    )


def results_by_pair(sweep: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for path in sweep.rglob("results/*/*.json"):
        r = read_json(path)
        out[(r["model"], r["dataset"])] = r
    return out


def predictions(sweep: Path, model: str, dataset: str) -> list[dict]:
    [path] = [
        p for p in sweep.rglob(f"predictions/{model}/{dataset}.jsonl") if (p.parents[2] / "results").exists()
    ]
    return read_jsonl(path)


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "idx"} for r in rows]


@pytest.mark.process
@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_sharded_sweep_equals_unsharded_exactly(tmp_path, launcher):
    common = ["model=tiny_llama", "dataset=piqa,siqa", "dataset.limit=30", "checkpoint_every=8"]
    whole = hydra_eval("-m", *common, f"hydra.sweep.dir={tmp_path / 'whole'}", tmp=tmp_path / "a")
    assert whole.returncode == 0, whole.stderr[-3000:]
    extra = ["hydra/launcher=local", "hydra.launcher.max_num_workers=4"] if launcher == "local" else []
    sharded = hydra_eval(
        "-m",
        *common,
        "max_partition_size=10",
        *extra,
        f"hydra.sweep.dir={tmp_path / 'sharded'}",
        tmp=tmp_path / "b",
    )
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    plan = read_json(tmp_path / "sharded" / "plan.json")
    assert [(j["dataset"], j["shard"], j["shards"], j["rows"]) for j in plan] == [
        ("piqa", 0, 3, 8),
        ("piqa", 1, 3, 8),
        ("piqa", 2, 3, 14),
        ("siqa", 0, 3, 8),
        ("siqa", 1, 3, 8),
        ("siqa", 2, 3, 14),
    ]
    a, b = results_by_pair(tmp_path / "whole"), results_by_pair(tmp_path / "sharded")
    assert a.keys() == b.keys() == {("tiny_llama", "piqa"), ("tiny_llama", "siqa")}
    for pair in a:
        assert a[pair]["metrics"] == b[pair]["metrics"]
        assert a[pair]["n"] == b[pair]["n"] == 30
        assert strip(predictions(tmp_path / "whole", *pair)) == strip(predictions(tmp_path / "sharded", *pair))
    assert "siqa" in sharded.stdout and "piqa" in sharded.stdout  # one table, merged results


@pytest.mark.process
def test_a_job_that_fails_once_is_retried(tmp_path):
    marker = tmp_path / "marker"
    proc = hydra_eval(
        "-m",
        "model=tiny_llama",
        "dataset=piqa",
        "dataset.limit=5",
        "dataset.read_local=tests.helpers.fail_once",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        tmp=tmp_path,
        env={"HYDRA_EVAL_TEST_MARKER": str(marker)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists()
    assert "failed, attempt 1/3, retrying" in proc.stderr
    assert read_json(tmp_path / "sweep" / "failed.json") == []
    assert list(results_by_pair(tmp_path / "sweep")) == [("tiny_llama", "piqa")]
    assert "piqa" in proc.stdout


@pytest.mark.process
def test_failed_job_shows_dash_lists_its_log_and_exits_non_zero(tmp_path):
    # siqa's data is missing for every job (its hub is unreachable here): piqa succeeds, siqa fails twice
    data = tmp_path / "data"
    data.mkdir()
    (data / "piqa").symlink_to(DATA_DIR / "piqa")
    proc = hydra_eval(
        "-m",
        "model=tiny_llama,tiny_llama_b",
        "dataset=piqa,siqa",
        "dataset.limit=5",
        "dataset.hf_path=null",
        "retry=1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        tmp=tmp_path,
        env={"HYDRA_EVAL_DATA_DIR": str(data)},
    )
    assert proc.returncode == 1
    failed = read_json(tmp_path / "sweep" / "failed.json")
    assert sorted((f["model"], f["dataset"]) for f in failed) == [("tiny_llama", "siqa"), ("tiny_llama_b", "siqa")]
    assert all("no data for dataset 'siqa'" in f["error"] for f in failed)
    assert all(Path(f["log"]).is_file() for f in failed)
    assert "2 job(s) failed" in proc.stderr and failed[0]["log"] in proc.stderr
    assert "attempt 1/2, giving up" in proc.stderr and "retrying" not in proc.stderr  # bad input: not relaunched
    table = [line.split() for line in summary_lines(proc.stdout)]
    assert table[0] == ["dataset", "version", "metric", "mode", "tiny_llama", "tiny_llama_b"]
    assert ["siqa", "-", "-", "-", "-", "-"] in table
    assert any(row[0] == "piqa" and "-" not in row[4:] for row in table[2:])


@pytest.mark.process
def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    proc = hydra_eval(
        "-m",
        "model=tiny_llama,tiny_llama_b",
        "dataset=piqa",
        "dataset.limit=100",
        "max_partition_size=40",
        "checkpoint_every=20",
        "dry_run=true",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("dry run: 6 job(s) for 2 model x dataset pair(s)")
    assert [line.split()[1:5] for line in lines[2:]] == [
        [m, "piqa", f"{i}/3", rows]
        for m in ("tiny_llama", "tiny_llama_b")
        for i, rows in ((1, "20"), (2, "40"), (3, "40"))
    ]
    assert all(
        "SlurmLauncher" in line and "partition=gpu" in line and "cpus_per_task=1" in line for line in lines[2:]
    )
    assert not [p for p in (tmp_path / "sweep").iterdir() if p.name[0].isdigit()]
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("rows.jsonl"))


@pytest.mark.process
@pytest.mark.parametrize(("dataset", "limit"), [("piqa", 200), ("siqa", 48)])
def test_killed_job_resumes_from_its_last_saved_batch(tmp_path, dataset, limit):
    args = ["model=tiny_llama", f"dataset={dataset}", f"dataset.limit={limit}", "checkpoint_every=8"]
    reference = hydra_eval(*args, f"hydra.run.dir={tmp_path / 'reference'}", tmp=tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr[-3000:]

    job = hydra_eval(*args, f"hydra.run.dir={tmp_path / 'killed'}", tmp=tmp_path, background=True)
    saved = kill_after_first_block(job, tmp_path / "cache", "**/rows.jsonl")
    assert 8 <= saved < limit and saved % 8 == 0
    assert not (tmp_path / "killed" / "results").exists()

    rerun = hydra_eval(*args, f"hydra.run.dir={tmp_path / 'rerun'}", tmp=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    meta = read_json(tmp_path / "rerun" / "predictions" / "tiny_llama" / f"{dataset}.meta.json")
    assert meta["reused"]["cache"] >= saved and meta["reused"]["computed"] == limit - meta["reused"]["cache"]
    assert f"{meta['reused']['cache']} reused from cache" in rerun.stderr
    ref = read_jsonl(tmp_path / "reference" / "predictions" / "tiny_llama" / f"{dataset}.jsonl")
    got = read_jsonl(tmp_path / "rerun" / "predictions" / "tiny_llama" / f"{dataset}.jsonl")
    assert got == ref  # bit-identical: same batches, same numbers
    r1 = read_json(tmp_path / "reference" / "results" / "tiny_llama" / f"{dataset}.json")
    r2 = read_json(tmp_path / "rerun" / "results" / "tiny_llama" / f"{dataset}.json")
    assert r1["metrics"] == r2["metrics"]

    again = hydra_eval(*args, f"hydra.run.dir={tmp_path / 'again'}", tmp=tmp_path)
    meta = read_json(tmp_path / "again" / "predictions" / "tiny_llama" / f"{dataset}.meta.json")
    assert again.returncode == 0 and meta["reused"] == {"cache": limit, "folder": 0, "computed": 0}
    assert "loaded in" not in again.stderr  # nothing to compute: the model is not even loaded


@pytest.mark.process
def test_changed_prompt_never_reuses_cached_predictions(tmp_path):
    args = ["model=tiny_llama", "dataset=piqa", "dataset.limit=6"]
    assert hydra_eval(*args, f"hydra.run.dir={tmp_path / 'one'}", tmp=tmp_path).returncode == 0
    proc = hydra_eval(
        *args, "dataset.ppl.context='Q: {goal}\\nA:'", f"hydra.run.dir={tmp_path / 'two'}", tmp=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = read_json(tmp_path / "two" / "predictions" / "tiny_llama" / "piqa.meta.json")
    assert meta["reused"] == {"cache": 0, "folder": 0, "computed": 6}


@pytest.mark.process
def test_reuse_takes_matching_predictions_from_an_earlier_folder(tmp_path):
    args = ["model=tiny_llama", "dataset=piqa", "dataset.limit=6"]
    assert hydra_eval(*args, f"hydra.run.dir={tmp_path / 'first'}", tmp=tmp_path / "x").returncode == 0
    proc = hydra_eval(
        *args, f"reuse={tmp_path / 'first'}", f"hydra.run.dir={tmp_path / 'second'}", tmp=tmp_path / "y"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = read_json(tmp_path / "second" / "predictions" / "tiny_llama" / "piqa.meta.json")
    assert meta["reused"] == {"cache": 0, "folder": 6, "computed": 0}
    first = read_json(tmp_path / "first" / "results" / "tiny_llama" / "piqa.json")
    second = read_json(tmp_path / "second" / "results" / "tiny_llama" / "piqa.json")
    assert first["metrics"] == second["metrics"]
    assert json.dumps(first["fingerprints"]) == json.dumps(second["fingerprints"])


@pytest.mark.process
def test_local_pool_pins_each_job_to_its_own_gpus(tmp_path):
    """Four GPU ids, jobs of two GPUs each: at most two jobs run at once, on disjoint GPU sets. (No GPU
    here: the ids are only handed out; the tiny model runs on the CPU whatever CUDA_VISIBLE_DEVICES says.)"""
    sweep = tmp_path / "sweep"
    proc = hydra_eval(
        "-m",
        "hydra/launcher=local",
        "hydra.launcher.gpus=[0,1,2,3]",
        "model=tiny_llama",
        "model.num_gpus=2",
        "model.device=cpu",
        "dataset=piqa",
        "dataset.limit=4,5,6",
        f"hydra.sweep.dir={sweep}",
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [read_json(sweep / str(i) / "job.json") for i in range(3)]
    assert {j["cuda_visible_devices"] for j in jobs} <= {"0,1", "2,3"}
    assert len({j["cuda_visible_devices"] for j in jobs}) == 2
    assert len(results_by_pair(sweep)) == 3  # piqa[limit=4], piqa[limit=5], piqa[limit=6]


@pytest.mark.process
def test_a_suite_expands_to_its_datasets(tmp_path):
    proc = hydra_eval("-m", "suite=commonsense", "model=tiny_llama,tiny_llama_b", "dry_run=true", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("dry run: 14 job(s) for 14 model x dataset pair(s)")
    datasets = [line.split()[2] for line in lines[2:]]
    assert datasets[:7] == ["piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq"]
    chosen = hydra_eval("-m", "suite=commonsense", "dataset=piqa,siqa", "dry_run=true", tmp=tmp_path)
    assert [line.split()[2] for line in chosen.stdout.splitlines()[2:]] == ["piqa", "siqa"]  # the command wins
    reasoning = hydra_eval("-m", "suite=reasoning", "dataset.execution.allow=true", "dry_run=true", tmp=tmp_path)
    assert reasoning.returncode == 0, reasoning.stderr[-2000:]
    names = [line.split()[2] for line in reasoning.stdout.splitlines()[2:]]
    assert names == ["math500", "aime24", "aime25", "bbh", "ifeval", "mmlu_pro", "mbpp", "gsm8k"]
    oc = hydra_eval("-m", "suite=opencompass_base", "dataset.execution.allow=true", "dry_run=true", tmp=tmp_path)
    assert oc.returncode == 0, oc.stderr[-2000:]
    names = [line.split()[2] for line in oc.stdout.splitlines()[2:]]
    assert names[:5] == ["mmlu", "ceval_oc", "cmmlu_oc", "agieval", "race"] and len(names) == 14
    glob = hydra_eval("-m", "dataset=glob(arc_*)", "model=tiny_llama", "dry_run=true", tmp=tmp_path)
    assert [line.split()[2] for line in glob.stdout.splitlines()[2:]] == ["arc_challenge", "arc_easy"]


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["suite=commonsense"], "add -m"),
        (["-m", "suite=nosuch"], "Could not find 'suite/nosuch'"),
        (["-m", "suite=commonsense,lmeval_mc"], "one suite per sweep"),
    ],
)
def test_suite_mistakes_are_one_line(tmp_path, args, needle):
    proc = hydra_eval(*args, "model=tiny_llama", tmp=tmp_path)
    assert proc.returncode == 1
    assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.process
def test_two_configurations_of_one_pair_are_sharded_and_merged_apart(tmp_path):
    sweep = tmp_path / "sweep"
    proc = hydra_eval(
        "-m",
        "model=tiny_llama",
        "dataset=piqa",
        "dataset.limit=20",
        "checkpoint_every=5",
        "max_partition_size=10",
        "dataset.ppl.target_delimiter=' ',' | '",
        f"hydra.sweep.dir={sweep}",
        tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = sorted(sweep.glob("merged_*/results/tiny_llama/piqa*.json"))
    assert len(merged) == 2
    assert len({read_json(p)["version"] for p in merged}) == 2
    assert {read_json(p)["dataset"] for p in merged} == {
        "piqa[ppl.target_delimiter=' ']",
        "piqa[ppl.target_delimiter=' | ']",
    }


def test_prediction_store_survives_a_torn_line(tmp_path):
    from hydra_eval.cache import PredictionStore, latest_run

    store = PredictionStore(tmp_path, {"any": "identity"})
    a, c = {"schema_version": 2, "key": "ka", "v": "a"}, {"schema_version": 2, "key": "kc", "v": "c"}
    store.append([a, {"key": "kd", "v": "a row of the format before versions"}])
    with store.rows_path.open("ab") as f:
        f.write(b'{"schema_version": 2, "key": "kb", "v": "cut sh')  # a write that kill -9 interrupted
    store.append([c])  # a later job appends without loading first
    assert store.load() == {"ka": a, "kc": c}  # the torn line and the unversioned row are computed again
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "current").mkdir()
    assert latest_run(tmp_path, tmp_path / "runs" / "current") == tmp_path / "runs" / "old"


def test_gpu_ids_are_the_visible_ones(monkeypatch):
    from hydra_plugins.hydra_eval_plugins.launchers import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert visible_gpus() == [4, 5]


def test_jobs_of_one_model_on_one_dataset_are_named_by_the_overrides_that_differ():
    from hydra_eval.columns import names

    def job(*overrides: str, model: str = "fake", dataset: str = "piqa") -> tuple[list[str], str, str]:
        return [f"model={model}", f"dataset={dataset}", *overrides], model, dataset

    grid = [job(f"model.seed={s}", f"dataset.limit={n}") for s in (1, 2) for n in (10, 20)]
    assert names(grid) == [
        ("fake[seed=1]", "piqa[limit=10]"),
        ("fake[seed=1]", "piqa[limit=20]"),
        ("fake[seed=2]", "piqa[limit=10]"),
        ("fake[seed=2]", "piqa[limit=20]"),
    ]
    models = [job("dataset.limit=10", model=m) for m in ("fake", "fake_b")]  # nothing shared: names as they are
    assert names(models) == [("fake", "piqa"), ("fake_b", "piqa")]
    launcher = [job(f"hydra.launcher.timeout_min={t}", "model.seed=1") for t in (10, 20)]  # other keys: the column
    assert [m for m, _ in names(launcher)] == [f"fake[hydra.launcher.timeout_min={t}]" for t in (10, 20)]
    paths = [job(f"dataset.path={p}", dataset="custom") for p in ("/data/a.jsonl", "/data/b.jsonl")]
    assert [d for _, d in names(paths)] == ["custom[path=a.jsonl]", "custom[path=b.jsonl]"]  # no `/` in a name
    for same in (
        [job("model.seed=1"), job("model.seed=1")],
        [job(f"dataset.path={p}", dataset="custom") for p in ("/data/a.jsonl", "/other/a.jsonl")],
    ):
        with pytest.raises(UserError, match=r"one cell of the summary table") as e:
            names(same)
        assert "\n" not in str(e.value)


def test_a_name_override_reads_back_as_the_name():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from hydra_eval.columns import override

    parser = OverridesParser.create()
    for name in ("fake[seed=1]", "piqa[ppl.target_delimiter=' | ']", "it's\\ [x=${y}]", 'q"[a=b\\]', "b\\\\'"):
        value = parser.parse_override(override("model.name", name)).value()
        assert OmegaConf.create({"name": value}).name == name  # as the composed config holds it


def test_a_served_model_named_by_its_settings_still_asks_for_the_model_it_serves(compose_cfg):
    """An API model without model.api.model asks the server for model.name: naming the column changes
    model.name, so the name asked for is pinned."""
    from hydra_eval.config import typed
    from hydra_eval.plan import expand

    combos = [["model=openai_gpt4o_mini", "model.api.model=null", f"model.seed={s}"] for s in (1, 2)]
    plan = expand(combos, lambda overrides: compose_cfg(*overrides), lambda cfg: 0)
    assert [job.model for job in plan] == ["openai_gpt4o_mini[seed=1]", "openai_gpt4o_mini[seed=2]"]
    cfg = typed(compose_cfg(*plan[1].overrides))
    assert (cfg.model.name, cfg.model.api.model) == ("openai_gpt4o_mini[seed=2]", "openai_gpt4o_mini")


@pytest.mark.process
@pytest.mark.parametrize(
    ("sweep", "columns", "rows"),
    [
        (["model.seed=1,2,3", "dataset.limit=20"], ["fake[seed=1]", "fake[seed=2]", "fake[seed=3]"], ["piqa"]),
        (["dataset.limit=10,20,40"], ["fake"], ["piqa[limit=10]", "piqa[limit=20]", "piqa[limit=40]"]),
    ],
)
def test_a_sweep_over_a_setting_shows_every_job(tmp_path, sweep, columns, rows):
    """Two jobs of one model on one dataset never share a cell: the settings that differ name their column
    (model settings) or their row (dataset settings) in the table, the CSV, comparison.json and report.html."""
    folder = tmp_path / "sweep"
    proc = hydra_eval("-m", "model=fake", "dataset=piqa", *sweep, f"hydra.sweep.dir={folder}", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line.split("  ") for line in summary_lines(proc.stdout)]
    header = [cell.strip() for cell in table[0] if cell.strip()]
    assert header == ["dataset", "version", "metric", "mode", *columns]
    assert sorted(line[0].strip() for line in table[2:]) == rows
    assert sorted(results_by_pair(folder)) == sorted((m, d) for m in columns for d in rows)
    (csv,) = (folder / "summary").glob("summary_*.csv")
    lines = csv.read_text().splitlines()
    assert lines[0].split(",")[4:] == columns and len(lines) == 1 + len(rows)
    assert all("-" not in line.split(",")[4:] for line in lines[1:])
    comparison = read_json(folder / "summary" / "comparison.json")
    assert comparison["models"] == columns
    assert {(i["model"], i["dataset"]) for i in comparison["intervals"]} == {(m, d) for m in columns for d in rows}
    if len(columns) > 1:
        assert {(p["model_a"], p["model_b"]) for p in comparison["pairs"]} == {
            (columns[0], columns[1]),
            (columns[0], columns[2]),
            (columns[1], columns[2]),
        }
    page = (folder / "summary" / "report.html").read_text()
    assert all(f'"{name}"' in page for name in [*columns, *rows])


@pytest.mark.parametrize(
    ("error", "again"),
    [(RuntimeError("killed"), True), (UserError("bad input"), False), (ModuleNotFoundError("no module x"), False)],
)
def test_a_missing_module_is_not_relaunched(error, again):
    """An ImportError comes back on every launch (a wheel without a subpackage was retried 3 times per job)."""
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.hydra_eval_plugins.sweeper import _retryable

    ret = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert _retryable(ret) is again
