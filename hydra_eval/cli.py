"""`hydra-eval`: Hydra composes model x dataset x mode, pipeline.run does the job."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from hydra_eval.config import setup
from hydra_eval.errors import UserError

setup()
log = logging.getLogger("hydra_eval")
INTERRUPTED = (
    "interrupted: every finished batch of predictions is saved (paths.cache_dir); "
    "run the same command again to compute only the rest"
)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="pkg://hydra_eval.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra_eval.pipeline import run

    multirun = _is_multirun()
    try:
        run(cfg, print_summary=not multirun)  # a sweep prints one table at its end (callbacks.SweepSummary)
    except KeyboardInterrupt:
        log.error(INTERRUPTED)
        sys.exit(130)
    except UserError as e:
        log.error("%s", e)  # into the job's log file too, which a failed sweep job's report points to
        if multirun:
            raise
        sys.exit(1)
    except Exception:
        if multirun:  # the sweeper reports it, relaunches it; the traceback stays in the job's log
            log.exception("job failed")
        raise


def main() -> None:
    """The `hydra-eval` command: exits non-zero when a sweep ends with failed jobs."""
    from hydra_eval.callbacks import FAILED_JOBS

    try:
        hydra_main()
    except KeyboardInterrupt:  # in the submitting process of a sweep
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    if FAILED_JOBS:
        sys.exit(1)


if __name__ == "__main__":
    main()
