"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` extend these, so a mistyped field or a wrong type fails when Hydra composes
the config, before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ApiConfig:
    """An OpenAI-compatible endpoint (model.kind=openai): vLLM, TGI, llama.cpp's server, a hosted API."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None  # the served model's name; null = model.name
    api_key_env: str | None = None  # the environment variable holding the key (the key itself is never stored)
    # chat: /chat/completions (the server applies its chat template); completions: /completions with the raw
    # prompt; auto: chat where a local model would use its chat template, else completions. ppl mode always
    # uses /completions with echo + logprobs.
    endpoint: str = "auto"
    timeout_s: float = 120.0  # per request
    max_concurrency: int = 4  # requests in flight at once
    requests_per_s: float | None = None  # null = no limit
    retries: int = 6  # on 429, 5xx, timeouts and connection errors, with exponential backoff
    backoff_s: float = 1.0  # first wait; doubles each retry (a Retry-After header wins when longer)
    backoff_max_s: float = 30.0
    # Before scoring, check on a counting sequence that the echoed prompt logprobs are aligned with their
    # tokens (llama-cpp-python returns them shifted for models without a BOS token; docs/api-models.md)
    check_logprobs: bool = True


@dataclass
class ModelConfig:
    name: str = MISSING
    # "hf": transformers AutoModelForCausalLM (hub id or local dir, optionally a GGUF file inside it);
    # "tiny": a small random Llama built in-process from `tiny` (tests);
    # "openai": an OpenAI-compatible server, configured by `api`.
    kind: str = "hf"
    path: str = MISSING
    tokenizer_path: str | None = None
    gguf_file: str | None = None
    cache_gguf: bool = True  # keep the de-quantized weights under paths.cache_dir (loads in ~1 s, not ~20 s)
    revision: str | None = None
    dtype: str = "float32"
    device: str = "auto"  # auto = cuda when present, else cpu
    max_seq_len: int = 2048
    batch_size: int = 16  # rows per generation batch
    token_budget: int = 4096  # padded tokens per scoring forward (rows are questions, longest first)
    max_out_len: int = 100
    chat_template: bool = False  # wrap gen-mode prompts in the tokenizer's chat template
    trust_remote_code: bool = False
    seed: int = 0
    num_threads: int | None = None  # torch intra-op threads; null = all cores
    # What one job of this model asks a launcher for (conf/hydra/launcher/*.yaml read these)
    num_gpus: int = 0
    num_cpus: int = 2
    mem_gb: int = 16
    tiny: dict[str, Any] = field(default_factory=dict)
    api: ApiConfig = field(default_factory=ApiConfig)


@dataclass
class PplConfig:
    # opencompass: mean NLL over the whole text (question included), lowest wins -> "accuracy".
    # lmeval: log-likelihood of the continuation only -> "acc" and "acc_norm".
    convention: str = "opencompass"
    context: str = MISSING
    target_delimiter: str = " "
    # The candidates, one of:
    choices: list[str] = field(default_factory=list)  # templates, one per candidate
    choices_field: str | None = None  # a list field of the sample: its items are the candidates (ARC: 3-5)
    contexts_field: str | None = None  # partial scoring (winogrande): one context per candidate, and the
    #   rendered `context` is the continuation they share, the only part scored
    # multiple_choice: the best-scoring candidate is the answer; loglikelihood: one continuation (lambada),
    # acc = it is the greedy continuation, perplexity = exp(-mean log-likelihood)
    task: str = "multiple_choice"
    metrics: list[str] | None = None  # which of acc, acc_norm, perplexity to report (null: the task's default)


@dataclass
class FewshotConfig:
    k: int = 0  # examples put before each question (0: zero-shot)
    files: dict[str, str] = field(default_factory=dict)  # the split they come from (read like `files`);
    #   empty: the evaluated split itself, never the question itself
    split: str | None = None  # the hub split they come from, when the data comes from the hub
    sampler: str = "first_n"  # first_n (lm-eval's for MMLU's dev split) | random (seeded per question)
    seed: int = 1234
    group_by: str | None = None  # a field the examples share with the question (MMLU: subject)
    delimiter: str = "\n\n"  # between examples, and before the question


@dataclass
class GenConfig:
    template: str = MISSING
    stop: list[str] = field(default_factory=list)
    max_out_len: int | None = None  # null = the model's max_out_len
    # first_letter: first option letter found in the output; edit_distance: OpenCompass's EDAccEvaluator;
    # exact_match: the output's first line, normalised, equals an accepted answer; auto: exact_match for rows
    # with accepted answers, first_letter for the others.
    extractor: str = "first_letter"
    option_fields: list[str] = field(default_factory=list)  # fields holding option texts (edit distance)
    shot_answer: str = ""  # a few-shot example = template + this (e.g. " {answer}")
    answers_field: str | None = None  # a list field of accepted answers (extractor exact_match)
    chat_template: bool | None = None  # null: the model's chat_template setting; false for base-style prompts
    keep_fields: list[str] = field(default_factory=list)  # sample fields copied into predictions (tests, ...)
    num_samples: int = 1  # generations per row; > 1 samples at `temperature` (pass@k)
    temperature: float = 0.8  # used only when num_samples > 1 (one sample is greedy)
    pass_at_k: list[int] = field(default_factory=lambda: [1])  # extractor execute: the k of pass@k


@dataclass
class ExecutionConfig:
    """Running model-written code (HumanEval). Off unless allowed; see hydra_eval/sandbox.py."""

    allow: bool = False
    timeout_s: float = 10.0  # wall clock per program
    memory_mb: int = 1024  # the whole program, all its processes (a cgroup; else memory_mb / max_processes each)
    max_processes: int = 32  # per program (a cgroup, or as root an unused uid per program)
    max_file_mb: int = 16  # one file it writes
    max_dir_mb: int = 64  # everything it writes (with bubblewrap its folder is a tmpfs of this size)
    workers: int = 2  # programs at once
    require_isolation: bool = True  # refuse to run without bubblewrap (filesystem, network, PID isolation)


@dataclass
class DatasetConfig:
    name: str = MISSING
    mode: str = MISSING  # ppl | gen
    local_dir: str = MISSING
    files: dict[str, str] = field(default_factory=dict)
    read_local: str = MISSING  # dotted path: (dir, files) -> list of raw rows
    record_to_sample: str = MISSING  # dotted path: (row, index) -> Sample
    path: str | None = None  # one file of rows instead of local_dir/files (your own copy, or dataset=custom)
    fewshot_path: str | None = None  # one file of few-shot examples instead of fewshot.files
    hf_path: str | None = None
    hf_name: str | None = None
    split: str = "validation"
    limit: int | None = None  # first N rows only
    stride: int = 1  # every k-th row only (before limit): a systematic sample of the whole split
    labels: list[str] = field(default_factory=list)  # option letters for gen-mode multiple choice
    description: str | None = None  # template put before everything (lm-eval's task description)
    fewshot: FewshotConfig = field(default_factory=FewshotConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    group_metrics_by: str | None = None  # also report each metric per value of this field (MMLU: subject)
    ppl: PplConfig | None = None
    gen: GenConfig | None = None


@dataclass
class ModeConfig:
    name: str = MISSING
    infer: bool = True
    eval: bool = True
    viz: bool = True
    sync: bool = False  # upload finished jobs under paths.output_root that have no MLflow run yet


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = MISSING  # sqlite:///<abs path> (default, zero setup) or http://host:port (an mlflow server)
    experiment: str = "hydra-eval"
    retries: int = 1  # HTTP retries before a job gives up and marks itself unsynced
    timeout_s: int = 10


@dataclass
class VizConfig:
    source: str = "files"  # files: results/ under the job or sweep folder; mlflow: every finished run in MLflow
    models: list[str] = field(default_factory=list)  # filters for source=mlflow (empty = all)
    datasets: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    output_root: str = MISSING
    cache_dir: str = MISSING


@dataclass
class ShardConfig:
    index: int = 0
    count: int = 1  # 1 = the whole dataset; the sweeper sets these when max_partition_size splits a dataset


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    mode: ModeConfig = MISSING
    paths: PathsConfig = MISSING
    tracking: TrackingConfig = MISSING
    viz: VizConfig = field(default_factory=VizConfig)
    output_dir: str = MISSING
    progress: bool = True
    # Scale-out and resume (read by hydra_eval.sweeper and the infer stage)
    shard: ShardConfig = field(default_factory=ShardConfig)
    max_partition_size: int | None = None  # a dataset with more rows becomes shards, one job each
    retry: int = 2  # a failed job is relaunched this many times before it is reported failed
    dry_run: bool = False  # print the job plan, run nothing
    checkpoint_every: int = 256  # samples per saved batch of predictions (a killed job resumes from there)
    resume: bool = True  # take rows computed before under the same content key (paths.cache_dir)
    reuse: str | None = None  # an earlier run/sweep folder (or "latest") whose matching predictions are reused
    suite: Any = None  # suite=<name> (conf/suite/): a named list of datasets that a sweep expands


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="mode", name="base_mode", node=ModeConfig)
    cs.store(group="paths", name="base_paths", node=PathsConfig)
    cs.store(group="tracking", name="base_tracking", node=TrackingConfig)
