"""The records of a finished job that everything downstream reads: `Results` (results/<model>/<dataset>.json),
`JudgeMeta` (judge/<model>/<dataset>.meta.json) and `FailedJob` (a sweep's failed_jobs.json).

Eval builds one `Results` and writes it; compare, summary, report and the MLflow mirror only read it. It holds
the metrics the table shows, the diagnostics beside them (judge calls and tokens, parse failures, length caps,
truncated inputs, ties, usage), each row's values behind every metric that is a mean over rows (or, for a
judge's ratio metrics, each row's (numerator, denominator)), and each metric's 95% CI, computed once here.
A results file of another version is refused with one line; predictions and caches are other files and stay
valid.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_eval import stats
from hydra_eval.errors import UserError
from hydra_eval.outputs import read_json
from hydra_eval.provenance import provenance
from hydra_eval.records import InferMeta

RESULTS_VERSION = 3  # 2: metrics and diagnostics mixed, no per-row values (1: no schema_version field)

Json = dict[str, Any]
RowValue = float | tuple[float, float]  # a row's value, or its (numerator, denominator) of a ratio of sums


@dataclass(frozen=True, slots=True)
class JudgeMeta:
    """What the judge stage did for one job: which judge, how (mode, verdict format, prompt version), against
    which baseline, and what it cost."""

    judge: str
    identity: Any
    mode: str
    verdict_format: str
    prompt_version: str
    baseline: str | None = None
    cache_key: str | None = None
    requests: int = 0
    reused: Any = None
    computed: int = 0
    parse_failures: int = 0
    judge_s: float = 0.0
    load_s: float = 0.0

    @property
    def convention(self) -> str:
        return f"judge:{self.judge}:{self.verdict_format}:{self.prompt_version}"

    def to_json(self) -> Json:
        return {
            "judge": self.judge,
            "judge_identity": self.identity,
            "cache_key": self.cache_key,
            "mode": self.mode,
            "verdict_format": self.verdict_format,
            "prompt_version": self.prompt_version,
            "baseline": self.baseline,
            "requests": self.requests,
            "reused": self.reused,
            "computed": self.computed,
            "parse_failures": self.parse_failures,
            "judge_s": self.judge_s,
            "load_s": self.load_s,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JudgeMeta:
        return cls(
            judge=str(d["judge"]),
            identity=d.get("judge_identity"),
            mode=str(d["mode"]),
            verdict_format=str(d["verdict_format"]),
            prompt_version=str(d["prompt_version"]),
            baseline=d.get("baseline"),
            cache_key=d.get("cache_key"),
            requests=int(d.get("requests", 0)),
            reused=d.get("reused"),
            computed=int(d.get("computed", 0)),
            parse_failures=int(d.get("parse_failures", 0)),
            judge_s=float(d.get("judge_s", 0.0)),
            load_s=float(d.get("load_s", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class FailedJob:
    """One job of a sweep that left no result: which, where its log is, and the error's first line."""

    model: str
    dataset: str
    shard: str
    job: int | None
    error: str
    log: str
    overrides: tuple[str, ...] = ()

    def to_json(self) -> Json:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "shard": self.shard,
            "job": self.job,
            "error": self.error,
            "log": self.log,
            "overrides": list(self.overrides),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FailedJob:
        return cls(
            model=str(d["model"]),
            dataset=str(d["dataset"]),
            shard=str(d["shard"]),
            job=d.get("job"),
            error=str(d["error"]),
            log=str(d["log"]),
            overrides=tuple(d.get("overrides") or ()),
        )


def check_results_version(d: Mapping[str, Any], where: str) -> None:
    version = d.get("schema_version", 1)
    if version != RESULTS_VERSION:
        raise UserError(
            f"{where} holds results format version {version}, this hydra-eval reads version {RESULTS_VERSION}: "
            "rerun mode=eval"
        )


def intervals(
    metrics: Mapping[str, float], per_row: Mapping[str, Mapping[str, RowValue]]
) -> dict[str, stats.Interval]:
    """Each metric's 95% CI: the normal interval of its per-row values, or its stderr x 1.96; finite ones only."""
    out: dict[str, stats.Interval] = {}
    for metric, value in metrics.items():
        if metric.endswith("_stderr"):
            continue
        rows = per_row.get(metric)
        ci: stats.Interval | None = None
        if rows and not any(isinstance(v, tuple) for v in rows.values()):
            ci = stats.interval([float(v) for v in rows.values()])  # type: ignore[arg-type]
        elif not rows:
            err = metrics.get(f"{metric}_stderr")
            if err is not None and not math.isnan(err):
                ci = stats.Interval(value, stats.Z95 * err)
        if ci is not None and math.isfinite(ci.value) and math.isfinite(ci.half):
            out[metric] = ci
    return out


@dataclass(frozen=True)
class Results:
    """results/<model>/<dataset>.json: what eval scored, built once, never changed."""

    model: str
    dataset: str
    version: str
    mode: str
    n: int
    data_source: str
    fingerprints: Mapping[str, Any]
    convention: str
    metrics: Mapping[str, float]  # what the table shows (with `<metric>_stderr` where known)
    diagnostics: Mapping[str, float] = field(default_factory=dict)  # what is shown beside it
    per_row: Mapping[str, Mapping[str, RowValue]] = field(default_factory=dict)  # metric -> row id -> value
    ci: Mapping[str, stats.Interval] = field(default_factory=dict)  # metric -> its 95% CI
    ids: tuple[str, ...] = ()  # the rows scored, in order (lm-eval: '<task>:<doc_id>')
    timings: Mapping[str, float] = field(default_factory=dict)
    throughput: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    usage: Mapping[str, float] | None = None  # served models: tokens and latency of their requests
    generation: Mapping[str, Any] | None = None  # gen datasets: how generations ended (genstats.summary)
    judge: JudgeMeta | None = None
    lmeval: Mapping[str, Any] | None = None  # lm-eval's versions, n-shot, groups
    run_id: str | None = None  # read back from MLflow: its run
    data_fingerprint: str = ""  # the rows' content: two jobs compare only when these and the versions agree

    @functools.cached_property
    def scores(self) -> dict[str, dict[str, float]]:
        """Metrics that are plain means over rows: metric -> row id -> value."""
        return {
            m: {i: float(v) for i, v in rows.items()}  # type: ignore[arg-type]
            for m, rows in self.per_row.items()
            if rows and not any(isinstance(v, tuple) for v in rows.values())
        }

    @functools.cached_property
    def ratios(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Metrics that are ratios of sums (a judge's): metric -> row id -> (numerator, denominator)."""
        return {
            m: {i: v for i, v in rows.items() if isinstance(v, tuple)}
            for m, rows in self.per_row.items()
            if rows and all(isinstance(v, tuple) for v in rows.values())
        }

    @property
    def judge_metric(self) -> str | None:
        """A judged job's own metric (score, win_rate, accuracy)."""
        if self.judge is None:
            return None
        return {"single": "score", "pairwise": "win_rate", "reference": "accuracy"}.get(self.judge.mode)

    @property
    def repeated(self) -> int:
        """Rows whose id an earlier row has: such a job has no per-row values."""
        return len(self.ids) - len(set(self.ids))

    @property
    def rates(self) -> dict[str, float]:
        """Percent of rows with no answer read, cut at the length cap, or whose judge reply did not parse."""
        d = self.diagnostics
        out: dict[str, float] = {}
        if "no_answer" in d:
            out["no_answer"] = float(d["no_answer"])
        if "length_capped" in d:
            out["truncated"] = float(d["length_capped"])
        calls = d.get("judge_calls", self.n)  # several calls per row: turns, both orders
        if "judge_parse_failures" in d and calls:
            out["judge_parse_failures"] = 100.0 * float(d["judge_parse_failures"]) / float(calls)
        return out

    def to_json(self) -> Json:
        out: Json = {
            "schema_version": RESULTS_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "version": self.version,
            "mode": self.mode,
            "n": self.n,
            "data_source": self.data_source,
            "fingerprints": dict(self.fingerprints),
            "data_fingerprint": self.data_fingerprint,
            "convention": self.convention,
            "metrics": dict(self.metrics),
            "diagnostics": dict(self.diagnostics),
            "ci": {m: {"value": c.value, "half": c.half} for m, c in self.ci.items()},
            "timings": dict(self.timings),
            "throughput": dict(self.throughput),
            "provenance": dict(self.provenance),
        }
        if self.usage is not None:
            out["usage"] = dict(self.usage)
        if self.generation is not None:
            out["generation"] = dict(self.generation)
        if self.judge is not None:
            out["judge"] = self.judge.to_json()
        if self.lmeval is not None:
            out["lmeval"] = dict(self.lmeval)
        out["ids"] = list(self.ids)
        out["per_row"] = {
            m: {i: list(v) if isinstance(v, tuple) else v for i, v in rows.items()}
            for m, rows in self.per_row.items()
        }
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str, run_id: str | None = None) -> Results:
        check_results_version(d, where)
        return cls(
            model=str(d["model"]),
            dataset=str(d["dataset"]),
            version=str(d["version"]),
            mode=str(d["mode"]),
            n=int(d["n"]),
            data_source=str(d["data_source"]),
            fingerprints=d["fingerprints"],
            convention=str(d["convention"]),
            metrics={k: float(v) for k, v in d["metrics"].items()},
            diagnostics={k: float(v) for k, v in d.get("diagnostics", {}).items()},
            per_row={
                m: {
                    str(i): (float(v[0]), float(v[1])) if isinstance(v, list) else float(v)
                    for i, v in rows.items()
                }
                for m, rows in d.get("per_row", {}).items()
            },
            ci={m: stats.Interval(float(c["value"]), float(c["half"])) for m, c in d.get("ci", {}).items()},
            ids=tuple(str(i) for i in d.get("ids", ())),
            timings=d.get("timings", {}),
            throughput=d.get("throughput", {}),
            provenance=d.get("provenance", {}),
            usage=d.get("usage"),
            generation=d.get("generation"),
            judge=JudgeMeta.from_json(d["judge"]) if d.get("judge") else None,
            lmeval=d.get("lmeval"),
            run_id=run_id,
            data_fingerprint=str(d["data_fingerprint"]),
        )


def build(
    meta: InferMeta,
    convention: str,
    metrics: Mapping[str, float],
    *,
    ids: Sequence[str],
    eval_s: float,
    diagnostics: Mapping[str, float] | None = None,
    per_row: Mapping[str, Mapping[str, RowValue]] | None = None,
    usage: Mapping[str, float] | None = None,
    generation: Mapping[str, Any] | None = None,
    judge: JudgeMeta | None = None,
    lmeval: Mapping[str, Any] | None = None,
    provenance_extra: Mapping[str, Any] | None = None,
) -> Results:
    """The eval stage's record of one job, from its infer metadata and what it scored; the CIs here."""
    info = meta.to_json()
    rows = dict(per_row or {})
    return Results(
        model=meta.model,
        dataset=meta.dataset,
        version=meta.version,
        mode=meta.mode,
        n=meta.n,
        data_source=meta.data_source,
        fingerprints=dict(meta.fingerprints),
        convention=convention,
        metrics=dict(metrics),
        diagnostics=dict(diagnostics or {}),
        per_row=rows,
        ci=intervals(metrics, rows),
        ids=tuple(ids),
        timings={**info["timings"], "eval_s": eval_s},
        throughput=info["throughput"],
        provenance={**provenance(), **(provenance_extra or {})},
        usage=dict(usage) if usage is not None else None,
        generation=dict(generation) if generation is not None else None,
        judge=judge,
        lmeval=dict(lmeval) if lmeval is not None else None,
        data_fingerprint=fingerprint(meta.fingerprints),
    )


def fingerprint(fingerprints: Mapping[str, Any]) -> str:
    """A short hash of the data's fingerprints (the rows' content)."""
    data = fingerprints.get("data")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def read(path: Path) -> Results:
    """A results file, refused in one line when another version wrote it."""
    return Results.from_json(read_json(path), str(path))
