#!/usr/bin/env python
"""Run OpenCompass itself (ceval_ppl = ceval_ppl_578f8d, cmmlu_ppl = cmmlu_ppl_8b9c76, HuggingFaceBaseModel,
batch size 1) on the GGUF model and the same rows hydra-eval's `dataset=ceval_oc` / `cmmlu_oc` read, so their
numbers have a real anchor; or, with --render, write OpenCompass's own prompts (no model) for every row.

OpenCompass's CEvalDataset reads <path>/{dev,val,test}/<subject>_<split>.csv and needs test/ to exist; the data
directory has val and dev only, so a temporary folder links them and gives test/ header-only files. CMMLU reads
the data directory as it is. Run it with OpenCompass's own interpreter (its venv: docs/benchmarks.md):

    ../oc-venv/bin/python scripts/opencompass_ceval_cmmlu.py ceval --subjects computer_network,operating_system \\
        --work-dir outputs/oc_ceval
    ../oc-venv/bin/python scripts/opencompass_ceval_cmmlu.py cmmlu --render tests/golden/cmmlu_prompts.json

Prints each subject's accuracy, their plain mean (OpenCompass's `ceval` / `cmmlu`), and writes
<work-dir>/rows.json: every row's subject, index, gold and OpenCompass's prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opencompass_piqa import model_dir, run_timed  # noqa: E402

CONFIG = """
from mmengine.config import read_base
from opencompass.models import HuggingFaceBaseModel

with read_base():
    from opencompass.configs.datasets.{name}.{name}_ppl import {name}_datasets

wanted = {subjects!r}
datasets = [dict(d, path={data!r}) for d in {name}_datasets if not wanted or d['abbr'].split('-', 1)[1] in wanted]
for d in datasets:
    if {limit!r}:
        d['reader_cfg'] = dict(d['reader_cfg'], test_range='[0:{limit}]')
models = [dict(
    type=HuggingFaceBaseModel, abbr='smollm2_135m', path={model!r},
    model_kwargs=dict(gguf_file={gguf!r}, torch_dtype='torch.float32', device_map='cpu'),
    tokenizer_kwargs=dict(gguf_file={gguf!r}, add_bos_token=False),
    pad_token_id=2, max_seq_len=2048, max_out_len=100, batch_size=1, run_cfg=dict(num_gpus=0),
)]
"""


def data_folder(name: str, source: Path, tmp: Path) -> Path:
    if name == "cmmlu":
        return source / "cmmlu"
    folder = tmp / "ceval"
    (folder / "test").mkdir(parents=True)
    for split in ("val", "dev"):
        (folder / split).symlink_to(source / "ceval" / split)
    for f in (source / "ceval" / "val").glob("*_val.csv"):
        (folder / "test" / f.name.replace("_val.csv", "_test.csv")).write_text("id,question,A,B,C,D\n")
    return folder


def render(name: str, data: Path, out: Path) -> None:
    """Every row's four label prompts as OpenCompass's retriever and template make them (no model)."""
    import opencompass
    from mmengine.config import Config
    from opencompass.models.base import LMTemplateParser
    from opencompass.openicl.icl_prompt_template import PromptTemplate
    from opencompass.openicl.icl_retriever import FixKRetriever
    from opencompass.utils import build_dataset_from_cfg

    base = Path(opencompass.__file__).parent / "configs" / "datasets" / name / f"{name}_ppl.py"
    parser = LMTemplateParser()
    rows = []
    for d in Config.fromfile(str(base))[f"{name}_datasets"]:
        d = dict(d, path=str(data))
        ds = build_dataset_from_cfg(d)
        ic = d["infer_cfg"]
        template = PromptTemplate(**{k: v for k, v in ic["ice_template"].items() if k != "type"})
        retriever = FixKRetriever(ds, fix_id_list=ic["retriever"]["fix_id_list"])
        ids = retriever.retrieve()
        for i in range(len(ds.test)):
            ice = retriever.generate_ice(ids[i], ice_template=template)
            prompts = {
                label: parser.parse_template(
                    retriever.generate_label_prompt(i, ice, label, ice_template=template), mode="ppl"
                )
                for label in "ABCD"
            }
            rows.append({"abbr": d["abbr"], "i": i, "gold": ds.test[i]["answer"], "prompts": prompts})
    out.write_text(json.dumps(rows, ensure_ascii=False))
    print(f"{name}: {len(rows)} rows -> {out}")


def collect(work_dir: Path) -> None:
    runs = sorted(p for p in work_dir.iterdir() if p.is_dir())
    latest = runs[-1]
    accs, rows = {}, []
    for f in sorted((latest / "results" / "smollm2_135m").glob("*.json")):
        accs[f.stem.split("-", 1)[1]] = json.loads(f.read_text())["accuracy"]
    for f in sorted((latest / "predictions" / "smollm2_135m").glob("*.json")):
        for i, r in sorted(json.loads(f.read_text()).items(), key=lambda kv: int(kv[0])):
            rows.append(
                {"subject": f.stem.split("-", 1)[1], "i": int(i), "gold": r["gold"], "pred": r["prediction"]}
            )
    (work_dir / "rows.json").write_text(json.dumps({"accuracy": accs, "rows": rows}, ensure_ascii=False, indent=0))
    for subject, acc in accs.items():
        print(f"{subject}: {acc:.4f}")
    print(f"naive_average: {sum(accs.values()) / len(accs):.4f} over {len(accs)} subjects, {len(rows)} rows")


def compare(work_dir: Path, judged: Path) -> None:
    """OpenCompass's predictions (rows.json) against hydra-eval's judged rows of the same subjects: the same
    label picked, and the largest difference of the per-label scores (OpenCompass's PPL is the mean token
    NLL, hydra-eval's `scores`)."""
    import ast

    latest = sorted(p for p in work_dir.iterdir() if p.is_dir())[-1]
    mine: dict[str, list[dict]] = {}
    for line in judged.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        mine.setdefault(r["id"].split("/")[0], []).append(r)
    same = total = 0
    worst = 0.0
    for f in sorted((latest / "predictions" / "smollm2_135m").glob("*.json")):
        subject = f.stem.split("-", 1)[1]
        for i, r in json.loads(f.read_text()).items():
            ours = mine[subject][int(i)]
            total += 1
            same += "ABCD"[ours["pred"]] == r["prediction"]
            for j, label in enumerate("ABCD"):
                info = r[f"label: {label}"]
                ppl = (info if isinstance(info, dict) else ast.literal_eval(info))["PPL"]
                worst = max(worst, abs(float(ppl) - ours["scores"][j]))
    print(f"same prediction on {same} of {total} rows; largest per-label score difference {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["ceval", "cmmlu"])
    parser.add_argument("--data-dir", default=os.environ.get("HYDRA_EVAL_DATA_DIR", "../shared/data"))
    parser.add_argument("--subjects", default="", help="comma-separated; all when empty")
    parser.add_argument("--limit", type=int, default=0, help="the first N rows of each subject (0: all)")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/opencompass"))
    parser.add_argument("--render", type=Path, help="write OpenCompass's prompts for every row here, no model")
    parser.add_argument("--stats", type=Path, default=None, help="write scoring time and token counts here")
    parser.add_argument("--compare", type=Path, help="hydra-eval judged/<model>/<dataset>.jsonl: compare per row")
    args = parser.parse_args()
    if args.compare:
        compare(args.work_dir, args.compare)
        return
    source = Path(args.data_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        data = data_folder(args.name, source, Path(tmp))
        if args.render:
            render(args.name, data, args.render)
            return
        config = Path(tmp) / f"eval_{args.name}_smollm2.py"
        config.write_text(
            CONFIG.format(
                name=args.name,
                subjects=[s for s in args.subjects.split(",") if s],
                limit=args.limit,
                data=str(data),
                model=model_dir(sys.executable),
                gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            )
        )
        run_timed([str(config), "--work-dir", str(args.work_dir), "--debug"], args.stats)
    collect(args.work_dir)


if __name__ == "__main__":
    main()
