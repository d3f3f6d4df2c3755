"""Hydra callbacks on the submitting side: one summary table for a whole sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    """A sweep is one MLflow parent run (created before the jobs start) and one summary table at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.tracking.enabled and config.mode.eval:
            from hydra_eval import tracking

            tracking.start_sweep(config.tracking, Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        if config.mode.viz:
            from hydra_eval import summary

            print(summary.write(root), end="")
        if config.tracking.enabled and config.mode.eval:
            from hydra_eval import tracking

            tracking.finish_sweep(config.tracking, root)
