"""`hydra-eval`: Hydra composes model x dataset x mode, pipeline.run does the job."""

from __future__ import annotations

import errno
import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from hydra_eval import __version__
from hydra_eval.config import setup
from hydra_eval.errors import UserError

setup()
log = logging.getLogger("hydra_eval")
# Set once a job's own code runs: an OSError before it is Hydra's, making the run folder or its files.
STARTED: list[bool] = []
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.ENOSPC, errno.EDQUOT)
INTERRUPTED = (
    "interrupted: every finished batch of predictions is saved (paths.cache_dir); "
    "run the same command again to compute only the rest"
)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode is RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="pkg://hydra_eval.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra_eval.pipeline import run

    STARTED.append(True)
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


def config_error(error: BaseException) -> str | None:
    """One line for a config that cannot be composed (a typo, a value outside its Enum, a key the schema does
    not have), naming the allowed values where OmegaConf does; None for any other error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, MissingConfigException):  # an unknown option of a group: Hydra lists the options
        return str(error).strip()
    if not isinstance(error, ConfigCompositionException | OverrideParseException | OmegaConfBaseException):
        return None
    lines = [str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__]
    cause = error.__cause__
    detail = [x.strip() for x in str(cause or error).splitlines()[1 if cause is None else 0 :]]
    reason = next(
        (x for x in detail if x and not x.startswith(("full_key", "object_type", "reference_type", "To append"))),
        None,
    )
    if reason and reason not in lines[0]:
        lines.append(reason)
    return "config error: " + ": ".join(x.rstrip(".") for x in lines)


def setup_error(error: BaseException) -> str | None:
    """One line for a folder Hydra cannot write before a job starts (the run or sweep folder under
    paths.output_root, its .hydra files, its log file); None for any other error."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, OSError):
        seen = seen.__cause__ or seen.__context__
    if seen is None or seen.errno not in UNWRITABLE or not seen.filename:
        return None
    return (
        f"cannot write {seen.filename} ({seen.strerror}): set paths.output_root=... (or HYDRA_EVAL_OUTPUT_ROOT, "
        "or hydra.run.dir / hydra.sweep.dir) to a folder you can write to"
    )


def main() -> None:
    """The `hydra-eval` command: exits non-zero when a sweep ends with failed jobs."""
    from hydra_eval.callbacks import FAILED_JOBS, SWEEP_ERRORS

    if sys.argv[1:2] == ["--version"]:  # before Hydra, whose own --version names Hydra's
        from hydra_eval.provenance import git_commit

        commit = git_commit()
        print(f"hydra-eval {__version__}" + (f" (git {commit})" if commit else ""))
        return
    # Hydra's own report of a config error spans several lines; with this set, it raises instead, and
    # config_error says it in one (any other error keeps its traceback; HYDRA_FULL_ERROR=1 keeps them all).
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except KeyboardInterrupt:  # in the submitting process of a sweep
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        line = None if full else config_error(e) or (None if STARTED else setup_error(e))
        if line is None:
            raise
        print(line, file=sys.stderr)
        sys.exit(1)
    if FAILED_JOBS or SWEEP_ERRORS:
        sys.exit(1)


if __name__ == "__main__":
    main()
