"""The infer stage: samples -> requests -> backend -> predictions/<model>/<dataset>.jsonl (+ .meta.json)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hydra_eval import cache, fewshot, prompts, tasks
from hydra_eval.backends import Backend, BackendEnv, make
from hydra_eval.data.loader import LoadedData, load_samples
from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles, write_json, write_jsonl
from hydra_eval.plan import shard_bounds
from hydra_eval.records import InferMeta, Sample
from hydra_eval.schema import Config

log = logging.getLogger(__name__)


def _shots(cfg: Config, data: LoadedData, rows: list[tuple[int, Sample]]) -> dict[int, list[Sample]]:
    """Each row's few-shot examples (part of its cache key)."""
    spec = cfg.dataset.fewshot
    return {i: fewshot.select(spec, s, data.fewshot, data.fewshot_same_split) for i, s in rows}


def _compute(
    task: tasks.Task, backend: Backend, rows: list[tuple[int, Sample]], shots: dict[int, list[Sample]]
) -> list[dict[str, Any]]:
    return [p.to_json() for p in task.predict(backend, rows, [shots[i] for i, _ in rows])]


def _reuse_folder(cfg: Config) -> Path | None:
    if not cfg.reuse:
        return None
    if cfg.reuse == "latest":
        folder = cache.latest_run(Path(cfg.paths.output_root), Path(cfg.output_dir))
        if folder is None:
            raise UserError(f"reuse=latest: no earlier run under {cfg.paths.output_root}")
        return folder
    folder = Path(cfg.reuse)
    if not folder.is_dir():
        raise UserError(f"reuse={cfg.reuse}: no such folder")
    return folder


def run_infer(cfg: Config, files: JobFiles) -> InferMeta:
    """Predictions for this job's rows (its shard of the dataset). Rows already computed under the same
    content key (cache, or an earlier run named by `reuse`), whatever the limit, shard or file they were
    computed for, are taken as they are; the rest are computed in batches of checkpoint_every samples, each
    saved before the next starts."""
    data: LoadedData = load_samples(cfg.dataset)
    step = max(1, cfg.checkpoint_every)
    try:
        start, end = shard_bounds(len(data.samples), cfg.shard.index, cfg.shard.count, step)
    except ValueError as e:
        raise UserError(str(e)) from None
    indexed = list(enumerate(data.samples))[start:end]
    shard = (
        f" (shard {cfg.shard.index + 1}/{cfg.shard.count}: rows {start}-{end - 1})" if cfg.shard.count > 1 else ""
    )
    log.info("dataset %s: %d samples from %s%s", cfg.dataset.name, len(indexed), data.source, shard)

    backend = make(
        cfg.model, BackendEnv(cache_dir=cfg.paths.cache_dir, job_dir=str(files.root))
    )  # loads nothing yet
    with contextlib.closing(backend):  # an engine or a started server is released, also on failure
        task = tasks.for_dataset(cfg.dataset, cfg.model)
        ident = cache.identity(cfg, backend.identity())
        store = cache.PredictionStore(Path(cfg.paths.cache_dir), ident)
        shots = _shots(cfg, data, indexed)
        keys = {i: cache.row_key(store.key, s, shots[i]) for i, s in indexed}
        done = store.load() if cfg.resume else {}  # row key -> row
        from_cache = sum(keys[i] in done for i, _ in indexed)
        folder = _reuse_folder(cfg)
        from_folder = 0
        if folder is not None:
            earlier = cache.rows_from_folder(folder, {keys[i] for i, _ in indexed} - done.keys())
            store.append(earlier.values())
            done.update(earlier)
            from_folder = sum(keys[i] in earlier for i, _ in indexed)
        todo = [(i, s) for i, s in indexed if keys[i] not in done]
        log.info(
            "predictions: %d reused from cache %s, %d from %s, %d to compute",
            from_cache,
            store.key,
            from_folder,
            folder or "no earlier folder",
            len(todo),
        )

        infer_s = 0.0
        if todo:
            bar = tqdm(
                total=len(todo),
                desc=f"{cfg.dataset.mode.value} {cfg.dataset.name}",
                unit="sample",
                disable=not cfg.progress,
            )
            t1 = time.perf_counter()
            # Saved batches are fixed blocks of rows (idx // step): a resumed or sharded run computes exactly the
            # batches an uninterrupted one does, so its numbers are bit-identical. Rows new to a block (a raised
            # limit, an edited row) are computed in a batch of their own: a batching backend may differ there in
            # the last digits, as it does between batch sizes.
            for _, block in itertools.groupby(todo, key=lambda t: t[0] // step):
                chunk = list(block)
                rows = [{**r, "key": keys[r["idx"]]} for r in _compute(task, backend, chunk, shots)]
                store.append(rows)  # saved before the next batch starts: a kill loses at most this batch
                done.update((r["key"], r) for r in rows)
                bar.update(len(chunk))
            bar.close()
            counters = backend.counters()
            infer_s = time.perf_counter() - t1 - counters.load_s  # the model loads on the first batch
        counters = backend.counters()
        rows = [cache.placed(done[keys[i]], i) for i, _ in indexed]
        write_jsonl(files.predictions, rows)
        meta = InferMeta(
            model=cfg.model.name,
            dataset=cfg.dataset.name,
            version=prompts.version(cfg.dataset),
            mode=cfg.dataset.mode.value,
            n=len(rows),
            data_source=data.source,
            fingerprints={"data": data.fingerprint, "model": ident["model"]},
            cache_key=store.key,
            shard={"index": cfg.shard.index, "count": cfg.shard.count, "rows": [start, end]},
            reused={"cache": from_cache, "folder": from_folder, "computed": len(todo)},
            load_s=counters.load_s,
            infer_s=infer_s,
            tokens_computed=counters.tokens_computed,
            head_positions=counters.head_positions,
            row_keys=tuple(keys[i] for i, _ in indexed),
        )
        write_json(files.infer_meta, meta.to_json())
        log.info("infer: %d rows (%d computed) in %.1fs -> %s", len(rows), len(todo), infer_s, files.predictions)
        return meta
