"""More local copies for lm-eval 0.4.13's own tasks (see lmeval_local, whose scheme this follows: rows in the
Hugging Face schema the task's YAML reads, one shadow YAML per task that only moves the data to local files).

Covered: arc_easy / arc_challenge (allenai/ai2_arc), boolq (aps/super_glue boolq), piqa (baber/piqa), social_iqa
(lighteval/siqa), hellaswag (Rowan/hellaswag), winogrande (allenai/winogrande winogrande_xl), lambada_openai and
lambada_openai_cloze_yaml (EleutherAI/lambada_openai), gsm8k_cot / gsm8k_cot_llama / gsm8k_cot_zeroshot
(openai/gsm8k main) and BBH's four variants bbh_{cot_fewshot,cot_zeroshot,fewshot,zeroshot}_<subtask>
(SaylorTwift/bbh, 27 subtasks each). Rows keep the source file's order.

The data directory has no training splits for these sets. Where a YAML names one (lm-eval opens every split it
names, few-shot sampling reads the training split first), it is mapped to the split the directory has, as
lmeval_local.nq_open does; each function's docstring says which. With 0 shots that split is never read; with
more, the shots come from that split (lm-eval leaves the document itself out). Plain gsm8k is not shadowed: its
5 shots come from the training split, which is not here.

    python -m hydra_eval.data.lmeval_more --out outputs/lmeval_local
    lm_eval --include_path outputs/lmeval_local/tasks --tasks arc_easy,hellaswag ...
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import re
from pathlib import Path
from typing import Any

from hydra_eval.data.lmeval_local import ROOT, lmeval_tasks_dir, need, shadow, write_jsonl


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in need(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def read_labels(path: Path, n: int) -> list[str]:
    """A labels file: one label a line, aligned with its data file's n rows."""
    labels = need(path).read_text(encoding="utf-8").split()
    if len(labels) != n:
        raise ValueError(f"{path}: {len(labels)} labels for {n} rows")
    return labels


def arc(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """ARC-Easy and ARC-Challenge: Test as `test`, Dev as `validation`. ai2_arc's train split is not here, so
    `train` (lm-eval's few-shot split for arc_*) is the Dev file too. `question` is the stem, `choices` the
    hub's {text, label} lists. The rows' Arrow sizes equal the hub cards' num_bytes (test and validation)."""
    counts = []
    for folder, config in (("arc_easy", "ARC-Easy"), ("arc_challenge", "ARC-Challenge")):
        files = {}
        for split, source in (("test", "Test"), ("validation", "Dev")):
            rows = read_jsonl(data / folder / f"{config}-{source}.jsonl")
            path = out / "arc" / config / f"{split}.jsonl"
            n = write_jsonl(
                path,
                (
                    {
                        "id": r["id"],
                        "question": r["question"]["stem"],
                        "choices": {
                            "text": [c["text"] for c in r["question"]["choices"]],
                            "label": [c["label"] for c in r["question"]["choices"]],
                        },
                        "answerKey": r["answerKey"],
                    }
                    for r in rows
                ),
            )
            counts.append(f"{folder} {split} {n}")
            files[split] = str(path)
        files = {"train": files["validation"], **files}
        shadow(tasks, lm / "arc" / f"{folder}.yaml", folder, files)
    return "arc: " + ", ".join(counts) + " rows"


def boolq(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """SuperGLUE BoolQ's val.jsonl as `validation`, label "false"/"true" as the hub's ClassLabel 0/1 (the rows'
    Arrow size equals the hub card's). The train split is not here, so `train` (few-shot) is the validation file
    too: use 0 shots."""
    labels = {"false": 0, "true": 1}
    rows = read_jsonl(data / "boolq" / "val.jsonl")
    path = out / "boolq" / "validation.jsonl"
    n = write_jsonl(
        path,
        (
            {"question": r["question"], "passage": r["passage"], "idx": int(r["idx"]), "label": labels[r["label"]]}
            for r in rows
        ),
    )
    files = {"train": str(path), "validation": str(path)}
    shadow(tasks, lm / "super_glue" / "boolq" / "default.yaml", "boolq", files)
    return f"boolq: {n} rows"


def piqa(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """PIQA's author release: valid.jsonl + valid-labels.lst as `validation`, label int (the rows' Arrow size
    equals baber/piqa's card). The train split is not here, so `train` (few-shot) is the validation file too: use
    0 shots."""
    rows = read_jsonl(data / "piqa" / "valid.jsonl")
    labels = read_labels(data / "piqa" / "valid-labels.lst", len(rows))
    path = out / "piqa" / "validation.jsonl"
    n = write_jsonl(
        path,
        (
            {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(y)}
            for r, y in zip(rows, labels, strict=True)
        ),
    )
    shadow(tasks, lm / "piqa" / "piqa.yaml", "piqa", {"train": str(path), "validation": str(path)})
    return f"piqa: {n} rows"


def siqa(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """Social IQa's dev.jsonl + dev-labels.lst as `validation` (lighteval/siqa: label the string "1"/"2"/"3").
    The train split is not here, so `train` (few-shot) is the validation file too: use 0 shots. The rows come to
    1 byte more than lighteval/siqa's card (the data folder's README notes that byte against another copy)."""
    keys = ("context", "question", "answerA", "answerB", "answerC")
    rows = read_jsonl(data / "siqa" / "dev.jsonl")
    labels = read_labels(data / "siqa" / "dev-labels.lst", len(rows))
    path = out / "siqa" / "validation.jsonl"
    n = write_jsonl(path, ({**{k: r[k] for k in keys}, "label": y} for r, y in zip(rows, labels, strict=True)))
    shadow(tasks, lm / "siqa" / "siqa.yaml", "social_iqa", {"train": str(path), "validation": str(path)})
    return f"social_iqa: {n} rows"


def hellaswag_row(lines: list[str]) -> dict[str, Any]:
    """One item of the derived text file (`activity_label: ctx`, gold, 4 endings) as a Rowan/hellaswag row.

    ctx_b, the unfinished noun phrase that lm-eval capitalizes, is not marked in the file: it is taken as what
    follows the last sentence end when the context does not end with "." (ActivityNet items, whose ctx_b is
    lowercase, "he" / "the man"), else empty (WikiHow items)."""
    head, label, *endings = lines
    activity, ctx = head.split(": ", 1)
    ctx_a, ctx_b = ctx, ""
    if not ctx.endswith("."):
        m = re.fullmatch(r"(.*[.!?][\"')]*) (.+)", ctx)
        if m:
            ctx_a, ctx_b = m.group(1), m.group(2)
    if len(endings) != 4 or label not in ("0", "1", "2", "3"):
        raise ValueError(f"hellaswag: not an item: {lines!r}")
    return {
        "activity_label": activity,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": ctx,
        "endings": endings,
        "label": label,
    }


def hellaswag(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """HellaSwag validation from the data folder's derived text file (klosax/hellaswag_text_data, made from
    rowanz/hellaswag's hellaswag_val.jsonl), as `validation`; label the hub's string "0".."3".

    The file dropped ind / source_id / split / split_type (not written: lm-eval reads none of them) and already
    removed WikiHow's [header] / [title] / [step] / [substeps] markers, as lm-eval's own preprocess does (so ctx_a
    and the endings here lack them). lm-eval's prompts on these rows are its prompts on the hub rows, but for
    two cases: an ending that began with a marker keeps a leading space in lm-eval's preprocess (its
    continuation starts with two spaces there, one here), and a few texts with other brackets or runs of spaces
    differ in whitespace. The train split is not here, so `train` (few-shot) is the validation file too: use 0
    shots."""
    text = bz2.decompress((data / "hellaswag" / "hellaswag_val_full.txt.bz2").read_bytes()).decode("utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ValueError(f"hellaswag: {len(lines)} lines, not 6 per item")
    path = out / "hellaswag" / "validation.jsonl"
    n = write_jsonl(path, (hellaswag_row(lines[i : i + 6]) for i in range(0, len(lines), 6)))
    shadow(tasks, lm / "hellaswag" / "hellaswag.yaml", "hellaswag", {"train": str(path), "validation": str(path)})
    return f"hellaswag: {n} rows"


def winogrande_row(r: dict[str, Any]) -> dict[str, Any]:
    """One MosaicML row (context_options = the sentence up to the blank + each option, continuation = the
    stripped text after it) back in allenai/winogrande's schema. The options start where the two contexts part,
    moved back to a word start ("Sarah" / "Maria", not "arah" / "aria" of "...so S"); options that share whole
    leading words ("the bed" / "the box") cannot be told from a blank after them, and are cut after them. The
    blank is followed by a space unless the continuation starts with punctuation or "'" ("_'s")."""
    a, b = r["context_options"]
    prefix = re.sub(r"\w+$", "", os.path.commonprefix([a, b]))
    cont = r["continuation"]
    sep = "" if cont[:1] in ".,;:!?'" else " "
    option1, option2 = a[len(prefix) :], b[len(prefix) :]
    if not option1 or not option2 or r["gold"] not in (0, 1):
        raise ValueError(f"winogrande: not a row: {r!r}")
    return {
        "sentence": f"{prefix}_{sep}{cont}",
        "option1": option1,
        "option2": option2,
        "answer": str(r["gold"] + 1),
    }


def winogrande(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """WinoGrande v1.1 dev (1267 rows) from MosaicML's derived file, as winogrande_xl `validation` (the dev set
    is the same in every size). lm-eval's requests read sentence[:blank] + option and the stripped text after
    the blank, which are the file's own context_options and continuation, so they are the hub's; the split of
    sentence / option1 / option2 is reconstructed (winogrande_row): over the 1267 rows it comes to 46 bytes less
    than the Arrow size on a hub card (164183), so a few rows differ from the hub's in those fields. The train
    split is not here, so `train` (few-shot) is the validation file too: use 0 shots."""
    rows = read_jsonl(data / "winogrande" / "winogrande.jsonl")
    path = out / "winogrande" / "validation.jsonl"
    n = write_jsonl(path, (winogrande_row(r) for r in rows))
    shadow(tasks, lm / "winogrande" / "default.yaml", "winogrande", {"train": str(path), "validation": str(path)})
    return f"winogrande: {n} rows"


def lambada(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """OpenAI's LAMBADA test file (lambada_test.jsonl, the file EleutherAI/lambada_openai's `default` config is
    made from) as `test`, for lambada_openai and lambada_openai_cloze_yaml."""
    rows = read_jsonl(data / "lambada" / "lambada_test.jsonl")
    path = out / "lambada_openai" / "test.jsonl"
    n = write_jsonl(path, ({"text": r["text"]} for r in rows))
    shadow(tasks, lm / "lambada" / "lambada_openai.yaml", "lambada_openai", {"test": str(path)})
    cloze = "lambada_openai_cloze_yaml"
    shadow(tasks, lm / "lambada_cloze" / "lambada_openai_cloze.yaml", cloze, {"test": str(path)})
    return f"lambada_openai, {cloze}: {n} rows"


def gsm8k(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """GSM8K's test.jsonl as `test` (openai/gsm8k main; its Arrow size equals the hub card's). gsm8k_cot and
    gsm8k_cot_llama take their 8 shots from their YAMLs, so test is all they read. gsm8k_cot_zeroshot names
    train as its few-shot split: the train split is not here, so `train` is the test file too (0 shots, as it
    runs). Plain gsm8k (5 shots from train) is not shadowed."""
    rows = read_jsonl(data / "gsm8k" / "test.jsonl")
    path = str(out / "gsm8k" / "test.jsonl")
    n = write_jsonl(Path(path), ({"question": r["question"], "answer": r["answer"]} for r in rows))
    shadow(tasks, lm / "gsm8k" / "gsm8k-cot.yaml", "gsm8k_cot", {"test": path})
    shadow(tasks, lm / "gsm8k" / "gsm8k-cot-llama.yaml", "gsm8k_cot_llama", {"test": path})
    shadow(tasks, lm / "gsm8k" / "gsm8k-cot-zeroshot.yaml", "gsm8k_cot_zeroshot", {"train": path, "test": path})
    return f"gsm8k_cot, gsm8k_cot_llama, gsm8k_cot_zeroshot: {n} rows"


BBH_VARIANTS = ("cot_fewshot", "cot_zeroshot", "fewshot", "zeroshot")


def bbh(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """BIG-Bench Hard's 27 task files (examples: input, target) as each subtask's `test`, for lm-eval's four
    variants bbh_<variant>_<subtask> (few-shot exemplars are in lm-eval's YAMLs; the groups bbh_cot_fewshot etc.
    then find their local members by name)."""
    total = 0
    subtasks = sorted(p.stem for p in need(data / "bbh" / "bbh").glob("*.json"))
    for subtask in subtasks:
        raw = json.loads((data / "bbh" / "bbh" / f"{subtask}.json").read_text(encoding="utf-8"))
        path = out / "bbh" / f"{subtask}.jsonl"
        total += write_jsonl(path, ({"input": r["input"], "target": r["target"]} for r in raw["examples"]))
        for variant in BBH_VARIANTS:
            shadow(
                tasks, lm / "bbh" / variant / f"{subtask}.yaml", f"bbh_{variant}_{subtask}", {"test": str(path)}
            )
    return f"bbh ({', '.join(BBH_VARIANTS)}): {len(subtasks)} subtasks, {total} rows"


def race_pages(data: Path, out: Path, tasks: Path, lm: Path) -> str:
    """lm-eval's wikitext perplexity task (loglikelihood_rolling: word_perplexity, byte_perplexity,
    bits_per_byte) on local long documents, as task `wikitext_race_pages`: no wikitext here, so each `page` is
    8 consecutive RACE-high articles (files in numeric order) joined by blank lines, a few thousand tokens each,
    long enough for several windows. Its own task name: these are not wikitext's numbers."""
    found = need(data / "race" / "test" / "high").glob("*.txt")
    files = sorted(found, key=lambda f: (int(f.stem) if f.stem.isdigit() else 10**12, f.stem))
    articles = [json.loads(f.read_text(encoding="utf-8"))["article"] for f in files]
    pages = ["\n\n".join(articles[i : i + 8]) for i in range(0, len(articles), 8)]
    path = out / "race_pages" / "test.jsonl"
    n = write_jsonl(path, ({"page": p} for p in pages))
    name = "wikitext_race_pages"
    shadow(tasks, lm / "wikitext" / "wikitext.yaml", name, {"test": str(path)})
    text = (tasks / f"{name}.yaml").read_text(encoding="utf-8")
    (tasks / f"{name}.yaml").write_text(text + "training_split: null\nvalidation_split: null\n", encoding="utf-8")
    return f"{name}: {n} pages"


CONVERTERS = {
    "race_pages": race_pages,
    "arc": arc,
    "boolq": boolq,
    "piqa": piqa,
    "siqa": siqa,
    "hellaswag": hellaswag,
    "winogrande": winogrande,
    "lambada": lambada,
    "gsm8k": gsm8k,
    "bbh": bbh,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("HYDRA_EVAL_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "lmeval_local")
    parser.add_argument("--sets", nargs="*", choices=list(CONVERTERS), default=list(CONVERTERS))
    a = parser.parse_args()
    out = a.out.resolve()
    tasks = out / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    lm = lmeval_tasks_dir()
    for name in a.sets:
        print(CONVERTERS[name](a.data_dir, out / "data", tasks, lm))
    print(f"include_path: {tasks}")


if __name__ == "__main__":
    main()
