"""The infer stage: samples -> requests -> model -> raw outputs in predictions/<model>/<dataset>.jsonl."""

from __future__ import annotations

import itertools
import logging
import time
import zlib
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hydra_eval import cache, fewshot, prompts
from hydra_eval.data.loader import LoadedData, load_samples
from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles, write_json, write_jsonl
from hydra_eval.plan import shard_bounds
from hydra_eval.records import Sample
from hydra_eval.requests import lmeval_request, opencompass_request

log = logging.getLogger(__name__)


def _score_local(lm: Any, ppl: Any, pairs_of: list[list[tuple[str, str]]]) -> list[list[dict[str, Any]]]:
    encode, tok = lm.encode, lm.tokenizer
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if ppl.convention == "opencompass":
        groups = [[opencompass_request(c, x, encode) for c, x in pairs] for pairs in pairs_of]
    else:
        groups = [[lmeval_request(c, x, encode, bos) for c, x in pairs] for pairs in pairs_of]
    return [
        [
            {"logprob": res.logprob, "n_tokens": len(req.tokens), "n_scored": res.n_scored, "greedy": res.greedy}
            for req, res in zip(group, results, strict=True)
        ]
        for group, results in zip(groups, lm.score_groups(groups), strict=True)
    ]


def _score_api(lm: Any, ppl: Any, pairs_of: list[list[tuple[str, str]]]) -> list[list[dict[str, Any]]]:
    return [
        [
            {
                "logprob": s.logprob,
                "n_tokens": s.n_tokens,
                "n_scored": s.n_scored,
                "greedy": s.greedy,
                "request": s.request,
            }
            for s in scores
        ]
        for scores in lm.score_texts(pairs_of, ppl.convention)
    ]


def _ppl_rows(lm: Any, dataset: Any, samples: list[Sample], prefixes: list[str]) -> list[dict[str, Any]]:
    ppl = dataset.ppl
    pairs_of = [prompts.ppl_candidates(ppl, s, p) for s, p in zip(samples, prefixes, strict=True)]
    scored = (_score_api if getattr(lm, "scores_text", False) else _score_local)(lm, ppl, pairs_of)
    rows = []
    for sample, pairs, candidates in zip(samples, pairs_of, scored, strict=True):
        row: dict[str, Any] = {"id": sample.id, "gold": sample.gold}
        if len({c for c, _ in pairs}) == 1 and len(pairs) > 1:  # one shared context, stored once
            row.update(context=pairs[0][0], continuations=[x for _, x in pairs])
        else:
            row["prompts"] = [c + x for c, x in pairs]
        row.update(choices=prompts.choice_texts(ppl, sample), candidates=candidates)
        if dataset.group_metrics_by:
            row["group"] = sample.fields[dataset.group_metrics_by]
        rows.append(row)
    return rows


def _gen_rows(
    lm: Any, dataset: Any, model_cfg: Any, samples: list[Sample], prefixes: list[str]
) -> list[dict[str, Any]]:
    gen = dataset.gen
    texts = [p + prompts.gen_prompt(gen, s) for s, p in zip(samples, prefixes, strict=True)]
    max_new = gen.max_out_len or model_cfg.max_out_len
    chat = model_cfg.chat_template if gen.chat_template is None else gen.chat_template
    n = max(1, gen.num_samples)
    if n == 1:
        generations = [[g] for g in lm.generate(texts, max_new, list(gen.stop), chat=chat)]
    else:  # n samples per row, each seeded by (row, sample number)
        seeds = [zlib.crc32(f"{model_cfg.seed}:{s.id}:{j}".encode()) for s in samples for j in range(n)]
        flat = lm.generate(
            [t for t in texts for _ in range(n)],
            max_new,
            list(gen.stop),
            chat=chat,
            temperature=gen.temperature,
            seeds=seeds,
        )
        generations = [flat[i * n : (i + 1) * n] for i in range(len(texts))]
    rows = []
    for s, p, gs in zip(samples, texts, generations, strict=True):
        row: dict[str, Any] = {"id": s.id, "gold": s.gold, "prompt": p, "generation": gs[0].text}
        if n > 1:
            row["generations"] = [g.text for g in gs]
        row.update(
            n_prompt_tokens=gs[0].n_prompt_tokens,
            n_new_tokens=sum(g.n_new_tokens for g in gs),
            options=[s.fields[f] for f in gen.option_fields],
        )
        if gs[0].request is not None:  # API models: one request per generation
            row["requests"] = [dict(g.request or {}) for g in gs]
        if gen.answers_field:
            row["answers"] = list(s.fields[gen.answers_field])
        if gen.keep_fields:
            row["fields"] = {f: s.fields[f] for f in gen.keep_fields}
        if dataset.group_metrics_by:
            row["group"] = s.fields[dataset.group_metrics_by]
        rows.append(row)
    return rows


def _compute(cfg: Any, lm: Any, data: LoadedData, samples: list[Sample]) -> list[dict[str, Any]]:
    dataset = cfg.dataset
    prefixes = [
        prompts.prefix(dataset, s, fewshot.select(dataset.fewshot, s, data.fewshot, data.fewshot_same_split))
        for s in samples
    ]
    if dataset.mode == "ppl":
        return _ppl_rows(lm, dataset, samples, prefixes)
    return _gen_rows(lm, dataset, cfg.model, samples, prefixes)


def _load_lm(cfg: Any) -> tuple[Any, float]:
    from hydra_eval.backends import loading
    from hydra_eval.backends.local import LocalLM

    if cfg.model.kind == "openai":
        from hydra_eval.backends.api import ApiLM

        log.info("model %s: OpenAI-compatible endpoint %s", cfg.model.name, cfg.model.api.base_url)
        return ApiLM(cfg.model), 0.0
    t0 = time.perf_counter()
    model, tokenizer = loading.load(cfg.model, cfg.paths.cache_dir)
    load_s = time.perf_counter() - t0
    log.info("model %s loaded in %.1fs", cfg.model.name, load_s)
    lm = LocalLM(
        model,
        tokenizer,
        cfg.model.batch_size,
        cfg.model.max_seq_len,
        token_budget=cfg.model.token_budget,
        progress=False,
    )  # one progress bar, over samples, in run_infer
    return lm, load_s


def _reuse_folder(cfg: Any) -> Path | None:
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


def run_infer(cfg: Any, files: JobFiles) -> dict[str, Any]:
    """Predictions for this job's rows (its shard of the dataset). Rows already computed under the same
    content key (cache, or an earlier run named by `reuse`) are taken as they are; the rest are computed in
    batches of checkpoint_every samples, each saved before the next starts."""
    from hydra_eval.backends import loading

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

    digest = cache.samples_digest(itertools.chain(data.samples, [] if data.fewshot_same_split else data.fewshot))
    ident = cache.identity(cfg, data.fingerprint, loading.fingerprint(cfg.model), digest)
    store = cache.PredictionStore(Path(cfg.paths.cache_dir), ident)
    done = store.load() if cfg.resume else {}
    from_cache = sum(i in done for i, _ in indexed)
    folder = _reuse_folder(cfg)
    from_folder = 0
    if folder is not None:
        earlier = {i: r for i, r in cache.rows_from_folder(folder, store.key).items() if i not in done}
        wanted = [earlier[i] for i, _ in indexed if i in earlier]
        store.append(wanted)
        done.update((int(r["idx"]), r) for r in wanted)
        from_folder = len(wanted)
    todo = [(i, s) for i, s in indexed if i not in done]
    log.info(
        "predictions: %d reused from cache %s, %d from %s, %d to compute",
        from_cache,
        store.key,
        from_folder,
        folder or "no earlier folder",
        len(todo),
    )

    lm, load_s, infer_s = None, 0.0, 0.0
    if todo:
        lm, load_s = _load_lm(cfg)
        bar = tqdm(
            total=len(todo), desc=f"{cfg.dataset.mode} {cfg.dataset.name}", unit="sample", disable=not cfg.progress
        )
        t1 = time.perf_counter()
        # Saved batches are fixed blocks of rows (idx // step): a resumed or sharded run computes exactly the
        # batches an uninterrupted one does, so its numbers are bit-identical.
        for _, block in itertools.groupby(todo, key=lambda t: t[0] // step):
            chunk = list(block)
            rows = [
                {"idx": i, **r}
                for (i, _), r in zip(chunk, _compute(cfg, lm, data, [s for _, s in chunk]), strict=True)
            ]
            store.append(rows)  # saved before the next batch starts: a kill loses at most this batch
            done.update((r["idx"], r) for r in rows)
            bar.update(len(chunk))
        bar.close()
        infer_s = time.perf_counter() - t1

    rows = [done[i] for i, _ in indexed]
    write_jsonl(files.predictions, rows)
    tokens = lm.tokens_computed if lm else 0
    meta = {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "version": prompts.version(cfg.dataset),
        "mode": cfg.dataset.mode,
        "n": len(rows),
        "data_source": data.source,
        "fingerprints": {"data": data.fingerprint, "model": ident["model"]},
        "cache_key": store.key,
        "shard": {"index": cfg.shard.index, "count": cfg.shard.count, "rows": [start, end]},
        "reused": {"cache": from_cache, "folder": from_folder, "computed": len(todo)},
        "timings": {"load_s": load_s, "infer_s": infer_s},
        "throughput": {
            "examples_per_s": len(todo) / infer_s if infer_s else None,
            "tokens_computed": tokens,
            "head_positions": lm.head_positions if lm else 0,
            "tokens_per_s": tokens / infer_s if infer_s else None,
        },
    }
    write_json(files.infer_meta, meta)
    log.info("infer: %d rows (%d computed) in %.1fs -> %s", len(rows), len(todo), infer_s, files.predictions)
    return meta
