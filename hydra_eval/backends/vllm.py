"""The vLLM backend: vLLM's offline engine (`vllm.LLM`) in the job's process.

Log-likelihoods come from prompt logprobs (both conventions, the same token requests as the transformers
backend builds), generations from `SamplingParams` (greedy, or sampled from each request's own seed, stop
strings). Chat messages go through the tokenizer's template here, as the transformers backend does, so both
send the model the same tokens. Needs the `vllm` extra (`make vllm` builds `.vllm-venv`: vLLM pins its own
torch and transformers). A GGUF model is de-quantized by transformers into paths.cache_dir first (the
folder the transformers backend caches), and vLLM loads that folder.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from hydra_eval.backends import BackendEnv
from hydra_eval.backends.local import fit_prompt, truncate
from hydra_eval.backends.tokenize import ScoreRequest, prompt_ids, token_request
from hydra_eval.errors import HarnessError, UserError
from hydra_eval.records import (
    Counters,
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from hydra_eval.schema import Convention, DType, ModelConfig

log = logging.getLogger(__name__)


@dataclass
class VllmModelConfig(ModelConfig):
    """conf/model/*.yaml with `defaults: [base_vllm]`."""

    _target_: str = "hydra_eval.backends.vllm.build"
    path: str = MISSING  # hub id or local folder
    tokenizer_path: str | None = None
    gguf_file: str | None = None  # de-quantized into paths.cache_dir by transformers, then loaded by vLLM
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: DType = DType.float32
    max_seq_len: int = 2048  # vLLM's max_model_len
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 256  # sequences the engine schedules at once
    enforce_eager: bool = False  # true: no CUDA graphs / torch.compile (faster start, slower steady state)
    cpu_kv_cache_gb: int = 4  # the CPU build's KV cache (VLLM_CPU_KVCACHE_SPACE) unless set in the environment
    cpu_threads_bind: str = "all"  # VLLM_CPU_OMP_THREADS_BIND: all = every core the job may use, or vLLM's
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # anything else vllm.LLM takes, as is


SCHEMA = VllmModelConfig


def identity(cfg: VllmModelConfig) -> dict[str, object]:
    """The weights and the settings that change outputs (not the scheduling and memory settings)."""
    from hydra_eval.backends.hf import fingerprint

    return {
        "backend": "vllm",
        "weights": fingerprint(cfg),  # type: ignore[arg-type]  # reads path, gguf_file, revision
        "path": cfg.path,
        "tokenizer_path": cfg.tokenizer_path,
        "revision": cfg.revision,
        "dtype": cfg.dtype.value,
        "max_seq_len": cfg.max_seq_len,
    }


def engine_environment(cfg: VllmModelConfig) -> dict[str, str]:
    """What vLLM reads from the environment, set before it is imported (the user's values win): its logs go
    to the job's log through Python's logging, not to stdout (stdout carries only the table); its engine
    core runs in the job's process, so a killed job leaves no engine behind (vLLM's separate engine process
    does not watch its parent and would idle on, holding its memory or GPU; tensor-parallel workers do watch
    it); the CPU build's KV cache size and the cores its OpenMP threads are bound to."""
    env = {
        "VLLM_CONFIGURE_LOGGING": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.cpu_kv_cache_gb),
    }
    if cfg.cpu_threads_bind == "all":
        cores = sorted(os.sched_getaffinity(0))
        env["VLLM_CPU_OMP_THREADS_BIND"] = (
            f"{cores[0]}-{cores[-1]}"
            if cores == list(range(cores[0], cores[-1] + 1))
            else ",".join(map(str, cores))
        )
    else:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cfg.cpu_threads_bind
    return {k: v for k, v in env.items() if k not in os.environ}


def model_folder(cfg: VllmModelConfig, cache_root: str) -> tuple[str, str]:
    """(weights folder, tokenizer folder) vLLM loads: a GGUF file becomes the de-quantized cache folder."""
    if not cfg.gguf_file:
        return cfg.path, cfg.tokenizer_path or cfg.path
    from hydra_eval.backends import gguf_cache
    from hydra_eval.backends.hf import TransformersModelConfig, _from_pretrained

    hf_cfg = TransformersModelConfig(
        name=cfg.name,
        path=cfg.path,
        gguf_file=cfg.gguf_file,
        tokenizer_path=cfg.tokenizer_path,
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        dtype=cfg.dtype,
    )
    folder = gguf_cache.cache_dir(hf_cfg, cache_root)
    if not (folder / "config.json").is_file():
        gguf_cache.load(hf_cfg, cache_root, _from_pretrained)
    return str(folder), str(folder)


def check_scores(logprobs: Sequence[float], vocab_size: int) -> None:
    """Every token scored at -ln(vocab) means uniform logits: weights that did not load (vLLM reads a tied
    embedding saved only as lm_head.weight as zeros, with no error). A harness failure, not a model score."""
    uniform = -math.log(vocab_size)
    if logprobs and all(abs(x - uniform) < 1e-3 for x in logprobs):
        raise HarnessError(
            f"vLLM scored every token at -ln({vocab_size}) = {uniform:.4f}: its logits are uniform, the "
            "weights did not load (a tied embedding missing from the checkpoint?)"
        )


def finish_reason(reason: str | None, stop_reason: object) -> str:
    """vLLM's (finish_reason, stop_reason) as hydra-eval's FINISH_REASONS."""
    if reason == "length":
        return "length"
    return "stop_string" if isinstance(stop_reason, str) else "eos"


class VllmBackend:
    def __init__(self, cfg: VllmModelConfig, env: BackendEnv) -> None:
        self.cfg = cfg
        self.env = env
        self._identity = identity(cfg)
        self._llm: Any = None
        self._tokenizer: Any = None
        self._load_s = 0.0
        self._tokens = 0

    def identity(self) -> dict[str, object]:
        return dict(self._identity)

    def counters(self) -> Counters:
        return Counters(load_s=self._load_s, tokens_computed=self._tokens)

    def _load(self) -> None:
        cfg = self.cfg
        os.environ.update(engine_environment(cfg))
        t0 = time.perf_counter()
        try:
            from transformers import AutoTokenizer
            from vllm import LLM
        except ImportError as e:
            raise UserError(
                f"model '{cfg.name}' needs vLLM ({e.name} is not installed): `make vllm`, then run "
                "hydra-eval from .vllm-venv (or pip install 'hydra-eval[vllm]')"
            ) from None
        weights, tokenizer = model_folder(cfg, self.env.cache_dir)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(
                tokenizer, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            )
        except OSError as e:
            raise UserError(f"cannot load the tokenizer of '{cfg.name}' from '{tokenizer}': {e}") from None
        self._llm = LLM(
            model=weights,
            tokenizer=tokenizer,
            revision=cfg.revision if not cfg.gguf_file else None,
            trust_remote_code=cfg.trust_remote_code,
            dtype=cfg.dtype.value,
            max_model_len=cfg.max_seq_len,
            tensor_parallel_size=max(1, cfg.num_gpus),
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_num_seqs=cfg.max_num_seqs,
            enforce_eager=cfg.enforce_eager,
            seed=cfg.seed,
            **cfg.engine_kwargs,
        )
        self._load_s = time.perf_counter() - t0
        log.info("model %s: vLLM engine started in %.1fs", cfg.name, self._load_s)

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._load()
        return self._llm

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=add_special_tokens).input_ids)

    def _token_request(self, request: LoglikelihoodRequest, convention: Convention) -> ScoreRequest:
        return token_request(request, convention, self._encode, self._tokenizer)

    def loglikelihood(
        self, groups: Sequence[Sequence[LoglikelihoodRequest]], convention: Convention
    ) -> list[list[LoglikelihoodResponse]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self.llm
        whole = [self._token_request(r, convention) for group in groups for r in group]
        flat = [truncate(r, self.cfg.max_seq_len) for r in whole]  # the first tokens of a longer text go
        # one new token each (vLLM generates at least one); prompt_logprobs=0: the prompt's own tokens only
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = llm.generate(
            [TokensPrompt(prompt_token_ids=list(r.tokens)) for r in flat], params, use_tqdm=False
        )
        responses = []
        scored: list[float] = []
        for req, out, full in zip(flat, outputs, whole, strict=True):
            total, greedy = 0.0, True
            for position in range(req.score_from, len(req.tokens)):
                entry = out.prompt_logprobs[position][req.tokens[position]]
                total += entry.logprob
                greedy = greedy and entry.rank == 1
                scored.append(entry.logprob)
            self._tokens += len(req.tokens)
            n_scored, cut = len(req.tokens) - req.score_from, len(full.tokens) - len(req.tokens)
            responses.append(LoglikelihoodResponse(total, len(req.tokens), n_scored, greedy, truncated=cut))
        check_scores(scored, len(self._tokenizer))
        out_groups, i = [], 0
        for group in groups:
            out_groups.append(responses[i : i + len(group)])
            i += len(group)
        return out_groups

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        return prompt_ids(request, self._encode, self._tokenizer)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        raise UserError(
            f"model {self.cfg.name}: rolling log-likelihood (lm-eval's perplexity tasks) is not done by vLLM "
            "yet: use an in-process model (e.g. model=smollm2_135m)"
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self.llm
        # the transformers backend's rule (local.fit_prompt): lm-eval's left cut of the prompt, or a generation
        # that stops at the window (vLLM would refuse a longer prompt)
        fitted = [fit_prompt(self._prompt_ids(r), r.max_new_tokens, self.cfg.max_seq_len) for r in requests]
        prompts = [f.ids for f in fitted]
        params = [
            SamplingParams(
                max_tokens=f.max_new,
                stop=list(r.stop) or None,
                temperature=r.temperature,
                top_p=r.top_p if r.temperature > 0 else 1.0,
                top_k=r.top_k if r.temperature > 0 else 0,
                seed=r.seed if r.temperature > 0 else None,
                skip_special_tokens=True,
            )
            for r, f in zip(requests, fitted, strict=True)
        ]
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        responses = []
        for (prompt, cut, _), out in zip(fitted, outputs, strict=True):
            completion = out.outputs[0]
            reason = finish_reason(completion.finish_reason, completion.stop_reason)
            # vLLM keeps the end-of-sequence token in token_ids; the transformers backend does not count it
            n_new = len(completion.token_ids) - (reason == "eos" and len(completion.token_ids) > 0)
            self._tokens += len(prompt) + n_new
            responses.append(GenerationResponse(completion.text, reason, len(prompt), n_new, truncated=cut))
        return responses

    def close(self) -> None:
        """Stops the engine's processes now (a sweep in one process starts one engine per job)."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()  # the in-process engine's executor and workers
            self._llm = None
            import gc

            gc.collect()

    def count_tokens(self, texts: Sequence[str], special: bool = False) -> list[int] | None:
        if self._tokenizer is None:
            self._load()
        return [len(self._encode(t, special)) if t or special else 0 for t in texts]


def check(cfg: VllmModelConfig) -> None:
    """vLLM importable here, and the weights where the config says: one line before anything loads."""
    import importlib.util
    import sys

    from hydra_eval.backends.hf import check_weights

    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            f"model '{cfg.name}' needs vLLM, which this Python ({sys.executable}) does not have: `make vllm` "
            "builds .vllm-venv, then run hydra-eval from there (.vllm-venv/bin/hydra-eval ...)"
        )
    check_weights(cfg.name, cfg.path, cfg.tokenizer_path, cfg.gguf_file)
    if cfg.gguf_file and not (Path(cfg.path) / cfg.gguf_file).is_file():
        raise UserError(f"model '{cfg.name}': GGUF file '{cfg.gguf_file}' not found in '{cfg.path}'")


def build(cfg: VllmModelConfig, env: BackendEnv) -> VllmBackend:
    check(cfg)
    return VllmBackend(cfg, env)


def serve_main(argv: Sequence[str] | None = None) -> None:
    """`python -m hydra_eval.backends.vllm --path DIR [--gguf-file F] [--cache-dir C] -- SERVER ARGS`: vLLM's
    OpenAI server over the folder this backend would load (a GGUF file is de-quantized into the cache
    first: vLLM reads no GGUF), exec'd in place so a managed server's pid stays the server's."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m hydra_eval.backends.vllm", description=serve_main.__doc__)
    ap.add_argument("--path", required=True)
    ap.add_argument("--gguf-file")
    ap.add_argument("--dtype", default="float32", choices=[d.value for d in DType])
    ap.add_argument("--cache-dir", default=os.environ.get("HYDRA_EVAL_CACHE_DIR", "outputs/.cache"))
    ap.add_argument("server_args", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cfg = VllmModelConfig(name="served", path=args.path, gguf_file=args.gguf_file, dtype=DType(args.dtype))
    folder, tokenizer = model_folder(cfg, args.cache_dir)
    rest = [a for a in args.server_args if a != "--"]
    # the server module, not the `vllm serve` command: that asks for the version of a distribution named
    # "vllm", and the CPU build's is "vllm-cpu"
    server = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder]
    os.execv(sys.executable, [*server, "--tokenizer", tokenizer, "--dtype", args.dtype, *rest])


if __name__ == "__main__":
    serve_main()
