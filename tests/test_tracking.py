"""MLflow: a real `mlflow server` on 127.0.0.1, real sweeps of the tiny models, checked over the REST API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hydra_eval import tracking
from hydra_eval.outputs import JobFiles
from hydra_eval.pipeline import run
from tests.browser import browse, chromium_or_skip, visible_text
from tests.conftest import ROOT
from tests.helpers import run_cli, summary_lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """`mlflow server` with an SQLite store and proxied artifacts in a folder; stop and start keep both."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.folder}/mlflow.db",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--workers",
            "1",
        ]
        log = (self.folder / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not start: {(self.folder / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def api(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def runs(self, experiment: str) -> list[dict[str, Any]]:
        exp = self.api(f"experiments/get-by-name?experiment_name={experiment}")["experiment"]
        return self.api("runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100}).get(
            "runs", []
        )


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path / "mlflow")
    s.start()
    yield s
    s.stop()


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def sweep_state(server: MlflowServer, experiment: str) -> dict[str, Any]:
    """What a user sees: the parent, its children by name with their metrics (timings left out) and
    artifacts, and the parent's summary metrics."""
    runs = server.runs(experiment)
    parents = [r for r in runs if tags(r).get("hydra_eval.sweep") == "true"]
    assert len(parents) == 1, [r["info"]["run_name"] for r in runs]
    parent_id = parents[0]["info"]["run_id"]
    children = {}
    for r in runs:
        if r is parents[0]:
            continue
        assert tags(r)["mlflow.parentRunId"] == parent_id
        artifacts = server.api(f"artifacts/list?run_id={r['info']['run_id']}").get("files", [])
        children[r["info"]["run_name"]] = {
            "metrics": {k: v for k, v in metrics(r).items() if not k.startswith(("timing/", "throughput/"))},
            "artifacts": sorted(a["path"] for a in artifacts),
            "inputs": sorted(d["dataset"]["name"] for d in r.get("inputs", {}).get("dataset_inputs", [])),
        }
    comparison = None  # the paired comparison, as the run's table view shows it (none: no two models compared)
    top = server.api(f"artifacts/list?run_id={parent_id}").get("files", [])
    if any(f["path"] == "comparison_table.json" for f in top):
        with tempfile.TemporaryDirectory() as tmp:
            from mlflow.tracking import MlflowClient

            table = MlflowClient(server.url).download_artifacts(parent_id, "comparison_table.json", tmp)
            comparison = json.loads(Path(table).read_text())["data"]
    return {"children": children, "parent_metrics": metrics(parents[0]), "comparison_table": comparison}


def hydra_eval(*args: str, root: Path, background: bool = False) -> Any:
    return run_cli(*args, "progress=false", outputs=root, background=background)


SWEEP = ["-m", "model=tiny_llama,tiny_llama_b", "dataset=piqa,siqa", "dataset.limit=4"]


def test_keys_are_mlflow_legal():
    assert tracking.key("piqa/acc,norm (x)") == "piqa/acc_norm _x_"
    assert tracking.flatten({"model": {"name": "m", "tiny": {"a": 1}}, "l": [1, 2]}) == {
        "model.name": "m",
        "model.tiny.a": "1",
        "l": "[1, 2]",
    }


@pytest.mark.process
def test_sweep_is_a_parent_with_one_child_per_job(server, tmp_path):
    proc = hydra_eval(
        *SWEEP,
        f"tracking.uri={server.url}",
        "tracking.experiment=sweep",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        root=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = sweep_state(server, "sweep")
    assert sorted(state["children"]) == [
        "tiny_llama/piqa",
        "tiny_llama/siqa",
        "tiny_llama_b/piqa",
        "tiny_llama_b/siqa",
    ]
    for name, child in state["children"].items():
        model, dataset = name.split("/")
        results = json.loads(next((tmp_path / "sweep").glob(f"*/results/{model}/{dataset}.json")).read_text())
        assert child["metrics"][f"{dataset}/accuracy"] == pytest.approx(results["metrics"]["accuracy"])
        assert child["metrics"][f"{dataset}/n"] == 4
        assert "predictions.json" in child["artifacts"] and "config.yaml" in child["artifacts"]
        assert child["inputs"] == [dataset]
        assert state["parent_metrics"][f"{name}/accuracy"] == pytest.approx(results["metrics"]["accuracy"])
    child = next(r for r in server.runs("sweep") if r["info"]["run_name"] == "tiny_llama_b/siqa")
    assert {"model", "dataset", "version", "mode", "host", "git_revision", "hydra_job_num", "sweep_dir"} <= set(
        tags(child)
    )
    params = {p["key"]: p["value"] for p in child["data"]["params"]}
    assert params["model.name"] == "tiny_llama_b" and params["dataset.gen.extractor"] == "first_letter"
    metrics = {m["key"]: m["value"] for m in child["data"]["metrics"]}  # how the generations ended
    assert "diagnostics/length_capped" in metrics and metrics["generation/generations"] == 4
    assert "siqa/length_capped" not in metrics  # a diagnostic, not a score

    # mode=viz from MLflow instead of files: a leaderboard with filters
    board = hydra_eval(
        "mode=viz",
        "viz.source=mlflow",
        "viz.models=[tiny_llama_b]",
        f"tracking.uri={server.url}",
        "tracking.experiment=sweep",
        f"hydra.run.dir={tmp_path / 'board'}",
        root=tmp_path,
    )
    assert board.returncode == 0, board.stderr[-2000:]
    lines = summary_lines(board.stdout)
    assert lines[0].split() == ["dataset", "version", "metric", "mode", "tiny_llama_b"]
    assert sorted((line.split()[0], line.split()[2]) for line in lines[2:]) == [
        ("piqa", "accuracy"),
        ("siqa", "accuracy"),
    ]  # length_capped: a diagnostic, under the table
    assert any(line.startswith("diagnostics: tiny_llama_b on siqa") for line in board.stdout.splitlines())

    # ... with the same statistics as the sweep's own files: per-row scores come back from the runs
    both = hydra_eval(
        "mode=viz",
        "viz.source=mlflow",
        f"tracking.uri={server.url}",
        "tracking.experiment=sweep",
        f"hydra.run.dir={tmp_path / 'both'}",
        root=tmp_path,
    )
    assert both.returncode == 0, both.stderr[-2000:]
    from_files = json.loads((tmp_path / "sweep" / "summary" / "comparison.json").read_text())
    from_runs = json.loads((tmp_path / "both" / "summary" / "comparison.json").read_text())
    assert from_runs["pairs"] and from_runs["pairs"] == from_files["pairs"]
    assert from_runs["macro"] == from_files["macro"]
    # a later run on other rows of piqa: MLflow's newest run per model no longer shares the rows, and says so
    other = hydra_eval(
        "model=tiny_llama_b",
        "dataset=piqa",
        "dataset.limit=3",
        f"tracking.uri={server.url}",
        "tracking.experiment=sweep",
        f"hydra.run.dir={tmp_path / 'other'}",
        root=tmp_path,
    )
    assert other.returncode == 0, other.stderr[-2000:]
    refused = hydra_eval(
        "mode=viz",
        "viz.source=mlflow",
        "viz.datasets=[piqa]",
        f"tracking.uri={server.url}",
        "tracking.experiment=sweep",
        f"hydra.run.dir={tmp_path / 'refused'}",
        root=tmp_path,
    )
    assert refused.returncode == 0, refused.stderr[-2000:]
    assert "not compared: piqa" in refused.stdout and "tiny_llama and tiny_llama_b scored different rows" in (
        refused.stdout
    )
    assert json.loads((tmp_path / "refused" / "summary" / "comparison.json").read_text())["pairs"] == []


@pytest.mark.process
def test_outage_mid_sweep_then_sync_equals_an_undisturbed_sweep(server, tmp_path):
    calm = hydra_eval(
        *SWEEP,
        f"tracking.uri={server.url}",
        "tracking.experiment=calm",
        f"hydra.sweep.dir={tmp_path / 'calm'}",
        root=tmp_path / "calm_root",
    )
    assert calm.returncode == 0, calm.stderr[-3000:]

    root = tmp_path / "storm_root"
    sweep = hydra_eval(
        *SWEEP,
        f"tracking.uri={server.url}",
        "tracking.experiment=storm",
        f"hydra.sweep.dir={root / 'sweep'}",
        root=root,
        background=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((root / "sweep").glob("*/mlflow.json")):
        time.sleep(0.2)
    server.stop()  # mid-sweep: the parent and at least one child are in, the rest are not
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err[-3000:]
    assert len(list((root / "sweep").glob("*/results/*/*.json"))) == 4  # every job finished its files
    unsynced = list((root / "sweep").glob("*/mlflow.unsynced"))
    assert unsynced, "the server was stopped too late to test anything"
    warnings = [line for line in (out + err).splitlines() if "MLflow unavailable" in line]
    assert len(warnings) == len(unsynced) + 1  # one line per unsynced job, one for the sweep summary

    server.start()
    for _ in range(2):  # syncing twice creates no duplicates
        synced = hydra_eval("mode=sync", f"tracking.uri={server.url}", "tracking.experiment=storm", root=root)
        assert synced.returncode == 0, synced.stderr[-3000:]
    assert "0 still unsynced" in synced.stderr and synced.stdout == ""  # stdout carries only tables
    assert not list((root / "sweep").glob("*/mlflow.unsynced"))
    assert sweep_state(server, "storm") == sweep_state(server, "calm")
    # a sync retried after the summary was logged but before it was marked so: the table is not appended twice
    state = root / "sweep" / tracking.SWEEP
    state.write_text(json.dumps({**json.loads(state.read_text()), "summary_logged": False}))
    again = hydra_eval("mode=sync", f"tracking.uri={server.url}", "tracking.experiment=storm", root=root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(state.read_text())["summary_logged"]
    assert sweep_state(server, "storm") == sweep_state(server, "calm")
    assert len(sweep_state(server, "calm")["comparison_table"]) == 3  # piqa, siqa, their macro average


@pytest.mark.process
def test_unreachable_server_loses_nothing(tmp_path):
    proc = hydra_eval(
        "model=tiny_llama",
        "dataset.limit=3",
        f"tracking.uri=http://127.0.0.1:{free_port()}",
        f"hydra.run.dir={tmp_path / 'job'}",
        root=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "job" / "results" / "tiny_llama" / "piqa.json").is_file()
    assert JobFiles(tmp_path / "job", "tiny_llama", "piqa").unsynced.is_file()
    assert len([line for line in proc.stderr.splitlines() if "MLflow" in line]) == 1
    assert "piqa" in proc.stdout  # the table is still printed


WRITER = """
import sys
from omegaconf import OmegaConf
from hydra_eval import tracking
from hydra_eval.outputs import JobFiles
cfg = OmegaConf.create({"uri": sys.argv[1], "experiment": "concurrent", "retries": 1, "timeout_s": 10})
[job] = JobFiles.finished_under(tracking.Path(sys.argv[2]))
assert tracking.mirror_job(cfg, job) is not None
"""


@pytest.mark.process
def test_eight_jobs_log_at_once_to_the_default_sqlite_store(compose_cfg, tmp_path):
    first = tmp_path / "sweep" / "0"
    run(compose_cfg("model=tiny_llama", "dataset.limit=3", f"output_dir={first}"), print_summary=False)
    for i in range(1, 8):
        shutil.copytree(first, tmp_path / "sweep" / str(i))
    uri = f"sqlite:///{tmp_path}/mlflow.db?timeout=60"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, str(tmp_path / "sweep" / str(i))],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    errors = [w.communicate(timeout=600)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), "\n".join(e[-800:] for e in errors)
    assert not any("database is locked" in e for e in errors)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("concurrent")
    assert len(client.search_runs([experiment.experiment_id])) == 8


@pytest.mark.process
def test_jobs_named_by_their_settings_are_runs_of_their_own_with_their_metrics(compose_cfg, tmp_path):
    """A sweep names jobs of one model and dataset by their settings (`fake[seed=1]` on `piqa[limit=4]`): each is
    a run of that name, and the leaderboard reads its metrics back (their keys are MLflow-legal copies)."""
    from omegaconf import OmegaConf

    from hydra_eval.columns import override

    uri = f"sqlite:///{tmp_path}/mlflow.db?timeout=60"
    for seed in (1, 2):
        names = [override("model.name", f"fake[seed={seed}]"), override("dataset.name", "piqa[limit=4]")]
        cfg = compose_cfg("model=fake", f"model.seed={seed}", "dataset.limit=4", *names, "tracking=default",
                          override("tracking.uri", uri), f"output_dir={tmp_path / str(seed)}")  # fmt: skip
        run(cfg, print_summary=False)
    settings = OmegaConf.to_object(cfg.tracking)
    records = sorted((r for r, _ in tracking.leaderboard(settings, [], [], [])), key=lambda r: r.model)
    assert [(r.model, r.dataset) for r in records] == [("fake[seed=1]", "piqa[limit=4]"),
                                                       ("fake[seed=2]", "piqa[limit=4]")]  # fmt: skip
    assert all(set(r.metrics) == {"accuracy", "accuracy_stderr"} for r in records)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hydra-eval")
    assert sorted(r.info.run_name for r in client.search_runs([experiment.experiment_id])) == [
        "fake[seed=1]/piqa[limit=4]",
        "fake[seed=2]/piqa[limit=4]",
    ]


def runs_view(text: str) -> bool:
    """MLflow 3's runs table of an experiment, not its GenAI overview (traces, "No data available")."""
    return "Run Name" in text and "matching runs" in text and "No data available" not in text


@pytest.mark.process
def test_mlflow_ui_of_a_sweep_opens_on_the_runs_with_the_children_unfolded(server, tmp_path):
    chromium_or_skip()
    proc = hydra_eval(
        *SWEEP,
        f"tracking.uri={server.url}",
        "tracking.experiment=ui",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        root=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiment = server.api("experiments/get-by-name?experiment_name=ui")["experiment"]
    exp = experiment["experiment_id"]
    assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]
    link = next(line.split("MLflow: ", 1)[1] for line in proc.stderr.splitlines() if line.startswith("MLflow: "))
    assert link == f"{server.url}/#/experiments/{exp}?workflowType=machine_learning"
    runs = server.runs("ui")
    child = next(r for r in runs if r["info"]["run_name"] == "tiny_llama/piqa")
    accuracy = metrics(child)["piqa/accuracy"]
    assert {"score", "score_ci95_low", "score_ci95_high", "piqa/accuracy_ci95_low"} <= set(metrics(child))
    text = visible_text(browse(tmp_path, link, "--dump-dom"))
    assert runs_view(text), text[:1500]
    names = [r["info"]["run_name"] for r in runs]
    assert len(names) == 5 and all(name in text for name in names)  # the sweep and its 4 children, unfolded
    shot = tmp_path / "runs.png"
    browse(tmp_path, link, f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000
    run_page = browse(tmp_path, f"{server.url}/#/experiments/{exp}/runs/{child['info']['run_id']}", "--dump-dom")
    assert "tiny_llama/piqa" in run_page
    assert f"{accuracy:g}"[:4] in run_page
    parent = next(r for r in runs if tags(r).get("hydra_eval.sweep") == "true")
    listed = server.api(f"artifacts/list?run_id={parent['info']['run_id']}&path=summary").get("files", [])
    files = {Path(f["path"]).name for f in listed}
    assert {"report.html", "comparison.json"} <= files and any(f.startswith("paired_") for f in files)
    top = {f["path"] for f in server.api(f"artifacts/list?run_id={parent['info']['run_id']}").get("files", [])}
    assert "comparison_table.json" in top
    assert "tiny_llama_b/piqa/accuracy_ci95_low" in metrics(parent)


@pytest.mark.process
def test_make_ui_on_a_fresh_store_opens_on_the_runs_view(tmp_path):
    chromium_or_skip()
    port = free_port()
    env = {**os.environ, "HYDRA_EVAL_OUTPUT_ROOT": str(tmp_path / "outputs")}
    ui = subprocess.Popen(
        ["make", "-s", "ui", f"ARGS=--port {port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "ui.log").open("w"),  # MLflow's own logs
        text=True,
        start_new_session=True,
    )
    try:
        assert ui.stdout is not None
        first = ui.stdout.readline()
        assert "/#/experiments/" in first, first
        link = first.rsplit(" at ", 1)[1].strip()
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        text = visible_text(browse(tmp_path, link, "--dump-dom"))
        assert runs_view(text) and "hydra-eval" in text, text[:1500]
        shot = tmp_path / "make-ui.png"
        browse(tmp_path, link, f"--screenshot={shot}")
        assert shot.is_file() and shot.stat().st_size > 10_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
        if ui.stdout is not None:
            ui.stdout.close()


@pytest.mark.process
def test_a_judge_sweep_logs_the_judged_child_with_its_verdicts(server, tmp_path):
    proc = hydra_eval(
        "-m",
        "model=fake,fake_b",
        "model.chat_template=true",
        "dataset=arena_hard",
        "dataset.limit=3",
        "dataset.judge.baseline=fake",
        "judge=fake",
        "judge.reply='B is better: [[B>A]]'",
        f"tracking.uri={server.url}",
        "tracking.experiment=judged",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        root=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = sweep_state(server, "judged")
    assert sorted(state["children"]) == ["fake_b/arena_hard"]  # the baseline is not judged against itself
    child = state["children"]["fake_b/arena_hard"]
    assert child["metrics"]["arena_hard/win_rate"] == 50.0 and child["metrics"]["arena_hard/wins"] == 3
    assert {"arena_hard/win_rate_ci_low", "arena_hard/win_rate_ci_high"} <= set(child["metrics"])
    assert child["metrics"]["diagnostics/judge_parse_failures"] == 0
    assert state["parent_metrics"]["fake_b/arena_hard/win_rate"] == 50.0
    run = next(r for r in server.runs("judged") if r["info"]["run_name"] == "fake_b/arena_hard")
    assert tags(run)["judge"] == "fake" and tags(run)["judge_mode"] == "pairwise"
    assert "predictions.json" in child["artifacts"]
