"""Hydra callbacks on the submitting side: one summary table for a whole sweep, failed jobs listed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hydra_eval.results import FailedJob

# Failed jobs of the last sweep in this process; the command exits non-zero when there are any.
FAILED_JOBS: list[FailedJob] = []
# Errors of the sweep as a whole (a summary with no results): the command exits non-zero too.
SWEEP_ERRORS: list[str] = []


def failure_report(failed: list[FailedJob]) -> str:
    lines = [f"{len(failed)} job(s) failed:"]
    for f in failed:
        lines.append(f"  #{f.job} {f.model} x {f.dataset} (shard {f.shard}): {f.error}")
        lines.append(f"      log: {f.log}")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """A sweep is one MLflow parent run (created before the jobs start) and one summary table at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.tracking.enabled and config.mode.eval and not config.dry_run:
            from hydra_eval import tracking

            tracking.start_sweep(config.tracking, Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.dry_run:
            return
        from hydra_eval.outputs import read_json
        from hydra_eval.plan import FAILED_FILE

        root = Path(config.hydra.sweep.dir)
        written = read_json(root / FAILED_FILE) if (root / FAILED_FILE).is_file() else []
        failed = [FailedJob.from_json(f) for f in written]
        FAILED_JOBS[:] = failed
        SWEEP_ERRORS.clear()
        if config.mode.viz:
            from omegaconf import OmegaConf

            from hydra_eval import summary
            from hydra_eval.errors import UserError

            viz = OmegaConf.to_object(config.viz)  # a VizConfig (the structured schema's node)
            try:
                print(summary.write(root, failed=failed, viz=viz), end="")  # type: ignore[arg-type]
            except UserError as e:  # no results at all: one line (Hydra would only warn)
                print(e, file=sys.stderr)
                if not config.mode.eval:  # mode=viz over a folder with nothing to show fails the command; a
                    SWEEP_ERRORS.append(str(e))  # sweep whose jobs ran and had nothing to score does not
        if failed:
            print(failure_report(failed), end="", file=sys.stderr)
        if config.tracking.enabled and config.mode.eval:
            from hydra_eval import tracking

            if tracking.finish_sweep(config.tracking, root):
                print(f"MLflow: {tracking.sweep_link(config.tracking, root)}", file=sys.stderr)
