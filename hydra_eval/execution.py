"""The eval stage of code datasets: each completion runs against its tests in the sandbox (pass@k: sampling.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hydra_eval import sandbox
from hydra_eval.errors import UserError
from hydra_eval.records import GenPrediction, Outcome, Verdict
from hydra_eval.schema import DatasetConfig, ExecutionConfig

log = logging.getLogger(__name__)


def limits(execution: ExecutionConfig) -> sandbox.Limits:
    return sandbox.Limits(
        execution.timeout_s,
        execution.memory_mb,
        execution.max_processes,
        execution.max_file_mb,
        execution.max_dir_mb,
    )


def check_allowed(execution: ExecutionConfig, dataset: str) -> str:
    """Raise a UserError unless the user opted in, the sandbox is as strong as they asked, and it runs a trivial
    program here; returns the isolation mode."""
    if not execution.allow:
        raise UserError(
            f"dataset {dataset} runs the code the model writes, which is off by default: that code is untrusted. "
            "Opt in with dataset.execution.allow=true (each program then runs in a sandbox: time, memory and "
            "process limits, read-only filesystem, no network; see docs/datasets.md)"
        )
    mode = sandbox.isolation()
    if mode != "bwrap" and execution.require_isolation:
        raise UserError(
            "no bubblewrap here, so model-written code would run with process limits only (it could write files "
            "and open connections): apt-get install bubblewrap, or accept that with "
            "dataset.execution.require_isolation=false"
        )
    if mode != "bwrap":
        log.warning("running model-written code WITHOUT filesystem or network isolation (no bubblewrap)")
    problem = sandbox.check(limits(execution), mode)
    if problem is not None:
        raise UserError(
            f"the sandbox cannot run programs here ({mode}, {sys.executable}), so nothing would be scored: "
            f"{problem[:300]}"
        )
    return mode


def judge_rows(rows: Sequence[GenPrediction], dataset: DatasetConfig) -> list[Verdict]:
    execution = dataset.execution
    mode = check_allowed(execution, dataset.name)
    from hydra_eval.data.loader import import_object

    program = import_object(execution.program)
    sources = [program(r, c) for r in rows for c in r.outputs]
    outcomes = iter(sandbox.run_many(sources, limits(execution), mode, max(1, execution.workers)))
    judged = []
    for r in rows:
        results = [next(outcomes) for _ in r.generations]
        errors = [o.detail for o in results if o.status == "error"]
        judged.append(
            Verdict(
                correct=results[0].passed,
                n_passed=sum(o.passed for o in results),
                outcomes=tuple(Outcome(o.status, o.detail) for o in results),
                # the harness failed, not the model: counted, shown, never scored (run_eval fails the job)
                harness_error=f"{len(errors)} program(s) could not start in the sandbox: {errors[0]}"
                if errors
                else None,
            )
        )
    return judged
