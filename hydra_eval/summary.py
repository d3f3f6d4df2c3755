"""The summary table: dataset | version | metric | mode | <one column per model>, from results files."""

from __future__ import annotations

import csv
import io
import logging
import time
import unicodedata
from pathlib import Path

from hydra_eval import results as records
from hydra_eval.compare import Comparison
from hydra_eval.errors import UserError
from hydra_eval.outputs import DiskFull, JobFiles, summary_dir, write_json, write_text
from hydra_eval.results import FailedJob, Results
from hydra_eval.rowviews import JobViews
from hydra_eval.schema import VizConfig

log = logging.getLogger(__name__)

HEADER = ["dataset", "version", "metric", "mode"]


def collect(root: Path) -> list[Results]:
    """Every results/<model>/<dataset>.json below root (a job folder or a whole sweep)."""
    return [records.read(job.results) for job in JobFiles.finished_under(root)]


def views_under(root: Path, results: list[Results]) -> list[JobViews]:
    """What each finished job's rows showed (the report's disagreement browser), for the jobs `collect` read."""
    from hydra_eval import rowviews

    jobs = JobFiles.finished_under(root)
    return [rowviews.of_job(job, r.model, r.dataset, r.mode) for job, r in zip(jobs, results, strict=True)]


def cell(value: float, key: tuple[str, str, str, str], comparison: Comparison | None, ci: bool) -> str:
    """`64.15`, with its 95% CI (`64.15 ± 2.19`) and ` *` when it differs significantly from the baseline."""
    text = f"{value:.2f}"
    if comparison is None:
        return text
    interval = comparison.intervals.get(key)
    if ci and interval is not None and interval.half == interval.half:  # not NaN
        text += f" ± {interval.half:.2f}"
    return text + (" *" if comparison.mark(*key) else "")


def table(
    results: list[Results],
    models: list[str] | None = None,
    failed: list[FailedJob] | None = None,
    comparison: Comparison | None = None,
    ci: bool = True,
) -> list[list[str]]:
    """Rows of strings, header first; '-' where a model has no result for a row (a failed job's pair shows
    '-' in every row of its dataset, or in a row of its own when no model scored that dataset). With a
    comparison, each value carries its 95% CI (unless ci=False) and a ` *` where it differs significantly
    (p < 0.05, paired test) from the baseline model's."""
    failed = failed or []
    models = models or sorted({r.model for r in results} | {f.model for f in failed})
    cells: dict[tuple[str, str, str, str], dict[str, str]] = {}
    scored = {r.dataset for r in results}
    for f in failed:
        if f.dataset not in scored:
            cells.setdefault((f.dataset, "-", "-", "-"), {})
    for r in results:
        for metric, value in r.metrics.items():
            if metric.endswith("_stderr"):
                continue
            key = (r.dataset, r.version, metric, r.model)
            cells.setdefault((r.dataset, r.version, metric, r.mode), {})[r.model] = cell(
                value, key, comparison, ci
            )
    rows = [HEADER + models]
    for key in sorted(cells):
        rows.append([*key, *(cells[key].get(m, "-") for m in models)])
    return rows


def display_width(text: str) -> int:
    """Terminal columns of a text: East Asian wide and full-width characters (CJK) take two, combining marks
    none, everything else one."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        for ch in text
    )


def pad(text: str, width: int) -> str:
    """`text` left-justified to `width` terminal columns (str.ljust counts code points: CJK would misalign)."""
    return text + " " * max(0, width - display_width(text))


def to_text(rows: list[list[str]]) -> str:
    widths = [max(display_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out) + "\n"


def to_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def diagnostics_note(results: list[Results]) -> str:
    """The diagnostics beside the scores, one line per job that has some (judge calls and tokens, parse
    failures, generations cut at the length cap, inputs cut to fit, tied candidates, answers not found)."""
    lines = [
        f"diagnostics: {r.model} on {r.dataset}: " + ", ".join(f"{k} {v:g}" for k, v in r.diagnostics.items())
        for r in sorted(results, key=lambda r: (r.dataset, r.version, r.model))
        if r.diagnostics
    ]
    return "".join(line + "\n" for line in lines)


def paired_note(comparison: Comparison) -> str:
    return (
        f"paired on the rows both models scored: B - A with its 95% bootstrap CI (seed {comparison.seed}), p from "
        "McNemar's exact test (0/1 scores) or a sign-flip permutation test; * p < 0.05; in the table above, * "
        f"marks a model that differs significantly from {comparison.baseline}\n"
    )


def write(
    root: Path,
    models: list[str] | None = None,
    records: list[Results] | None = None,
    failed: list[FailedJob] | None = None,
    views: list[JobViews] | None = None,
    viz: VizConfig | None = None,
) -> str:
    """Build the table for everything under root (or for the given records), with each model's 95% CI and
    the paired comparison below it; write root/summary/summary_<time>.{txt,md,csv}, paired_<time>.{md,csv},
    comparison.json and report.html; return the text."""
    from hydra_eval import compare, report

    viz = viz or VizConfig()
    results = collect(root) if records is None else records
    if not results and not failed:
        where = "MLflow" if records is not None else f"{root} (no results/*/*.json)"
        raise UserError(f"no results in {where}: nothing to show; run mode=eval (or mode=all) first")
    comparison = None
    try:
        comparison = compare.compare(results, viz.baseline, viz.seed) if results else None
    except Exception as e:  # a bad row or a baseline whose jobs all failed: the table is still shown
        first = (str(e).splitlines() or [""])[0][:300]
        log.warning("no model comparison (table without CIs): %s: %s", type(e).__name__, first)
    rows = table(results, models, failed, comparison, viz.ci)
    paired = compare.paired_rows(comparison) if comparison is not None else []
    stamp = time.strftime("%Y%m%d_%H%M%S")
    folder = summary_dir(root)
    text = to_text(rows)
    if len(paired) > 1:
        text += "\n" + paired_note(comparison) + to_text(paired)  # type: ignore[arg-type]
    if comparison is not None and comparison.refused:
        text += "\n" + "\n".join(f"not compared: {r}" for r in comparison.refused) + "\n"
    diagnostics = diagnostics_note(results)
    if diagnostics:  # beside the scores, never among them
        text += "\n" + diagnostics
    try:
        write_text(folder / f"summary_{stamp}.txt", text)
        write_text(folder / f"summary_{stamp}.md", to_markdown(rows))
        write_text(folder / f"summary_{stamp}.csv", to_csv(table(results, models, failed)))  # numbers only
        if len(paired) > 1:
            write_text(folder / f"paired_{stamp}.md", to_markdown(paired))
            write_text(folder / f"paired_{stamp}.csv", to_csv(paired))
        if comparison is not None:
            write_json(folder / "comparison.json", comparison.to_json())
        if viz.report:
            if views is None:
                views = views_under(root, results) if records is None else []
            write_text(folder / "report.html", report.render(results, views, comparison, failed or []))
    except DiskFull as e:  # the table is still shown; the results it comes from are whole
        log.warning("summary files not written: %s", e)
    except Exception as e:  # the report is a view: the table and its files stand without it
        log.warning("summary/report.html not written: %s: %s", type(e).__name__, str(e)[:300])
    return text
