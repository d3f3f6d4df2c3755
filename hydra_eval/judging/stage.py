"""The judge stage: predictions (and a baseline's) -> judge requests -> the judge model, through the content-keyed
cache -> judgments/<model>/<dataset>.jsonl (+ .meta.json). Runs after infer and before eval; in a sweep, as a
job of its own with the judge model's resources, after the jobs whose answers it judges."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hydra_eval.backends import BackendEnv, make
from hydra_eval.backends.api_client import check_reachable
from hydra_eval.data.loader import load_samples
from hydra_eval.errors import UserError
from hydra_eval.judging import prompts, store
from hydra_eval.judging.verdicts import PARSERS, Parsed
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl
from hydra_eval.plan import shard_bounds
from hydra_eval.records import (
    GenerationRequest,
    GenPrediction,
    InferMeta,
    Judgment,
    Prediction,
    prediction_from_json,
)
from hydra_eval.results import JudgeMeta
from hydra_eval.schema import ApiConfig, Config, DatasetConfig, DatasetMode, JudgeMode, JudgeSettings

log = logging.getLogger(__name__)


def judged(dataset: DatasetConfig) -> bool:
    """The dataset is scored by a judge model."""
    return dataset.judge.mode is not JudgeMode.none


def preflight(cfg: Config) -> None:
    """What the judge stage needs, checked before any generation: a judge model, a generation dataset, and for
    pairwise a baseline whose answers are there."""
    dataset, settings = cfg.dataset, cfg.dataset.judge
    if not judged(dataset):
        return
    if dataset.mode is not DatasetMode.gen:
        raise UserError(f"dataset.judge.mode={settings.mode.value}: dataset {dataset.name} must be a gen dataset")
    if cfg.judge is None:
        raise UserError(
            f"dataset {dataset.name} is scored by a judge model: give judge=<model config> (conf/judge/, e.g. "
            "judge=smollm2_135m or judge=llamacpp_smollm2), or mode=infer to generate only"
        )
    for name, low in (("max_new_tokens", 1), ("strong_weight", 1), ("bootstrap", 0)):
        value = getattr(settings, name)
        if value < low:
            raise UserError(f"dataset.judge.{name} must be a whole number of at least {low}, not {value}")
    if any(t < 1 for t in settings.turns):
        raise UserError(f"dataset.judge.turns are 1-based turn numbers, not {list(settings.turns)}")
    if settings.temperature < 0:
        raise UserError(f"dataset.judge.temperature must be 0 (greedy) or more, not {settings.temperature}")
    if settings.mode is JudgeMode.pairwise and not settings.baseline_field:
        _check_baseline(cfg)
    api = getattr(cfg.judge, "api", None)
    if isinstance(api, ApiConfig) and not api.serve.command:  # a served judge; one the job starts is not up yet
        check_reachable(api, "judge", cfg.judge.name)


def _check_baseline(cfg: Config) -> None:
    """The baseline's answers are there, to the same questions (its data fingerprint is this job's), for every
    row of this job."""
    settings, dataset = cfg.dataset.judge, cfg.dataset
    files = baseline_files(settings, dataset.name)
    theirs = InferMeta.from_json(read_json(files.infer_meta), str(files.infer_meta)).fingerprints.get("data")
    data = load_samples(dataset)
    if theirs != data.fingerprint:
        raise UserError(
            f"dataset.judge.baseline_dir: the baseline {settings.baseline} in {files.predictions} answered other "
            f"data: {_differs(theirs or {}, data.fingerprint)}; run it on this job's data"
        )
    try:
        start, end = shard_bounds(
            len(data.samples), cfg.shard.index, cfg.shard.count, max(1, cfg.checkpoint_every)
        )
    except ValueError:
        start, end = 0, len(data.samples)  # infer says what is wrong with the shard
    answered = {r["id"] for r in read_jsonl(files.predictions)} if files.predictions.is_file() else set()
    _check_covers(settings, dataset.name, files, [s.id for s in data.samples[start:end]], answered)


def _differs(theirs: dict[str, str], ours: dict[str, str]) -> str:
    """The data files whose checksums differ (or that only one side has), named."""
    names = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    return ", ".join(
        f"{n} ({(theirs.get(n) or 'none')[:12]} there, {(ours.get(n) or 'none')[:12]} here)" for n in names
    )


def _check_covers(
    settings: JudgeSettings, dataset: str, files: JobFiles, ids: Sequence[str], answered: Collection[str]
) -> None:
    missing = [i for i in ids if i not in answered]
    if missing:
        raise UserError(
            f"the baseline {settings.baseline} has no answer for {len(missing)} of {len(ids)} rows of {dataset} "
            f"(e.g. id {missing[0]}) in {files.predictions}: run it on the same rows"
        )


def baseline_files(settings: JudgeSettings, dataset: str) -> JobFiles:
    """Where the baseline model's predictions are: predictions/<baseline>/<dataset>.jsonl under baseline_dir."""
    if not settings.baseline or not settings.baseline_dir:
        raise UserError(
            "dataset.judge.mode=pairwise needs the baseline's answers: dataset.judge.baseline=<model> in a sweep "
            "with that model, or also dataset.judge.baseline_dir=<a run or sweep folder with its predictions>"
        )
    root = Path(settings.baseline_dir)
    found = [j for j in JobFiles.inferred_under(root) if j.model == settings.baseline and j.dataset == dataset]
    if not found:
        raise UserError(
            f"dataset.judge.baseline_dir={root}: no predictions/{settings.baseline}/{dataset}.jsonl below it "
            f"(run model={settings.baseline} dataset={dataset} mode=infer there first)"
        )
    return found[0]


def _read_rows(path: Path) -> list[GenPrediction]:
    rows: list[Prediction] = [prediction_from_json(r, str(path)) for r in read_jsonl(path)]
    return [r for r in rows if isinstance(r, GenPrediction)]


def baseline_answers(settings: JudgeSettings, dataset: str, rows: Sequence[GenPrediction]) -> dict[str, list[str]]:
    """Row id -> the baseline's answer per turn: from the rows' own field, or the baseline model's predictions."""
    if settings.baseline_field:
        return {r.id: [str((r.fields or {})[settings.baseline_field])] for r in rows}
    files = baseline_files(settings, dataset)
    theirs = {r.id: prompts.answers(r) for r in _read_rows(files.predictions)}
    _check_covers(settings, dataset, files, [r.id for r in rows], theirs)
    return theirs


def _request(settings: JudgeSettings, item: prompts.JudgeItem, chat: bool) -> GenerationRequest:
    """Chat messages for a judge with a chat template; for one without (a base model), their texts joined."""
    text = None if chat else "\n\n".join(m.content for m in item.messages)
    return GenerationRequest(
        text,
        item.messages if chat else None,
        stop=(),
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
    )


def _score(settings: JudgeSettings, item: prompts.JudgeItem, parsed: Parsed) -> tuple[float | None, int]:
    """The judged model's score and weight for one verdict."""
    if not parsed.ok:
        return None, 1
    if settings.mode is not JudgeMode.pairwise:
        return parsed.value, 1
    mine = "B" if item.game == 1 else "A"  # game 1: the baseline is assistant A
    value = 0.5 if parsed.winner == "tie" else float(parsed.winner == mine)
    return value, settings.strong_weight if parsed.strong and parsed.winner != "tie" else 1


def judgment(settings: JudgeSettings, item: prompts.JudgeItem, key: str, reply: dict[str, Any]) -> Judgment:
    parsed = PARSERS[prompts.verdict_format(settings)](reply["text"])
    score, weight = _score(settings, item, parsed)
    request = reply.get("request") or {}
    return Judgment(
        idx=item.idx,
        id=item.id,
        turn=item.turn,
        game=item.game,
        key=key,
        raw=reply["text"],
        verdict=parsed.label if parsed.ok else None,
        score=score,
        weight=weight,
        error=parsed.error
        if parsed.error is None
        else f"{parsed.error} (judge stopped: {reply['finish_reason']})",
        rationale=parsed.rationale,
        prompt_tokens=request.get("prompt_tokens", reply["n_prompt_tokens"]),
        completion_tokens=request.get("completion_tokens", reply["n_new_tokens"]),
        latency_s=request.get("latency_s"),
    )


def run_judge(cfg: Config, files: JobFiles) -> JudgeMeta:
    """Judge every prediction of this job; returns the judge metadata written beside the judgments."""
    preflight(cfg)
    assert cfg.judge is not None and cfg.dataset.gen is not None
    settings = cfg.dataset.judge
    if not files.predictions.is_file():
        raise UserError(f"no predictions at {files.predictions}: run mode=infer (or mode=all) into this folder")
    rows = _read_rows(files.predictions)
    baseline = baseline_answers(settings, cfg.dataset.name, rows) if settings.mode is JudgeMode.pairwise else None
    samples = {s.id: s for s in load_samples(cfg.dataset).samples}  # the questions as the model was asked them
    items = prompts.items(settings, cfg.dataset.gen, rows, samples, baseline)
    requests = [_request(settings, it, cfg.judge.chat_template) for it in items]
    keys = [store.request_key(r) for r in requests]

    backend = make(cfg.judge, BackendEnv(cache_dir=cfg.paths.cache_dir, job_dir=str(files.root)))  # loads nothing
    with contextlib.closing(backend):
        ident = {"judge": backend.identity(), "chat_template_kwargs": dict(cfg.judge.chat_template_kwargs)}
        cache = store.JudgeStore(Path(cfg.paths.cache_dir), ident)
        done = cache.load() if cfg.resume else {}
        todo = list(dict.fromkeys(k for k in keys if k not in done))  # identical requests are asked once
        reused = sum(k in done for k in keys)  # requests answered from the cache (duplicates included)
        log.info(
            "judge: %d reused from cache %s, %d to compute (%s judges %s on %s, %d requests)",
            reused,
            cache.key,
            len(todo),
            cfg.judge.name,
            cfg.model.name,
            cfg.dataset.name,
            len(keys),
        )
        by_key = dict(zip(keys, requests, strict=True))
        t0 = time.perf_counter()
        if todo:
            step = max(1, cfg.checkpoint_every)
            bar = tqdm(total=len(todo), desc=f"judge {cfg.dataset.name}", unit="call", disable=not cfg.progress)
            for _, block in itertools.groupby(enumerate(todo), key=lambda t: t[0] // step):
                chunk = [k for _, k in block]
                replies = backend.generate([by_key[k] for k in chunk])
                saved = [store.reply_row(k, r) for k, r in zip(chunk, replies, strict=True)]
                cache.append(saved)  # saved before the next block: a kill loses at most this block
                done.update((r["key"], r) for r in saved)
                bar.update(len(chunk))
            bar.close()
        judge_s = time.perf_counter() - t0
        counters = backend.counters()
    judgments = [judgment(settings, it, k, done[k]) for it, k in zip(items, keys, strict=True)]
    write_jsonl(files.judgments, [j.to_json() for j in judgments])
    failures = [j for j in judgments if j.error is not None]
    meta = JudgeMeta(
        judge=cfg.judge.name,
        identity=ident,
        cache_key=cache.key,
        mode=settings.mode.value,
        verdict_format=prompts.verdict_format(settings).value,
        prompt_version=prompts.version(settings),
        baseline=settings.baseline_field and f"field:{settings.baseline_field}" or settings.baseline,
        requests=len(keys),
        reused=reused,
        computed=len(todo),
        parse_failures=len(failures),
        judge_s=judge_s,
        load_s=counters.load_s,
    )
    write_json(files.judge_meta, meta.to_json())
    log.info(
        "judge: %d verdicts, %d unparsed, %d calls made in %.1fs -> %s",
        len(judgments),
        len(failures),
        len(todo),
        judge_s,
        files.judgments,
    )
    if failures:
        log.warning(
            "judge: %d of %d replies had no verdict (first: %s)", len(failures), len(judgments), failures[0].error
        )
    return meta


def read_judgments(files: JobFiles) -> tuple[JudgeMeta, list[Judgment]]:
    if not files.judgments.is_file() or not files.judge_meta.is_file():
        raise UserError(
            f"no judgments at {files.judgments}: run mode=judge (or mode=all with judge=<model>) first"
        )
    where = str(files.judgments)
    meta = JudgeMeta.from_json(read_json(files.judge_meta))
    return meta, [Judgment.from_json(r, where) for r in read_jsonl(files.judgments)]
