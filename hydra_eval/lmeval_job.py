"""One job of dataset=lmeval: lm-eval builds the requests, the backend answers them (cached by content, saved in
blocks of checkpoint_every), lm-eval scores; predictions, infer metadata and results land in the job's files
like any other dataset's, so the summary table, sweeps and MLflow treat it the same."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hydra_eval import cache, lmeval
from hydra_eval.backends import BackendEnv, make
from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl
from hydra_eval.records import InferMeta
from hydra_eval.results import Results, build
from hydra_eval.schema import Config

log = logging.getLogger(__name__)


def run_lmeval(cfg: Config, files: JobFiles) -> Results | None:
    """Infer (unless the predictions are already in the folder and mode.infer is off) and score."""
    settings = cfg.dataset.lmeval
    assert settings is not None  # validate.check
    if cfg.shard.count > 1:
        raise UserError("dataset=lmeval runs as one job (no shards yet): leave max_partition_size unset")
    local = None
    if settings.local:  # the named sets' own data, in the schema lm-eval's tasks read, in this job's folder
        from hydra_eval.data.lmeval_local import prepare

        local = str(prepare(settings.local, Path(cfg.paths.data_dir), files.root / "lmeval_local"))
    built = lmeval.build(settings, cfg.dataset.limit, local)
    rows = lmeval.request_rows(built)
    version = lmeval.version(settings, built)
    if cfg.mode.infer:
        answered, meta = _infer(cfg, files, built, rows, version)
    else:
        if not files.predictions.is_file():
            raise UserError(f"no predictions at {files.predictions}: run mode=infer (or mode=all) first")
        answered = read_jsonl(files.predictions)
        meta = InferMeta.from_json(read_json(files.infer_meta), str(files.infer_meta))
        if meta.version != version:
            raise UserError(
                f"{files.predictions} was made for lm-eval version {meta.version}, now {version}: rerun"
            )
    if not cfg.mode.eval:
        return None
    t0 = time.perf_counter()
    scored, docs = lmeval.score(built, answered)
    write_jsonl(files.judged, docs)  # one row per document: the per-example table (lm-eval's samples)
    metrics = lmeval.flat_metrics(scored)
    about: dict[str, Any] = {
        k: scored[k] for k in ("versions", "n-shot", "n-samples", "higher_is_better") if k in scored
    }
    about["groups"] = sorted(scored.get("groups", {}))
    ids = [lmeval.doc_id(d) for d in docs]
    results = build(
        meta,
        "lmeval",
        metrics,
        ids=ids,
        eval_s=time.perf_counter() - t0,
        per_row=lmeval.per_row(metrics, docs) if len(set(ids)) == len(ids) else {},
        lmeval=about,
        provenance_extra={"lm_eval": lmeval.installed_version()},
    )
    write_json(files.results, results.to_json())
    log.info(
        "eval: %s on lm-eval %s: %s -> %s",
        cfg.model.name,
        ",".join(settings.tasks),
        {k: round(v, 2) for k, v in metrics.items()},
        files.results,
    )
    return results


def _request_key(job_key: str, row: dict[str, Any]) -> str:
    """A request's cache key: the job's and the request itself (its texts included), not its place in the list,
    so a raised limit asks only the new requests."""
    return cache.key_of({"job": job_key, "request": {k: v for k, v in row.items() if k != "idx"}})


def _infer(
    cfg: Config, files: JobFiles, built: lmeval.Built, rows: list[dict[str, Any]], version: str
) -> tuple[list[dict[str, Any]], InferMeta]:
    settings = cfg.dataset.lmeval
    assert settings is not None
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    backend = make(cfg.model, BackendEnv(cache_dir=cfg.paths.cache_dir, job_dir=str(files.root)))
    with contextlib.closing(backend):
        ident = {"model": backend.identity(), "lmeval": version, "seed": cfg.model.seed}
        store = cache.PredictionStore(Path(cfg.paths.cache_dir), ident)
        keys = {r["idx"]: _request_key(store.key, r) for r in rows}
        done = store.load() if cfg.resume else {}  # request key -> answered row
        todo = [r for r in rows if keys[r["idx"]] not in done]
        log.info(
            "lm-eval %s: %d requests; predictions: %d reused from cache %s, %d to compute",
            ",".join(settings.tasks),
            len(rows),
            len(rows) - len(todo),
            store.key,
            len(todo),
        )
        step = max(1, cfg.checkpoint_every)
        t0 = time.perf_counter()
        bar = tqdm(
            total=len(todo), desc=f"lmeval {','.join(settings.tasks)}", unit="request", disable=not cfg.progress
        )
        for _, block in itertools.groupby(todo, key=lambda r: r["idx"] // step):
            chunk = list(block)
            answered = [{"schema_version": 2, **r, "key": keys[r["idx"]]} for r in lmeval.answer(backend, chunk)]
            store.append(answered)  # saved before the next block: a kill loses at most this block
            done.update((r["key"], r) for r in answered)
            bar.update(len(chunk))
        bar.close()
        counters = backend.counters()
        infer_s = time.perf_counter() - t0 - counters.load_s if todo else 0.0
    out = [cache.placed(done[keys[r["idx"]]], r["idx"]) for r in rows]
    write_jsonl(files.predictions, out)
    meta = InferMeta(
        model=cfg.model.name,
        dataset=cfg.dataset.name,
        version=version,
        mode="lmeval",
        n=len({(r["task"], r["doc_id"]) for r in rows}),  # documents, over every task
        data_source="lm-eval: " + ",".join(settings.tasks),
        fingerprints={"data": {"requests": digest}, "model": ident["model"]},
        cache_key=store.key,
        shard={"index": 0, "count": 1, "rows": [0, len(rows)]},
        reused={"cache": len(rows) - len(todo), "folder": 0, "computed": len(todo)},
        load_s=counters.load_s,
        infer_s=infer_s,
        tokens_computed=counters.tokens_computed,
        head_positions=counters.head_positions,
        row_keys=tuple(keys[r["idx"]] for r in rows),
    )
    write_json(files.infer_meta, meta.to_json())
    return out, meta
