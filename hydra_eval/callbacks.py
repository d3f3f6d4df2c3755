"""Hydra callbacks on the submitting side: one summary table for a whole sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.mode.viz:
            return
        from hydra_eval import summary

        root = Path(config.hydra.sweep.dir)
        print(summary.write(root), end="")
