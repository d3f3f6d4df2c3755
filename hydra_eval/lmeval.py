"""lm-eval's task library as a source of task definitions (`dataset=lmeval dataset.lmeval.tasks=[...]`).

lm-eval 0.4.13 (the `lmeval` extra) builds the tasks by name: prompts, few-shot examples, filters, metrics and
group aggregation are its own, with `simple_evaluate`'s seeds. hydra-eval computes the model's side: every
request becomes one of its typed requests, answered by the job's backend (batched, cached by content, saved in
blocks), and the answers go back into lm-eval's instances for lm-eval to score. The sequence follows
`lm_eval.evaluator.simple_evaluate` / `evaluate` (docs/lmeval-adapter-design.md, checked number for number).
What the adapter does not cover yet is one error naming it: sampled generation, chat templates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_eval.backends import Backend
from hydra_eval.errors import UserError
from hydra_eval.records import GenerationRequest, LoglikelihoodRequest
from hydra_eval.schema import Convention, LmevalConfig

# simple_evaluate's defaults (lm_eval/defaults.py): random 0, numpy / torch / few-shot 1234
SEEDS = {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}
SUPPORTED = ("loglikelihood", "loglikelihood_rolling", "generate_until")


@dataclass
class Built:
    """lm-eval's loaded tasks and groups, their requests built, and each leaf task's row limit."""

    loaded: dict[str, Any]
    limits: dict[str, int | None]

    @property
    def instances(self) -> list[Any]:
        """Every request, in a fixed order: task by task, as lm-eval built them."""
        return [inst for task in self.loaded["tasks"].values() for inst in task.instances]


def _import() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise UserError(
            "dataset=lmeval needs lm-eval: pip install 'hydra-eval[lmeval]' (lm_eval==0.4.13)"
        ) from None
    if lm_eval.__version__ != "0.4.13":
        raise UserError(
            f"dataset=lmeval is built against lm_eval 0.4.13, this environment has {lm_eval.__version__}"
        )
    return lm_eval


def installed_version() -> str:
    """lm-eval's version, for the results' provenance."""
    return str(_import().__version__)


def build(cfg: LmevalConfig, limit: int | None, local_tasks: str | None = None) -> Built:
    """Load the tasks (groups expand to their leaf tasks) and build their requests as simple_evaluate does."""
    _import()
    import numpy as np
    from lm_eval.evaluator_utils import get_sample_size
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import set_torch_seed

    if not cfg.tasks:
        raise UserError("dataset=lmeval needs dataset.lmeval.tasks=[<lm-eval task or group>, ...]")
    if not cfg.allow_hub:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # a missing local copy fails at once, not after retries
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    random.seed(SEEDS["random"])
    np.random.seed(SEEDS["numpy"])
    set_torch_seed(SEEDS["torch"])
    for folder in cfg.include_path:
        if not os.path.isdir(folder):
            raise UserError(f"dataset.lmeval.include_path: {folder}: no such folder")
    include = [*cfg.include_path, *([local_tasks] if local_tasks else [])]  # local copies: after, so they win
    manager = TaskManager(include_path=include or None)
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:
        skipped = unreadable(cfg.include_path)
        raise UserError(
            f"dataset.lmeval.tasks: lm-eval has no task or group {', '.join(unknown)} "
            "(lm_eval --tasks list shows them; your own YAMLs: dataset.lmeval.include_path=[folder])"
            + (f"; lm-eval skipped YAMLs it could not read: {'; '.join(skipped[:3])}" if skipped else "")
        )
    names = ",".join(cfg.tasks)
    try:
        with _hub_dirs(cfg.hub_dirs):
            loaded = manager.load(list(cfg.tasks))
    except ConnectionError as e:
        raise UserError(
            f"dataset.lmeval.tasks={names}: {str(e).splitlines()[0]}; point the task at local files "
            "(dataset.lmeval.hub_dirs=['<hub id>=<folder>'], or an include_path as scripts/lmeval_local_tasks.py "
            "writes) or set dataset.lmeval.allow_hub=true"
        ) from None
    except FileNotFoundError as e:  # a task's data_files that are not there
        raise UserError(
            f"dataset.lmeval.tasks={names}: a task's data is missing: {_one_line(e)} (the task YAML's "
            "dataset_kwargs.data_files, or dataset.lmeval.hub_dirs / dataset.lmeval.local)"
        ) from None
    except ValueError as e:  # a task YAML lm-eval cannot build (an unknown output_type, ...)
        raise UserError(f"dataset.lmeval.tasks={names}: lm-eval cannot build it: {_one_line(e)}") from None
    limits: dict[str, int | None] = {}
    for name, task in loaded["tasks"].items():
        kind = task.get_config("output_type")
        if kind not in ("multiple_choice", *SUPPORTED):
            raise UserError(f"lm-eval task {name} is {kind}: the lm-eval adapter does not run {kind} tasks yet")
        if cfg.num_fewshot is not None:
            if task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=cfg.num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=SEEDS["fewshot"])
    for name, task in loaded["tasks"].items():
        limits[name] = get_sample_size(task, limit)
        task.build_all_requests(
            limit=limits[name],
            rank=0,
            world_size=1,
            apply_chat_template=False,
            fewshot_as_multiturn=False,
            chat_template=None,
            system_instruction=None,
        )
    return Built(loaded, limits)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def unreadable(folders: Sequence[str]) -> list[str]:
    """`path: reason` for each YAML under these folders that lm-eval's task index skips (it says so only in
    a debug log): the one place that reads lm-eval's private index, to say why a user's task is not found."""
    from lm_eval.tasks._index import TaskIndex
    from lm_eval.tasks._yaml_loader import load_yaml

    out = []
    for folder in folders:
        for path in sorted(Path(folder).glob("**/*.yaml")):
            try:
                TaskIndex.process_cfg(load_yaml(path, resolve_func=False, recursive=True), path, {})
            except Exception as e:
                out.append(f"{path}: {_one_line(e)}")
    return out


@contextlib.contextmanager
def _hub_dirs(entries: Sequence[str]) -> Iterator[None]:
    """While lm-eval loads its tasks, datasets.load_dataset reads each mapped hub id from its local folder."""
    import datasets

    mapping = {}
    for entry in entries:
        hub_id, sep, folder = entry.partition("=")
        if not sep or not hub_id or not folder:
            raise UserError(f"dataset.lmeval.hub_dirs: {entry!r} is not '<hub dataset id>=<local folder>'")
        if not os.path.isdir(folder):
            raise UserError(f"dataset.lmeval.hub_dirs: {hub_id} -> {folder}: no such folder")
        mapping[hub_id] = folder
    if not mapping:
        yield
        return
    original = datasets.load_dataset

    def load_dataset(path: str, *args: Any, **kwargs: Any) -> Any:
        return original(mapping.get(path, path), *args, **kwargs)

    datasets.load_dataset = load_dataset
    try:
        yield
    finally:
        datasets.load_dataset = original


def version(cfg: LmevalConfig, built: Built) -> str:
    """What decides the prompts and the scoring: lm-eval's version, the tasks, their versions and settings."""
    import lm_eval

    tasks = {
        name: [str(task.VERSION), task.get_config("num_fewshot")] for name, task in built.loaded["tasks"].items()
    }
    blob = json.dumps([lm_eval.__version__, list(cfg.tasks), cfg.num_fewshot, tasks], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


def request_rows(built: Built) -> list[dict[str, Any]]:
    """One JSON-able row per request, in `instances` order: what the infer stage caches and writes."""
    rows = []
    for i, inst in enumerate(built.instances):
        args = list(inst.args)
        if inst.request_type == "generate_until":
            args = [args[0], {k: v for k, v in args[1].items()}]
        rows.append(
            {
                "idx": i,
                "task": inst.task_name,
                "doc_id": inst.doc_id,
                "choice": inst.idx,
                "type": inst.request_type,
                "repeats": inst.repeats,
                "args": args,
            }
        )
    return rows


def answer(backend: Backend, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The backend's answers to these requests: (logprob, is_greedy) for loglikelihood (each doc's requests
    together, so its shared context is computed once), the text for generate_until (cut at its stop strings)."""
    out: dict[int, dict[str, Any]] = {}
    scored = [r for r in rows if r["type"] == "loglikelihood"]
    by_doc: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in scored:
        by_doc[(r["task"], r["doc_id"])].append(r)
    groups = list(by_doc.values())
    answers = (
        []
        if not groups
        else backend.loglikelihood(
            [[LoglikelihoodRequest(r["args"][0], r["args"][1]) for r in g] for g in groups], Convention.lmeval
        )
    )
    for group, responses in zip(groups, answers, strict=True):
        for r, resp in zip(group, responses, strict=True):
            out[r["idx"]] = {"resp": [[resp.logprob, resp.greedy]] * r["repeats"]}
    rolling = [r for r in rows if r["type"] == "loglikelihood_rolling"]
    if rolling:  # only then: backends that cannot (served models) refuse whatever they are given
        for r, total in zip(rolling, backend.loglikelihood_rolling([r["args"][0] for r in rolling]), strict=True):
            out[r["idx"]] = {"resp": [total] * r["repeats"]}
    generated = [r for r in rows if r["type"] == "generate_until"]
    requests = []
    for r in generated:
        kwargs = r["args"][1]
        if kwargs.get("do_sample") or float(kwargs.get("temperature", 0.0) or 0.0) > 0:
            raise UserError(f"lm-eval task {r['task']} samples (do_sample): the adapter generates greedily only")
        until = kwargs.get("until") or []
        stop = (until,) if isinstance(until, str) else tuple(until)
        max_new = int(kwargs.get("max_gen_toks") or kwargs.get("max_new_tokens") or 256)
        requests.append(GenerationRequest(r["args"][0], None, stop=stop, max_new_tokens=max_new))
    for r, reply in zip(generated, backend.generate(requests), strict=True):
        out[r["idx"]] = {"resp": [reply.text] * r["repeats"]}
    return [{**r, **out[r["idx"]]} for r in rows]


def score(built: Built, answered: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """lm-eval's own filters, process_results, aggregation and group means on the answers (evaluate's steps).
    Also returns one row per document: its prompt, target, filtered answers and per-document metrics (the
    values lm-eval's --log_samples writes), named as in `flat_metrics` but not scaled."""
    from lm_eval.evaluator_utils import _process_results

    instances = built.instances
    if len(answered) != len(instances):
        raise UserError(f"{len(answered)} answers for {len(instances)} lm-eval requests: rerun mode=infer")
    for inst, row in zip(instances, answered, strict=True):
        inst.resps = [tuple(x) if inst.request_type == "loglikelihood" else x for x in row["resp"]]
    acc = {}
    docs: list[dict[str, Any]] = []
    for name, task in built.loaded["tasks"].items():
        raw: dict[tuple[str, str], list[Any]] = defaultdict(list)
        task.apply_filters()
        by_doc: dict[int, list[Any]] = defaultdict(list)
        for inst in task.instances:
            by_doc[inst.doc_id].append(inst)
        for insts in by_doc.values():
            insts.sort(key=lambda x: x.idx)
        rows: dict[int, dict[str, Any]] = {}
        for key in task.instances[0].filtered_resps:
            for doc_id, doc in task.doc_iterator(rank=0, limit=built.limits[name], world_size=1):
                filtered = [i.filtered_resps[key] for i in by_doc[doc_id]]
                metrics = task.process_results(doc, filtered)
                row = rows.setdefault(doc_id, _doc_row(name, doc_id, task, doc, by_doc[doc_id]))
                row["filtered"][key] = filtered
                for metric, value in metrics.items():
                    raw[(metric, key)].append(value)
                    label = metric if key == "none" else f"{metric},{key}"
                    row["metrics"][label] = _plain(value)
        docs.extend(rows[d] for d in sorted(rows))
        acc[name] = {"task": task, "raw_metrics": raw, "logged_samples": []}
    out: dict[str, Any] = _process_results(acc, built.loaded.get("groups", {}), 0)._to_eval_results()
    return out, docs


def _plain(value: Any) -> Any:
    """A per-document metric as JSON: numbers and strings as they are, tuples (perplexity's (ll, words)) as
    lists, anything else as its repr."""
    if isinstance(value, int | float | str | None):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return repr(value)


def _doc_row(name: str, doc_id: int, task: Any, doc: Any, insts: list[Any]) -> dict[str, Any]:
    try:
        target: Any = task.doc_to_target(doc)
    except Exception:  # a task whose target needs more than the doc: the metrics still say it all
        target = None
    return {
        "task": name,
        "doc_id": doc_id,
        "prompt": insts[0].args[0] if insts and insts[0].args else "",
        "target": target if isinstance(target, int | float | str | list) else repr(target),
        "filtered": {},
        "metrics": {},
    }


def flat_metrics(scored: dict[str, Any]) -> dict[str, float]:
    """lm-eval's results as hydra-eval metrics: '<task or group>/<metric>' (the filter after a comma unless it
    is lm-eval's 'none'), x100 for what lm-eval reports in [0, 1] (acc, exact_match, ...), stderr left out."""
    out: dict[str, float] = {}
    for name, values in scored["results"].items():
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or "_stderr" in key:
                continue
            if key.startswith("sample_len"):  # a count, not a score (results' n has the documents)
                continue
            metric, _, filt = key.partition(",")
            label = metric if filt in ("", "none") else f"{metric},{filt}"
            out[f"{name}/{label}"] = scale_of(metric) * float(value)
    return out


def scale_of(metric: str) -> float:
    """x100 for what lm-eval reports in [0, 1] (acc, exact_match, ...); perplexities as they are."""
    return 1.0 if "perplexity" in metric or metric in ("bits_per_byte", "byte_perplexity") else 100.0


def doc_id(doc: dict[str, Any]) -> str:
    """A scored document's row id: '<task>:<doc_id>'."""
    return f"{doc['task']}:{doc['doc_id']}"


def per_row(metrics: dict[str, float], docs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each document's value behind every '<task>/<metric>' that lm-eval aggregates as a plain mean over the
    task's documents (in the metric's unit); group metrics, perplexity, bleu and the like have none."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_task.setdefault(str(d["task"]), []).append(d)
    out: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        task, _, label = name.rpartition("/")
        mine = by_task.get(task, [])
        values = [d["metrics"].get(label) for d in mine]
        if not mine or not all(isinstance(v, int | float) for v in values):  # bools too (IFEval's prompt-level)
            continue
        scaled = [scale_of(label.partition(",")[0]) * float(v) for v in values]
        if _plain_mean(scaled, value):
            out[name] = {doc_id(d): v for d, v in zip(mine, scaled, strict=True)}
    return out


def _plain_mean(values: list[float], reported: float) -> bool:
    """Whether `reported` is the plain mean of these finite per-document values (lm-eval's aggregation was a
    mean, not a corpus-level score)."""
    if not values or not all(math.isfinite(v) for v in values) or not math.isfinite(reported):
        return False
    return abs(sum(values) / len(values) - reported) <= 1e-6 * max(1.0, abs(reported))
