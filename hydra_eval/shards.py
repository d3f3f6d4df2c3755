"""Merge the predictions of a dataset's shards into one folder, which the eval stage then scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl


def merge(shard_roots: list[Path], out: JobFiles) -> dict[str, Any]:
    """Concatenate shard predictions in shard order; check they tile the dataset exactly once."""
    rows: list[dict[str, Any]] = []
    metas = []
    for root in shard_roots:
        files = JobFiles(root=root, model=out.model, dataset=out.dataset)
        metas.append(read_json(files.infer_meta))
        rows.extend(read_jsonl(files.predictions))
    ids = [r["idx"] for r in rows]
    if ids != list(range(len(ids))):
        raise UserError(f"shards of {out.model}/{out.dataset} do not tile the dataset: {shard_roots}")
    if len({m["version"] for m in metas}) != 1 or len({m["cache_key"] for m in metas}) != len(metas):
        raise UserError(f"shards of {out.model}/{out.dataset} come from different prompt versions or repeat")
    first = metas[0]
    infer_s = sum(m["timings"]["infer_s"] for m in metas)
    computed = sum(m["reused"]["computed"] for m in metas)
    tokens = sum(m["throughput"]["tokens_computed"] for m in metas)
    meta = {
        **{k: first[k] for k in ("model", "dataset", "version", "mode", "data_source", "fingerprints")},
        "n": len(rows),
        "cache_key": None,
        "shard": {"index": 0, "count": 1, "rows": [0, len(ids)], "merged_from": [str(r) for r in shard_roots]},
        "reused": {k: sum(m["reused"][k] for m in metas) for k in ("cache", "folder", "computed")},
        # job time summed over shards (they ran in parallel: wall time is less)
        "timings": {"load_s": sum(m["timings"]["load_s"] for m in metas), "infer_s": infer_s},
        "throughput": {
            "examples_per_s": computed / infer_s if infer_s else None,
            "tokens_computed": tokens,
            "head_positions": sum(m["throughput"]["head_positions"] for m in metas),
            "tokens_per_s": tokens / infer_s if infer_s else None,
        },
    }
    write_jsonl(out.predictions, rows)
    write_json(out.infer_meta, meta)
    return meta
