#!/usr/bin/env python
"""A served model against the same model run locally (docs/api-models.md).

Starts llama.cpp's OpenAI-compatible server (scripts/llama_server.py, `make llama-server`) on the SmolLM2 GGUF
file and then:
1. throughput: the same SIQA prompts (chat template, up to --max-new tokens) through the server at 1, 4 and 16
   concurrent requests, and through hydra-eval's local backend (batches of 16): wall time, requests/s,
   prompt and generated tokens/s, p50/p95 latency;
2. answers: `hydra-eval dataset=siqa dataset.limit=N` with the API model and with the local one, compared
   row by row (identical generations, same extracted letter, accuracy).

    python scripts/api_bench.py --rows 48 --compare-rows 100 --out docs/api-bench-<date>.json
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
sys.path.insert(0, str(ROOT))

from scripts.llama_server import LlamaServer  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose(*overrides: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from hydra_eval.config import setup

    setup()
    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        return hydra_compose(
            config_name="config", overrides=["tracking=none", "output_dir=/tmp/api-bench", *overrides]
        )


def siqa_prompts(n: int) -> list[str]:
    from hydra_eval import prompts
    from hydra_eval.data.loader import load_samples

    cfg = compose("dataset=siqa", f"dataset.limit={n}")
    return [prompts.gen_prompt(cfg.dataset.gen, s) for s in load_samples(cfg.dataset).samples]


def percentile(values: list[float], p: float) -> float:
    from hydra_eval.usage import percentile as nearest_rank

    return nearest_rank(sorted(values), p)


def rates(backend: str, gens: list[Any], wall: float) -> dict[str, Any]:
    new_tokens = sum(g.n_new_tokens for g in gens)
    return {
        "backend": backend,
        "requests": len(gens),
        "wall_s": wall,
        "requests_per_s": len(gens) / wall,
        "prompt_tokens_per_s": sum(g.n_prompt_tokens for g in gens) / wall,
        "new_tokens_per_s": new_tokens / wall,
        "new_tokens": new_tokens,
    }


def chat_requests(texts: list[str], max_new: int) -> list[Any]:
    from hydra_eval.records import GenerationRequest, Message

    return [GenerationRequest(None, (Message("user", t),), (), max_new) for t in texts]


def backend(*overrides: str) -> Any:
    from hydra_eval.backends import BackendEnv, make
    from hydra_eval.config import typed

    cfg = typed(compose(*overrides))
    return make(cfg.model, BackendEnv(cache_dir=cfg.paths.cache_dir))


def measure_api(url: str, texts: list[str], concurrency: int, max_new: int) -> dict[str, Any]:
    lm = backend("model=llamacpp_smollm2", f"model.api.base_url={url}", f"model.api.max_concurrency={concurrency}")
    t0 = time.perf_counter()
    gens = lm.generate(chat_requests(texts, max_new))
    latencies = [g.usage.latency_s for g in gens if g.usage]
    return {
        **rates(f"llama.cpp server, {concurrency} concurrent", gens, time.perf_counter() - t0),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
    }


def measure_local(texts: list[str], max_new: int, batch_size: int) -> dict[str, Any]:
    lm = backend("model=smollm2_135m", f"model.batch_size={batch_size}")
    lm.generate(chat_requests(texts[:1], 1))  # loads the model outside the timed part
    t0 = time.perf_counter()
    gens = lm.generate(chat_requests(texts, max_new))
    return rates(f"hydra-eval local (transformers, fp32), batch {batch_size}", gens, time.perf_counter() - t0)


def run_job(model_args: list[str], rows: int, out: Path) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "hydra_eval.cli", *model_args, "dataset=siqa", f"dataset.limit={rows}"]
    cmd += ["tracking=none", "progress=false", "resume=false", f"hydra.run.dir={out}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    [path] = list(out.glob("judged/*/siqa.jsonl"))  # each prediction with its verdict
    return [json.loads(line) for line in path.open()]


def compare(url: str, rows: int, work: Path) -> dict[str, Any]:
    api = run_job(["model=llamacpp_smollm2", f"model.api.base_url={url}"], rows, work / "api")
    local = run_job(["model=smollm2_135m"], rows, work / "local")
    same_text = sum(a["generation"] == b["generation"] for a, b in zip(api, local, strict=True))
    same_answer = sum(a["answer"] == b["answer"] for a, b in zip(api, local, strict=True))
    first_diff = next(
        (
            {"id": a["id"], "api": a["generation"], "local": b["generation"]}
            for a, b in zip(api, local, strict=True)
            if a["generation"] != b["generation"]
        ),
        None,
    )
    return {
        "rows": rows,
        "accuracy_api": 100 * sum(r["correct"] for r in api) / rows,
        "accuracy_local": 100 * sum(r["correct"] for r in local) / rows,
        "identical_generations": same_text,
        "same_extracted_answer": same_answer,
        "example_difference": first_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=48, help="SIQA prompts per throughput run")
    parser.add_argument("--max-new", type=int, default=100)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--compare-rows", type=int, default=100, help="0 skips the answer comparison")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "api-bench.json")
    parser.add_argument(
        "--no-logits-all", action="store_true", help="serve without --logits_all (gen only: no prompt logprobs)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HYDRA_EVAL_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    texts = siqa_prompts(args.rows)
    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    server = LlamaServer(free_port(), work / "server.log", logits_all=not args.no_logits_all)
    server.start()
    try:
        measure_api(server.url, texts[:2], 1, 8)  # warm-up
        runs = [measure_api(server.url, texts, int(c), args.max_new) for c in args.concurrency.split(",")]
        runs.append(measure_local(texts, args.max_new, 16))
        answers = compare(server.url, args.compare_rows, work) if args.compare_rows else None
    finally:
        server.stop()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["python", "scripts/api_bench.py", *sys.argv[1:]]),
        "server_logits_all": not args.no_logits_all,
        "throughput": runs,
        "answers": answers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in runs:
        print(
            f"{r['backend']:<45} {r['requests']:>4} req {r['wall_s']:7.1f}s {r['requests_per_s']:6.2f} req/s "
            f"{r['new_tokens_per_s']:7.1f} new tok/s {r['prompt_tokens_per_s']:7.1f} prompt tok/s"
        )
    print(json.dumps(answers, indent=2))


if __name__ == "__main__":
    main()
