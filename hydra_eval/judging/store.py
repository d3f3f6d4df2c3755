"""The judge's replies, cached by content: a call's key is the judge model's identity, its sampling settings and
the exact messages (the judge prompt's version and the judged texts are in them). A rerun makes no judge call;
a judge job killed after a saved block computes only the rest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hydra_eval.cache import RowStore, key_of
from hydra_eval.records import GenerationRequest, GenerationResponse


def request_key(request: GenerationRequest) -> str:
    messages = [[m.role, m.content] for m in request.messages or ()]
    blob = json.dumps(
        [messages, request.prompt, request.max_new_tokens, request.sampling, request.seed, list(request.stop)],
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


class JudgeStore(RowStore):
    """cache_dir/judgments/<judge key>/rows.jsonl, one line per judge call ({"key", "text", ...})."""

    key_field = "key"
    what = "a block of judge replies"

    def __init__(self, cache_dir: Path, judge_identity: dict[str, Any]):
        self.key = key_of(judge_identity)
        super().__init__(cache_dir / "judgments" / self.key, judge_identity)


def reply_row(key: str, response: GenerationResponse) -> dict[str, Any]:
    from hydra_eval.records import SCHEMA_VERSION

    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "text": response.text,
        "finish_reason": response.finish_reason,
        "n_prompt_tokens": response.n_prompt_tokens,
        "n_new_tokens": response.n_new_tokens,
    }
    if response.usage is not None:
        row["request"] = response.usage.to_json()
    return row
