"""Merge the predictions of a dataset's shards into one folder, which the eval stage then scores."""

from __future__ import annotations

import json
from pathlib import Path

from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles, read_json, read_jsonl, write_json, write_jsonl
from hydra_eval.records import InferMeta, check_version


def merge(shard_roots: list[Path], out: JobFiles) -> InferMeta:
    """Concatenate shard predictions in shard order; check they tile the dataset exactly once."""
    rows = []
    metas = []
    for root in shard_roots:
        files = JobFiles(root=root, model=out.model, dataset=out.dataset)
        metas.append(InferMeta.from_json(read_json(files.infer_meta), str(files.infer_meta)))
        shard_rows = read_jsonl(files.predictions)
        for row in shard_rows:
            check_version(row, str(files.predictions))
        rows.extend(shard_rows)
    ids = [r["idx"] for r in rows]
    if ids != list(range(len(ids))):
        raise UserError(f"shards of {out.model}/{out.dataset} do not tile the dataset: {shard_roots}")
    if len({(m.version, m.cache_key, json.dumps(m.fingerprints, sort_keys=True)) for m in metas}) != 1:
        raise UserError(f"shards of {out.model}/{out.dataset} come from other prompt versions, settings or data")
    first = metas[0]
    meta = InferMeta(
        model=first.model,
        dataset=first.dataset,
        version=first.version,
        mode=first.mode,
        n=len(rows),
        data_source=first.data_source,
        fingerprints=first.fingerprints,
        cache_key=None,
        shard={"index": 0, "count": 1, "rows": [0, len(ids)], "merged_from": [str(r) for r in shard_roots]},
        reused={k: sum(m.reused[k] for m in metas) for k in ("cache", "folder", "computed")},
        # job time summed over shards (they ran in parallel: wall time is less)
        load_s=sum(m.load_s for m in metas),
        infer_s=sum(m.infer_s for m in metas),
        tokens_computed=sum(m.tokens_computed for m in metas),
        head_positions=sum(m.head_positions for m in metas),
        row_keys=tuple(k for m in metas for k in m.row_keys),
    )
    write_jsonl(out.predictions, rows)
    write_json(out.infer_meta, meta.to_json())
    return meta
