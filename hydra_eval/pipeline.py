"""run(cfg): the stages of one job (infer -> eval -> viz), as selected by cfg.mode."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from hydra_eval import summary
from hydra_eval.evaluate import run_eval
from hydra_eval.infer import run_infer
from hydra_eval.outputs import JobFiles

log = logging.getLogger(__name__)


def run(cfg: Any, print_summary: bool = True) -> dict[str, Any] | None:
    """Run one job into cfg.output_dir; returns the results dict when the eval stage ran."""
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    files = JobFiles(root=root, model=cfg.model.name, dataset=cfg.dataset.name)
    results = None
    if cfg.mode.infer:
        run_infer(cfg, files)
    if cfg.mode.eval:
        results = run_eval(cfg, files)
    if cfg.mode.viz and print_summary:
        text = summary.write(root)
        print(text, end="")
    return results
