"""run(cfg): the stages of one job (infer -> eval -> viz), as selected by cfg.mode."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hydra_eval import backends, judges, outputs, summary, validate
from hydra_eval.config import plain, typed
from hydra_eval.errors import UserError
from hydra_eval.evaluate import run_eval
from hydra_eval.infer import run_infer
from hydra_eval.jobinfo import job_context
from hydra_eval.outputs import JobFiles, write_json, write_text
from hydra_eval.results import Results
from hydra_eval.schema import Config, DatasetMode, JudgeMode, VizSource

log = logging.getLogger(__name__)


def run(composed: DictConfig | Config, print_summary: bool = True) -> Results | None:
    """Run one job into cfg.output_dir; returns its Results when the eval stage ran."""
    validate.check(composed)  # before anything is resolved: the first unusable value, in one line
    cfg = typed(composed)
    if cfg.mode.sync:
        _sync(cfg)
        return None
    if cfg.suite is not None:
        raise UserError(f"suite={cfg.suite.name} runs one job per dataset: add -m (hydra-eval -m suite=...)")
    if cfg.dry_run:
        from hydra_eval.plan import PlannedJob, describe

        job = PlannedJob([], cfg.model.name, cfg.dataset.name, cfg.shard.index, cfg.shard.count)
        print(describe([job], "none (single run)"), end="")
        return None
    if cfg.mode.eval:
        judges.preflight(cfg.dataset)  # before hours of generation, not after
    if cfg.mode.judge:
        from hydra_eval.judging.stage import preflight

        preflight(cfg)
    if cfg.mode.infer:
        backends.check(cfg.model)  # weights that are not there, an engine not installed: before the data loads
    if cfg.mode.infer or cfg.mode.judge:
        where = "set paths.cache_dir=... (or HYDRA_EVAL_CACHE_DIR) to a folder you can write to"
        outputs.writable(Path(cfg.paths.cache_dir), "paths.cache_dir", where)
    root = Path(cfg.output_dir)
    where = "set paths.output_root=... (or HYDRA_EVAL_OUTPUT_ROOT, or hydra.run.dir) to a folder you can write to"
    outputs.writable(root, "the job folder", where)
    with outputs.exclusive(root):
        return _stages(cfg, root, print_summary)


def _stages(cfg: Config, root: Path, print_summary: bool) -> Results | None:
    import yaml

    files = JobFiles(root=root, model=cfg.model.name, dataset=cfg.dataset.name)
    config = plain(cfg)
    context = job_context(cfg)
    if cfg.mode.judge and not cfg.mode.infer and files.job_info.is_file():
        # a judge job in the folder of the job that generated: that job's record stays, the judge's goes beside
        write_text(files.judge_config_yaml, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        write_json(files.judge_job_info, context)
    else:
        write_text(files.config_yaml, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        write_json(files.config_json, config)
        write_json(files.job_info, context)
    results = None
    if cfg.dataset.mode is DatasetMode.lmeval:  # lm-eval's tasks: its own requests and scoring
        from hydra_eval.lmeval_job import run_lmeval

        results = run_lmeval(cfg, files) if cfg.mode.infer or cfg.mode.eval else None
        return _finish(cfg, root, files, context, results, print_summary)
    if cfg.mode.infer:
        run_infer(cfg, files)
    if cfg.mode.judge and cfg.dataset.judge.mode is not JudgeMode.none:
        from hydra_eval.judging.stage import run_judge

        run_judge(cfg, files)
    if cfg.mode.eval:
        results = run_eval(cfg, files)
    return _finish(cfg, root, files, context, results, print_summary)


def _finish(
    cfg: Config, root: Path, files: JobFiles, context: dict[str, Any], results: Results | None, show: bool
) -> Results | None:
    """MLflow mirrors a scored job's files; the summary table is printed."""
    if cfg.mode.eval and results is not None and cfg.tracking.enabled:  # files are complete: MLflow mirrors them
        from hydra_eval import tracking

        sweep = context["sweep_dir"]
        tracking.mirror_job(cfg.tracking, files, tracking.parent_run_id(Path(sweep)) if sweep else None)
    if cfg.mode.viz and show:
        print(_summary(cfg, root), end="")
    return results


def _sync(cfg: Config) -> None:
    from hydra_eval import tracking

    if not cfg.tracking.enabled:
        log.error("mode=sync needs tracking enabled (tracking=default or tracking.uri=...)")
        return
    done, failed = tracking.sync(cfg.tracking, Path(cfg.paths.output_root))
    # stdout carries only tables
    print(f"synced {done} job(s) to {cfg.tracking.uri}; {failed} still unsynced", file=sys.stderr)


def _summary(cfg: Config, root: Path) -> str:
    if cfg.viz.source is VizSource.mlflow:
        from hydra_eval import tracking

        v = cfg.viz
        try:
            found = tracking.leaderboard(cfg.tracking, list(v.models), list(v.datasets), list(v.versions))
        except Exception as e:  # unreachable server, bad URI: one line, not a traceback
            first = (str(e).splitlines() or [""])[0][:300]
            raise UserError(f"cannot read MLflow at {cfg.tracking.uri}: {type(e).__name__}: {first}") from None
        from hydra_eval import rowviews

        records = [r for r, _ in found]
        views = [rowviews.JobViews(r.model, r.dataset, rowviews.views(r.mode, rows)) for r, rows in found]
        return summary.write(root, records=records, views=views, viz=cfg.viz)
    return summary.write(root, viz=cfg.viz)
