"""summary/report.html: one self-contained page for a run or sweep (no network: data and script inline).

A models x datasets heatmap, per-dataset bars with 95% CIs, the paired comparison table, truncation and
parse-failure rates, and a browser of the rows where two chosen models' answers differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hydra_eval.compare import Comparison, paired_rows
from hydra_eval.results import FailedJob, Results
from hydra_eval.rowviews import JobViews

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hydra-eval report</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}
#heatmap td.v{text-align:right;min-width:70px}
.bars{display:inline-block;margin:0 24px 16px 0}
pre{white-space:pre-wrap;min-width:240px;max-width:520px;max-height:240px;overflow:auto;margin:0;font-size:12px}
.sig{font-weight:bold}
</style></head><body>
<h1>hydra-eval report</h1>
<p id="meta"></p>
<h2>Scores (first metric of each dataset; darker is higher)</h2><table id="heatmap"></table>
<h2>Per dataset, with 95% confidence intervals</h2><div id="bars"></div>
<h2>Paired comparison (B - A on shared rows; * p &lt; 0.05)</h2><table id="paired"></table>
<h2>Truncation and parse failures (% of rows)</h2><table id="rates"></table>
<h2>Where two models disagree</h2>
<p>dataset <select id="ds"></select> A <select id="ma"></select> B <select id="mb"></select>
<span id="count"></span></p>
<table id="disagreements"></table>
<script type="application/json" id="data">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById("data").textContent);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const row = (table, cells, tag = "td") => {
  const tr = el("tr"); cells.forEach(c => tr.appendChild(c instanceof Node ? c : el(tag, {}, c)));
  table.appendChild(tr); return tr;
};
document.getElementById("meta").textContent =
  `${D.models.length} model(s), ${D.datasets.length} dataset(s); baseline ${D.baseline ?? "-"}; seed ${D.seed}`;
// heatmap
const hm = document.getElementById("heatmap");
row(hm, ["dataset", "metric", ...D.models], "th");
const all = D.heat.flatMap(h => Object.values(h.values)).filter(v => v !== null);
const lo = Math.min(...all), hi = Math.max(...all);
for (const h of D.heat) {
  const cells = D.models.map(m => {
    const v = h.values[m];
    if (v === undefined || v === null) return el("td", {class: "v"}, "-");
    const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    const light = Math.round(95 - 55 * t);
    return el("td", {class: "v", "data-model": m, "data-value": v,
      style: `background:hsl(210,70%,${light}%);color:${light < 60 ? "#fff" : "#000"}`}, v.toFixed(2));
  });
  row(hm, [h.dataset, h.metric, ...cells]).setAttribute("data-dataset", h.dataset);
}
// bars with CIs: one small SVG per dataset
const bars = document.getElementById("bars"), NS = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => { const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
for (const b0 of D.bars) {
  const b = {...b0, models: b0.models.filter(m => m.value !== null)};
  const step = Math.max(70, 8 + 7 * Math.max(...b.models.map(m => m.model.length), 0));  // room for the names
  const w = 60 + step * b.models.length, h = 200, top = Math.max(...b.models.map(m => m.high ?? m.value), 1);
  const box = el("div", {class: "bars", "data-dataset": b.dataset});
  box.appendChild(el("div", {}, `${b.dataset} (${b.metric})`));
  const svg = svgEl("svg", {width: w, height: h + 40});
  svg.appendChild(svgEl("line", {x1: 40, y1: h, x2: w, y2: h, stroke: "#888"}));
  b.models.forEach((m, i) => {
    const x = 50 + step * i, y = v => h - (h - 10) * v / top;
    const bar = svgEl("rect", {x, y: y(m.value), width: 40, height: h - y(m.value), fill: "#4a78b5",
      class: "bar", "data-model": m.model, "data-value": m.value});
    svg.appendChild(bar);
    if (m.low !== null && m.high !== null) {
      svg.appendChild(svgEl("line", {x1: x + 20, x2: x + 20, y1: y(m.high), y2: y(m.low), stroke: "#000",
        "stroke-width": 2, class: "ci", "data-model": m.model, "data-low": m.low, "data-high": m.high}));
      for (const v of [m.low, m.high])
        svg.appendChild(svgEl("line", {x1: x + 12, x2: x + 28, y1: y(v), y2: y(v), stroke: "#000"}));
    }
    const label = svgEl("text", {x, y: h + 15, "font-size": 11}); label.textContent = m.model;
    const value = svgEl("text", {x, y: h + 30, "font-size": 11}); value.textContent = m.value.toFixed(2);
    svg.appendChild(label); svg.appendChild(value);
  });
  box.appendChild(svg); bars.appendChild(box);
}
// paired table and rates
const pt = document.getElementById("paired");
D.paired.forEach((r, i) => row(pt, r, i ? "td" : "th"));
const rt = document.getElementById("rates");
if (D.rates.length) { row(rt, ["model", "dataset", "rate", "% of rows"], "th");
  D.rates.forEach(r => row(rt, [r.model, r.dataset, r.rate, r.value === null ? "-" : r.value.toFixed(2)])); }
else row(rt, ["none of these jobs has truncation or parse-failure rates"]);
// disagreement browser
const ds = document.getElementById("ds"), ma = document.getElementById("ma"), mb = document.getElementById("mb");
Object.keys(D.rows).forEach(d => ds.appendChild(el("option", {value: d}, d)));
D.models.forEach(m => [ma, mb].forEach(s => s.appendChild(el("option", {value: m}, m))));
if (D.models.length > 1) mb.value = D.models[1];
function browse() {
  const t = document.getElementById("disagreements"); t.replaceChildren();
  const A = ma.value, B = mb.value, rows = D.rows[ds.value] || [];
  row(t, ["row", "prompt", `${A}: answer / output`, `${B}: answer / output`, "gold"], "th");
  let n = 0;
  for (const r of rows) {
    const a = r.by[A], b = r.by[B];
    if (!a || !b || a.answer === b.answer) continue;
    n++;
    const pre = (x) => { const td = el("td"); td.appendChild(el("pre", {}, x)); return td; };
    const tr = row(t, [r.id, pre(r.prompt), pre(`${a.answer}\n---\n${a.output}`),
      pre(`${b.answer}\n---\n${b.output}`), pre(r.gold)]);
    tr.setAttribute("data-id", r.id); tr.className = "disagree";
  }
  document.getElementById("count").textContent = `${n} row(s) where ${A} and ${B} answer differently`;
  document.getElementById("count").setAttribute("data-count", n);
}
[ds, ma, mb].forEach(s => s.addEventListener("change", browse));
browse();
</script></body></html>
"""


def _first_metric(metrics: Mapping[str, Any]) -> str | None:
    return next((m for m in metrics if not m.endswith("_stderr") and "/" not in m), next(iter(metrics), None))


def data(
    results: list[Results], jobs: list[JobViews], comparison: Comparison | None, failed: list[FailedJob]
) -> dict[str, Any]:
    """Everything the page shows, as JSON."""
    models = sorted({r.model for r in results} | {f.model for f in failed})
    heat: dict[tuple[str, str], dict[str, Any]] = {}
    bars: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: (r.dataset, r.model)):
        metric = _first_metric(r.metrics)
        if metric is None:
            continue
        name = r.dataset
        h = heat.setdefault((r.dataset, r.version), {"dataset": name, "metric": metric, "values": {}})
        h["values"][r.model] = r.metrics.get(h["metric"], float("nan"))
        ci = comparison.intervals.get((r.dataset, r.version, h["metric"], r.model)) if comparison else None
        half = None if ci is None or ci.half != ci.half else ci.half
        value = float(h["values"][r.model])
        b = bars.setdefault((r.dataset, r.version), {"dataset": name, "metric": h["metric"], "models": []})
        b["models"].append(
            {
                "model": r.model,
                "value": value,
                "low": None if half is None else value - half,
                "high": None if half is None else value + half,
            }
        )
    rows: dict[str, list[dict[str, Any]]] = {}
    for dataset in sorted({j.dataset for j in jobs}):
        views = {j.model: j.views for j in jobs if j.dataset == dataset}
        ids = sorted({i for v in views.values() for i in v}, key=lambda i: (len(i), i))
        for i in ids:
            by = {m: v[i] for m, v in views.items() if i in v}
            if len({x.answer for x in by.values()}) < 2:
                continue  # every model answered the same: never a disagreement
            first = next(iter(by.values()))
            rows.setdefault(dataset, []).append(
                {
                    "id": i,
                    "prompt": first.prompt,
                    "gold": first.gold,
                    "by": {m: {"answer": x.answer, "output": x.output} for m, x in by.items()},
                }
            )
    return {
        "models": models,
        "datasets": sorted({r.dataset for r in results}),
        "baseline": comparison.baseline if comparison else None,
        "seed": comparison.seed if comparison else None,
        "heat": list(heat.values()),
        "bars": list(bars.values()),
        "paired": paired_rows(comparison) if comparison else [],
        "rates": [
            {"model": r.model, "dataset": r.dataset, "rate": k, "value": v}
            for r in results
            for k, v in r.rates.items()
        ],
        "rows": rows,
    }


def finite(tree: Any) -> Any:
    """NaN and infinities as null: JSON has no NaN, and JSON.parse refuses the whole page over one."""
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else None
    if isinstance(tree, dict):
        return {k: finite(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [finite(v) for v in tree]
    return tree


def html_page(payload: dict[str, Any]) -> str:
    # every "<" escaped: no text in a prompt or an answer can end the data block or start a comment in it
    text = json.dumps(finite(payload), ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    return _PAGE.replace("__DATA__", text)


def render(
    results: list[Results], jobs: list[JobViews], comparison: Comparison | None, failed: list[FailedJob]
) -> str:
    return html_page(data(results, jobs, comparison, failed))
