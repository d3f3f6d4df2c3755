"""MLflow mirror of what a job already wrote to disk. The only module that imports mlflow.

Files come first: a job's predictions and results exist before anything here runs. When MLflow is unreachable
or fails, the job still succeeds, warns in one line and leaves `mlflow.unsynced` in its folder; `mode=sync`
uploads such jobs later. A job's run is found again by its `hydra_eval.job_key` tag, so syncing twice creates
no duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any

from hydra_eval import results as records
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, summary_dir, write_json
from hydra_eval.results import Results
from hydra_eval.schema import TrackingConfig

log = logging.getLogger(__name__)

# 95% CI bounds of a metric, as metrics of their own (not `_ci_low`: judge results have their own of those)
CI_LOW, CI_HIGH = "_ci95_low", "_ci95_high"
SWEEP = "mlflow_sweep.json"  # in a sweep folder: {"parent_run_id", "summary_logged"}
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-./: ]")


def key(name: str) -> str:
    """An MLflow-legal metric/param key: letters, digits and `_ - . / : space`."""
    return _KEY_BAD.sub("_", name)[:250]


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    value = json.dumps(tree) if isinstance(tree, list) else str(tree)
    return {key(prefix[:-1]): value[:6000]}


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///<path>` URI (absolute paths have a fourth slash), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?")[0])


def artifact_root(uri: str) -> str | None:
    """Where a local store keeps artifacts: `mlartifacts` beside its database, as a correct file URI."""
    database = sqlite_path(uri)
    return None if database is None else database.absolute().parent.joinpath("mlartifacts").as_uri()


def _configure(tracking: TrackingConfig) -> Any:
    """A client that gives up fast: a dead server must cost seconds, not MLflow's default minutes of retries."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(tracking.retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(tracking.timeout_s))
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout carries only tables
    from mlflow.tracking import MlflowClient

    database = sqlite_path(tracking.uri)
    if database is None:
        return MlflowClient(tracking_uri=tracking.uri)
    # Creating a fresh SQLite store runs schema migrations that race between processes: one at a time.
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.init-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri=tracking.uri)
        client.search_experiments(max_results=1)
    return client


# MLflow's UI opens an experiment by its kind: GenAI experiments on an "Overview" of traces (empty here),
# model-development ones on their runs. Its own inference from the runs is not reliable, so the kind is set.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def _experiment_id(client: Any, tracking: TrackingConfig) -> str:
    # A local store keeps artifacts beside its database (not in the working directory); a server proxies them.
    location = artifact_root(tracking.uri)
    for _ in range(5):
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is not None:
            if KIND_TAG not in experiment.tags:  # a store made before the tag (or by hand): the runs view too
                client.set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)
            return str(experiment.experiment_id)
        try:
            return str(
                client.create_experiment(tracking.experiment, artifact_location=location, tags={KIND_TAG: KIND})
            )
        except Exception:  # another job created it first
            time.sleep(0.5)
    raise RuntimeError(f"cannot create or find experiment '{tracking.experiment}'")


def experiment_url(tracking: TrackingConfig, base: str | None = None) -> str:
    """The experiment's runs view in the MLflow UI at `base` (default: the tracking server itself); the
    experiment is created, tagged, when missing. MLflow 3's UI shows an experiment as its GenAI "Overview"
    unless its global workflow switch says "Model training": the link says so (`workflowType`)."""
    client = _configure(tracking)
    base = base or tracking.uri
    return f"{base.rstrip('/')}/#/experiments/{_experiment_id(client, tracking)}?workflowType=machine_learning"


def job_key(job_dir: Path, model: str, dataset: str) -> str:
    return hashlib.sha256(f"{job_dir.resolve()}|{model}|{dataset}".encode()).hexdigest()[:32]


def _predictions_table(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    flat = [
        {k: (json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v) for k, v in r.items()}
        for r in rows
    ]
    return pd.DataFrame(flat)


def _dataset_input(results: Results, table: Any) -> Any:
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    digest = hashlib.sha256(json.dumps(results.fingerprints["data"], sort_keys=True).encode()).hexdigest()
    wanted = ("id", "gold", "prompt", "prompts", "context", "task", "doc_id", "args")  # lm-eval rows: task, doc_id
    columns = [c for c in wanted if c in table.columns]
    targets = "gold" if "gold" in columns else None
    try:
        dataset = from_pandas(
            table[columns],
            source=results.data_source,
            name=results.dataset,
            targets=targets,
            digest=digest[:16],
        )
    except MlflowException:  # a source MLflow cannot resolve (lm-eval's tasks): the job's code is the source
        dataset = from_pandas(table[columns], name=results.dataset, targets=targets, digest=digest[:16])
    return DatasetInput(Dataset(**dataset.to_dict()), [InputTag("mlflow.data.context", "eval")])


def _ci_metrics(results: Results, prefix: str) -> dict[str, float]:
    """Every metric's 95% CI bounds, `<metric>_ci95_low` / `_ci95_high` (MLflow shows raw floats: the bounds
    are what a chart or a column can show beside the value), and `score` / `score_ci95_*`: the dataset's first
    metric under one name, so that the chart view can set every dataset's runs side by side."""
    out: dict[str, float] = {}
    for metric, ci in results.ci.items():
        out[f"{prefix}{metric}{CI_LOW}"], out[f"{prefix}{metric}{CI_HIGH}"] = ci.low, ci.high
    first = next((m for m in results.metrics if not m.endswith("_stderr") and "/" not in m), None)
    if first is not None:
        out["score"] = results.metrics[first]
        if first in results.ci:
            out[f"score{CI_LOW}"], out[f"score{CI_HIGH}"] = results.ci[first].low, results.ci[first].high
    return out


def _log_job(client: Any, experiment_id: str, files: JobFiles, parent_run_id: str | None) -> str:
    from mlflow.entities import Metric, Param

    job_dir = files.root
    results = records.read(files.results)
    model, dataset = results.model, results.dataset
    jkey = job_key(job_dir, model, dataset)
    for found in client.search_runs([experiment_id], f"tags.`hydra_eval.job_key` = '{jkey}'"):
        if found.data.tags.get("hydra_eval.synced") == "true":
            return str(found.info.run_id)
        client.delete_run(found.info.run_id)  # a run cut short by a failure: log it again whole
    job = read_json(files.job_info) if files.job_info.is_file() else {}
    tags = {
        "model": model,
        "dataset": dataset,
        "version": results.version,
        "mode": results.mode,
        "hydra_eval.job_key": jkey,
        "data_fingerprint": results.data_fingerprint,
        "job_dir": str(job_dir.resolve()),
        **{k: str(v) for k, v in job.items() if v is not None},
    }
    if parent_run_id:
        # an evaluation run under its sweep: MLflow's runs view opens with the sweep's children unfolded
        tags.update({"mlflow.parentRunId": parent_run_id, "mlflow.runType": "evaluation"})
    judge = results.judge
    if judge is not None:  # scored by a judge model: which one, and how
        tags.update(judge=judge.judge, judge_mode=judge.mode, judge_prompt=judge.prompt_version)
        if judge.baseline:
            tags["judge_baseline"] = str(judge.baseline)
        if files.judge_job_info.is_file():  # the judge's own job (Slurm id, host), when it ran apart
            tags.update(
                {f"judge_{k}": str(v) for k, v in read_json(files.judge_job_info).items() if v is not None}
            )
    run = client.create_run(experiment_id, run_name=f"{model}/{dataset}", tags=tags)
    run_id = str(run.info.run_id)
    now = int(time.time() * 1000)
    metrics = {f"{dataset}/{k}": v for k, v in results.metrics.items()}
    metrics[f"{dataset}/n"] = results.n
    metrics.update(_ci_metrics(results, f"{dataset}/"))
    metrics.update({f"diagnostics/{k}": v for k, v in results.diagnostics.items()})
    metrics.update({f"timing/{k}": v for k, v in results.timings.items()})
    metrics.update({f"throughput/{k}": v for k, v in results.throughput.items() if v is not None})
    metrics.update({f"usage/{k}": v for k, v in (results.usage or {}).items()})
    generation = results.generation or {}  # how generations ended (genstats.summary)
    metrics.update({f"generation/{k}": v for k, v in generation.items() if isinstance(v, int | float)})
    config = read_json(files.config_json) if files.config_json.is_file() else {}
    params = flatten(config)
    params["version"] = results.version
    client.log_batch(
        run_id,
        metrics=[Metric(key(k), float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    rows = files.judged if files.judged.is_file() else files.predictions  # each prediction with its verdict
    table = _predictions_table(read_jsonl(rows))
    client.log_table(run_id, table, "predictions.json")
    client.log_inputs(run_id, datasets=[_dataset_input(results, table)])
    client.log_artifact(run_id, str(files.results), "results")
    for path in (files.config_yaml, files.judge_config_yaml, files.log):
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    client.set_tag(run_id, "hydra_eval.synced", "true")  # last: marks the run complete
    return run_id


def _warn(what: str, error: Exception) -> str:
    first = (str(error).splitlines() or [""])[0][:300]
    message = (
        f"MLflow unavailable, {what} kept on disk only (run `hydra-eval mode=sync` later): "
        f"{type(error).__name__}: {first}"
    )
    log.warning(message)
    return message


def _with_retries(fn: Any, attempts: int = 6) -> Any:
    """SQLite under many writers can still answer "database is locked" (or race on schema creation) past its
    busy timeout: retry with jitter. A dead HTTP server fails the same way each time, so fail fast there."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:
            text = str(e).lower()
            if attempt == attempts - 1 or not any(w in text for w in ("locked", "already exists", "unique")):
                raise
            time.sleep(0.2 + random.random() * (attempt + 1))


def mirror_job(tracking: TrackingConfig, files: JobFiles, parent_run_id: str | None = None) -> str | None:
    """Log one finished job folder; on any failure warn once and mark the folder unsynced."""

    def log_it() -> tuple[str, str]:
        client = _configure(tracking)
        experiment_id = _experiment_id(client, tracking)
        with warnings.catch_warnings():  # MLflow's schema hints about integer columns and dataset sources
            warnings.simplefilter("ignore")
            return experiment_id, _log_job(client, experiment_id, files, parent_run_id)

    try:
        experiment_id, run_id = _with_retries(log_it)
    except Exception as e:
        message = _warn(f"job {files.root}", e)
        with contextlib.suppress(OSError):  # a full disk: mode=sync still finds it (no mlflow.json)
            files.unsynced.write_text(message + "\n")
        return None
    write_json(files.synced, {"run_id": run_id, "tracking_uri": tracking.uri, "experiment_id": experiment_id})
    files.unsynced.unlink(missing_ok=True)
    return run_id


def parent_run_id(sweep_dir: Path) -> str | None:
    path = sweep_dir / SWEEP
    return read_json(path).get("parent_run_id") if path.is_file() else None


def start_sweep(tracking: TrackingConfig, sweep_dir: Path) -> str | None:
    """The sweep's parent run, created on the submitting side before any job starts."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        client = _configure(tracking)
        experiment_id = _experiment_id(client, tracking)
        run = client.create_run(
            experiment_id,
            run_name=f"sweep {sweep_dir.name}",
            tags={"sweep_dir": str(sweep_dir.resolve()), "hydra_eval.sweep": "true"},
        )
    except Exception as e:
        _warn(f"sweep {sweep_dir}", e)
        write_json(sweep_dir / SWEEP, {"parent_run_id": None, "summary_logged": False})
        return None
    write_json(sweep_dir / SWEEP, {"parent_run_id": str(run.info.run_id), "summary_logged": False})
    return str(run.info.run_id)


def finish_sweep(tracking: TrackingConfig, sweep_dir: Path) -> bool:
    """Log the sweep's summary on its parent run: the table files, one metric per (model, dataset, metric)."""
    state = read_json(sweep_dir / SWEEP) if (sweep_dir / SWEEP).is_file() else {}
    run_id = state.get("parent_run_id")
    if not run_id or state.get("summary_logged"):
        return bool(state.get("summary_logged"))
    try:
        from mlflow.entities import Metric

        client = _configure(tracking)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key(f"{r.model}/{r.dataset}/{m}"), float(v), now, 0)
            for r in (records.read(files.results) for files in JobFiles.finished_under(sweep_dir))
            for m, v in r.metrics.items()
            if not m.endswith("_stderr")
        ]
        folder = summary_dir(sweep_dir)
        compared = read_json(folder / "comparison.json") if (folder / "comparison.json").is_file() else {}
        metrics += [
            Metric(key(f"{c['model']}/{c['dataset']}/{c['metric']}{suffix}"), float(c[field]), now, 0)
            for c in compared.get("intervals", [])
            for suffix, field in ((CI_LOW, "ci_low"), (CI_HIGH, "ci_high"))
        ]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for path in sorted(folder.glob("*")):
            if path.is_file() and not path.name.startswith("."):
                client.log_artifact(run_id, str(path), "summary")
        pairs = [*compared.get("pairs", []), *compared.get("macro", [])]
        # the paired comparison as a table (the run's Evaluation/Artifacts views show it); MLflow appends to a
        # table already there, so a retry after a failure past this point (the same seeded numbers) skips it
        if pairs and "comparison_table.json" not in {f.path for f in client.list_artifacts(run_id)}:
            import pandas as pd

            client.log_table(run_id, pd.DataFrame(pairs).astype({"discordant": str}), "comparison_table.json")
        client.set_terminated(run_id, "FINISHED")
    except Exception as e:
        _warn(f"sweep summary {sweep_dir}", e)
        return False
    write_json(sweep_dir / SWEEP, {**state, "summary_logged": True})
    return True


def sweep_link(tracking: TrackingConfig, sweep_dir: Path) -> str:
    """Where to look at a logged sweep: its experiment's runs view (a server), or how to open one (a file)."""
    if sqlite_path(tracking.uri) is not None:
        return f"experiment '{tracking.experiment}' in {tracking.uri}: `hydra-eval-ui` opens it ({sweep_dir.name})"
    try:
        return experiment_url(tracking)
    except Exception as e:  # the summary is logged; a link is a convenience
        return f"experiment '{tracking.experiment}' at {tracking.uri} ({type(e).__name__})"


def sync(tracking: TrackingConfig, root: Path) -> tuple[int, int]:
    """Upload every finished job under root that has no MLflow run yet, then every sweep summary not yet
    logged. Returns (jobs synced, jobs still unsynced)."""
    done = failed = 0
    sweeps: set[Path] = set()
    for files in JobFiles.finished_under(root):
        sweep_dir = files.root.parent
        if (sweep_dir / SWEEP).is_file():
            sweeps.add(sweep_dir)
            if parent_run_id(sweep_dir) is None:
                start_sweep(tracking, sweep_dir)
        if files.synced.is_file():
            continue
        if mirror_job(tracking, files, parent_run_id(sweep_dir)):
            done += 1
        else:
            failed += 1
    for sweep_dir in sorted(sweeps):
        finish_sweep(tracking, sweep_dir)
    return done, failed


def leaderboard(
    tracking: TrackingConfig, models: list[str], datasets: list[str], versions: list[str]
) -> list[tuple[Results, list[dict[str, Any]]]]:
    """Every finished job run in the experiment, newest per (model, dataset, version), filtered: its Results
    (the results artifact, read as from files) and its per-example table (the rows the report shows). A run
    whose artifacts cannot be read is left out, with one line."""
    import tempfile

    client = _configure(tracking)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return []
    found = client.search_runs(
        [experiment.experiment_id],
        "tags.`hydra_eval.synced` = 'true'",
        order_by=["start_time DESC"],
        max_results=10000,
    )
    wanted = {"model": set(models), "dataset": set(datasets), "version": set(versions)}
    # MLflow's search has no IN/OR for tags: filter here
    runs = [r for r in found if all(not v or r.data.tags.get(k) in v for k, v in wanted.items())]
    newest: dict[tuple[str, str, str], Any] = {}
    for r in runs:
        t = r.data.tags
        newest.setdefault((t["model"], t["dataset"], t["version"]), r)
    out = []
    for (model, dataset, _), run in newest.items():
        run_id = str(run.info.run_id)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                folder = Path(client.download_artifacts(run_id, "results", tmp))
                path = next(folder.glob("*.json"))
                results = Results.from_json(read_json(path), f"run {run_id} ({model}/{dataset})", run_id)
                table = Path(client.download_artifacts(run_id, "predictions.json", tmp))
                data = json.loads(table.read_text(encoding="utf-8"))
            except Exception as e:  # a run without its files, or of an older version: left out
                log.warning(
                    "run %s (%s/%s): no results to read (%s: %s): left out",
                    run_id,
                    model,
                    dataset,
                    type(e).__name__,
                    (str(e).splitlines() or [""])[0][:200],
                )
                continue
        out.append((results, table_rows(data)))
    return out


# Fields of a judged row that the per-example table stores as JSON text (tracking._predictions_table)
_JSON_FIELDS = (
    "choices",
    "options",
    "answers",
    "scores",
    "scores_norm",
    "metrics",
    "filtered",
    "generations",
    "prompts",
    "continuations",
    "target",
    "judgments",  # a judged dataset's verdicts per row
)


def table_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A logged per-example table (MLflow's "split" JSON) back into the judged rows it was made from."""
    rows = []
    for values in data["data"]:
        row = dict(zip(data["columns"], values, strict=True))
        for name in _JSON_FIELDS:
            if isinstance(row.get(name), str) and row[name][:1] in "[{":
                with contextlib.suppress(ValueError):
                    row[name] = json.loads(row[name])
        rows.append(row)
    return rows
