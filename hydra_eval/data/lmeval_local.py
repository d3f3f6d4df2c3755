"""Local copies, in the Hugging Face schemas lm-eval's tasks read, of the data in the data directory, and an
`--include_path` folder of task YAMLs that point lm-eval's own tasks at them (offline, no hub).

Each generated YAML shadows one of lm-eval's leaf tasks under the same name: it includes lm-eval's own YAML
and only changes where the data comes from (`dataset_path: json`, `dataset_kwargs.data_files`), with
`tag: null` so lm-eval's tag lists stay whole. Groups (ceval-valid, cmmlu) then find their local members by
name. The same folder serves lm-eval run by itself and hydra-eval's lm-eval adapter, so both read the same
rows. Covered: nq_open (dev as `validation`; NQ-open's train split is not here, so `train`, which lm-eval
requires to exist, is the dev file too: use 0 shots), truthfulqa_mc1 / mc2 (the 817-question v1 files),
ceval-valid (52 subjects, val + dev), cmmlu (67 subjects, test + dev). Needs lm_eval importable (its task YAMLs
are included by path).

The named datasets (dataset=truthfulqa, nq_open, ceval, cmmlu) call `prepare` at the start of each job
(dataset.lmeval.local); for lm-eval run by itself, write the same folder with

    python -m hydra_eval.data.lmeval_local --out outputs/lmeval_local
    lm_eval --include_path outputs/lmeval_local/tasks --tasks truthfulqa_mc1,nq_open ...
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def lmeval_tasks_dir() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("lm_eval is not importable here: run this with the lm-eval venv's python")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def need(path: Path) -> Path:
    """The data directory's file or folder, or one line saying it is missing."""
    if not path.exists():
        from hydra_eval.errors import UserError

        raise UserError(f"missing data {path} (paths.data_dir / HYDRA_EVAL_DATA_DIR)")
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def shadow(tasks: Path, builtin: Path, name: str, data_files: dict[str, str]) -> None:
    """tasks/<name>.yaml: lm-eval's own task `name`, reading data_files."""
    text = "\n".join(
        [
            f"# lm-eval's {name} ({builtin.relative_to(builtin.parents[1])}) on local files: only the data moves",
            f"include: {json.dumps(str(builtin))}",
            f"task: {json.dumps(name)}",
            "tag: null",
            "dataset_path: json",
            "dataset_name: null",
            "dataset_kwargs:",
            "  data_files:",
            *(f"    {split}: {json.dumps(path)}" for split, path in data_files.items()),
            "",
        ]
    )
    (tasks / f"{name}.yaml").write_text(text, encoding="utf-8")


def nq_open(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    rows = [
        json.loads(x) for x in need(data / "nq_open" / "NQ-open.dev.jsonl").read_text().splitlines() if x.strip()
    ]
    n = write_jsonl(
        out / "nq_open" / "validation.jsonl", ({"question": r["question"], "answer": r["answer"]} for r in rows)
    )
    path = str(out / "nq_open" / "validation.jsonl")
    shadow(tasks, lm / "nq_open" / "nq_open.yaml", "nq_open", {"train": path, "validation": path})
    return f"nq_open: {n} rows"


def truthfulqa(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    raw = json.loads(need(data / "truthfulqa" / "v1" / "mc_task.json").read_text(encoding="utf-8"))

    def targets(d: dict[str, int]) -> dict[str, list[Any]]:
        return {"choices": list(d), "labels": [int(v) for v in d.values()]}

    rows = (
        {
            "question": r["question"],
            "mc1_targets": targets(r["mc1_targets"]),
            "mc2_targets": targets(r["mc2_targets"]),
        }
        for r in raw
    )
    n = write_jsonl(out / "truthfulqa" / "validation.jsonl", rows)
    path = str(out / "truthfulqa" / "validation.jsonl")
    for name in ("truthfulqa_mc1", "truthfulqa_mc2"):
        shadow(tasks, lm / "truthfulqa" / f"{name}.yaml", name, {"validation": path})
    return f"truthfulqa_mc1, truthfulqa_mc2: {n} rows"


def ceval(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    total = 0
    subjects = sorted(p.name.removesuffix("_val.csv") for p in need(data / "ceval" / "val").glob("*_val.csv"))
    for subject in subjects:
        files = {}
        for split in ("val", "dev"):
            rows = read_csv(data / "ceval" / split / f"{subject}_{split}.csv")
            keys = ("id", "question", "A", "B", "C", "D", "answer", "explanation")
            n = write_jsonl(
                out / "ceval" / subject / f"{split}.jsonl", ({k: str(r.get(k) or "") for k in keys} for r in rows)
            )
            total += n if split == "val" else 0
            files[split] = str(out / "ceval" / subject / f"{split}.jsonl")
        shadow(tasks, lm / "ceval" / f"ceval-valid_{subject}.yaml", f"ceval-valid_{subject}", files)
    return f"ceval-valid: {len(subjects)} subjects, {total} val rows"


def cmmlu(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    total = 0
    subjects = sorted(p.stem for p in need(data / "cmmlu" / "test").glob("*.csv"))
    for subject in subjects:
        files = {}
        for split in ("test", "dev"):
            rows = read_csv(data / "cmmlu" / split / f"{subject}.csv")
            keys = ("Question", "A", "B", "C", "D", "Answer")
            n = write_jsonl(
                out / "cmmlu" / subject / f"{split}.jsonl", ({k: str(r[k]) for k in keys} for r in rows)
            )
            total += n if split == "test" else 0
            files[split] = str(out / "cmmlu" / subject / f"{split}.jsonl")
        shadow(tasks, lm / "cmmlu" / f"cmmlu_{subject}.yaml", f"cmmlu_{subject}", files)
    return f"cmmlu: {len(subjects)} subjects, {total} test rows"


# AGIEval v1 as hails/agieval-<name>: the `query` is AGIEval's own zero-shot prompt (its dataset_loader.py,
# convert_zero_shot; the hub copies' sizes were checked byte for byte against this rendering of these files)
AGIEVAL_EN = {"lsat-ar", "lsat-lr", "lsat-rc", "logiqa-en", "sat-math", "sat-en", "aqua-rat"}
AGIEVAL_EN |= {"sat-en-without-passage", "gaokao-english"}
AGIEVAL_CLOZE = {"math": ("Q: ", "\n", "A: The answer is"), "gaokao-mathcloze": ("问题：", "\n", "答案：")}


def agieval_row(name: str, r: dict[str, Any]) -> dict[str, Any]:
    passage = r["passage"] or ""
    if name in AGIEVAL_CLOZE:
        q, nl, a = AGIEVAL_CLOZE[name]
        return {"query": passage + q + r["question"] + nl + a, "answer": r["answer"]}
    options = list(r["options"])
    if name in AGIEVAL_EN:
        last = "ABCDEFG"[(len(options) if len(options) != 1 else 5) - 1]
        query = f"{passage}Q: {r['question']} Answer Choices: {' '.join(options)}\n"
        query += f"A: Among A through {last}, the answer is"
    else:
        last = "ABCDEFG"[(len(options) if len(options) != 1 else 4) - 1]
        query = f"{passage}问题：{r['question']} 选项：{' '.join(options)}\n答案：从A到{last}, 我们应选择"
    labels = r["label"] if isinstance(r["label"], list) else list(r["label"])  # "AD" / "A B D": several answers
    gold = [
        "ABCDEFG".index(c) for c in labels if c in "ABCDEFG"
    ]  # spaces, and jec-qa-ca's one stray "。", dropped
    return {"query": query, "choices": options, "gold": gold}


def agieval(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    total = 0
    files = sorted(need(data / "agieval").glob("*.jsonl"))
    for f in files:
        name = f.stem
        rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        path = out / "agieval" / f"{name}.jsonl"
        total += write_jsonl(path, (agieval_row(name, r) for r in rows))
        task = "agieval_" + name.replace("-", "_")
        shadow(tasks, lm / "agieval" / f"{name}.yaml", task, {"test": str(path)})
    return f"agieval: {len(files)} tasks, {total} rows"


def race(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """One document per article (EleutherAI/race's grouping: each article's questions in order, only the last
    one scored, the earlier ones in the prompt), `problems` as the Python literal lm-eval parses. The hub's
    document order (the RACE tarball's member order) is not known offline: files go in numeric order here.
    `race` is high (all EleutherAI/race has); `race_middle` is the same task on middle."""
    counts = []
    for level in ("high", "middle"):
        found = need(data / "race" / "test" / level).glob("*.txt")
        files = sorted(found, key=lambda f: (int(f.stem) if f.stem.isdigit() else 10**12, f.stem))
        by_article: dict[str, list[dict[str, Any]]] = {}
        for f in files:
            d = json.loads(f.read_text(encoding="utf-8"))
            problems = by_article.setdefault(d["article"], [])
            for q, a, o in zip(d["questions"], d["answers"], d["options"], strict=True):
                problems.append({"question": q, "answer": a, "options": o})
        path = out / "race" / f"{level}.jsonl"
        n = write_jsonl(path, ({"article": k, "problems": str(v)} for k, v in by_article.items()))
        counts.append(f"{level} {n} articles")
        shadow(tasks, lm / "race" / "race.yaml", "race" if level == "high" else "race_middle", {"test": str(path)})
    return "race: " + ", ".join(counts)


CONVERTERS = {
    "nq_open": nq_open,
    "truthfulqa": truthfulqa,
    "ceval": ceval,
    "cmmlu": cmmlu,
    "agieval": agieval,
    "race": race,
}


def converters() -> dict[str, Any]:
    """These sets and lmeval_more's (arc, boolq, piqa, siqa, hellaswag, winogrande, lambada, gsm8k, bbh, ...)."""
    from hydra_eval.data.lmeval_more import CONVERTERS as MORE

    return {**CONVERTERS, **MORE}


def prepare(names: Iterable[str], data_dir: Path, out: Path) -> Path:
    """Write the local copies of these sets under out/ and return the include_path folder (out/tasks)."""
    known = converters()
    unknown = [n for n in names if n not in known]
    if unknown:
        from hydra_eval.errors import UserError

        raise UserError(
            f"dataset.lmeval.local: no local copy for {', '.join(unknown)} (known: {', '.join(known)})"
        )
    tasks = out / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    lm = lmeval_tasks_dir()
    for name in names:
        known[name](data_dir, out / "data", tasks, lm)
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("HYDRA_EVAL_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "lmeval_local")
    a = parser.parse_args()
    out = a.out.resolve()
    tasks = out / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    lm = lmeval_tasks_dir()
    for make in converters().values():
        print(make(a.data_dir, out / "data", tasks, lm))
    print(f"include_path: {tasks}")


if __name__ == "__main__":
    main()
