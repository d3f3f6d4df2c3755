"""The infer stage: samples -> requests -> model -> raw outputs in predictions/<model>/<dataset>.jsonl."""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra_eval import prompts
from hydra_eval.data.loader import LoadedData, load_samples
from hydra_eval.outputs import JobFiles, write_json, write_jsonl
from hydra_eval.records import Sample
from hydra_eval.requests import lmeval_request, opencompass_request

log = logging.getLogger(__name__)


def _ppl_rows(lm: Any, ppl: Any, samples: list[Sample]) -> list[dict[str, Any]]:
    encode = lm.encode
    tok = lm.tokenizer
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    groups, texts = [], []
    for sample in samples:
        pairs = prompts.ppl_candidates(ppl, sample)
        texts.append([c + x for c, x in pairs])
        if ppl.convention == "opencompass":
            groups.append([opencompass_request(c, x, encode) for c, x in pairs])
        else:
            groups.append([lmeval_request(c, x, encode, prefix) for c, x in pairs])
    scored = lm.score_groups(groups, desc=f"ppl {sum(map(len, groups))} candidates")
    rows = []
    for sample, sample_texts, group, results in zip(samples, texts, groups, scored, strict=True):
        candidates = [
            {"logprob": res.logprob, "n_tokens": len(req.tokens), "n_scored": res.n_scored, "greedy": res.greedy}
            for req, res in zip(group, results, strict=True)
        ]
        rows.append(
            {
                "id": sample.id,
                "gold": sample.gold,
                "prompts": sample_texts,
                "choices": prompts.choice_texts(ppl, sample),
                "candidates": candidates,
            }
        )
    return rows


def _gen_rows(lm: Any, gen: Any, model_cfg: Any, samples: list[Sample]) -> list[dict[str, Any]]:
    texts = [prompts.gen_prompt(gen, s) for s in samples]
    max_new = gen.max_out_len or model_cfg.max_out_len
    generations = lm.generate(
        texts, max_new, list(gen.stop), chat=model_cfg.chat_template, desc=f"gen {len(texts)} rows"
    )
    return [
        {
            "id": s.id,
            "gold": s.gold,
            "prompt": p,
            "generation": g.text,
            "n_prompt_tokens": g.n_prompt_tokens,
            "n_new_tokens": g.n_new_tokens,
            "options": [s.fields[f] for f in gen.option_fields],
        }
        for s, p, g in zip(samples, texts, generations, strict=True)
    ]


def run_infer(cfg: Any, files: JobFiles) -> dict[str, Any]:
    from hydra_eval.backends import loading
    from hydra_eval.backends.local import LocalLM

    data: LoadedData = load_samples(cfg.dataset)
    log.info("dataset %s: %d samples from %s", cfg.dataset.name, len(data.samples), data.source)
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
        progress=cfg.progress,
    )
    t1 = time.perf_counter()
    if cfg.dataset.mode == "ppl":
        rows = _ppl_rows(lm, cfg.dataset.ppl, data.samples)
    else:
        rows = _gen_rows(lm, cfg.dataset.gen, cfg.model, data.samples)
    infer_s = time.perf_counter() - t1
    write_jsonl(files.predictions, rows)
    meta = {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "version": prompts.version(cfg.dataset),
        "mode": cfg.dataset.mode,
        "n": len(rows),
        "data_source": data.source,
        "fingerprints": {"data": data.fingerprint, "model": loading.fingerprint(cfg.model)},
        "timings": {"load_s": load_s, "infer_s": infer_s},
        "throughput": {
            "examples_per_s": len(rows) / infer_s if infer_s else None,
            "tokens_computed": lm.tokens_computed,
            "head_positions": lm.head_positions,
            "tokens_per_s": lm.tokens_computed / infer_s if infer_s else None,
        },
    }
    write_json(files.infer_meta, meta)
    log.info("infer: %d rows in %.1fs -> %s", len(rows), infer_s, files.predictions)
    return meta
