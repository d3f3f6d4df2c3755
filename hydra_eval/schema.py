"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` extend these, so a mistyped field, a wrong type or a value outside a closed set
(an Enum field) fails when Hydra composes the config, naming the allowed values, before anything heavy is
imported. Each backend has its own model schema: a transformers model has no `api` block, an endpoint no
`dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# Closed sets. Member names are the values users write (`convention: lmeval`), so they never change.


class DatasetMode(Enum):
    ppl = "ppl"  # score candidates by log-likelihood
    gen = "gen"  # generate, then extract an answer
    lmeval = "lmeval"  # lm-eval's own tasks by name: its requests, answered here, scored by lm-eval


class Convention(Enum):
    opencompass = "opencompass"  # mean NLL over the whole text (question included), lowest wins -> accuracy
    lmeval = "lmeval"  # log-likelihood of the continuation only -> acc and acc_norm


class PplTask(Enum):
    multiple_choice = "multiple_choice"  # the best-scoring candidate is the answer
    loglikelihood = "loglikelihood"  # one continuation: acc = it is the greedy one; perplexity
    auto = "auto"  # loglikelihood when every row has one candidate, else multiple_choice (dataset=custom)


class Metric(Enum):
    accuracy = "accuracy"
    accuracy_strict = "accuracy_strict"
    acc = "acc"
    acc_norm = "acc_norm"
    perplexity = "perplexity"
    pass_at_1 = "pass@1"  # code: the program passes its tests
    prompt_level_strict_acc = "prompt_level_strict_acc"  # IFEval (lm-eval's names)
    inst_level_strict_acc = "inst_level_strict_acc"
    prompt_level_loose_acc = "prompt_level_loose_acc"
    inst_level_loose_acc = "inst_level_loose_acc"


class Extractor(Enum):
    first_letter = "first_letter"  # first option letter that stands alone in the output
    edit_distance = "edit_distance"  # OpenCompass's EDAccEvaluator: the nearest option by Levenshtein distance
    exact_match = "exact_match"  # the output's first line, normalised, equals an accepted answer
    gsm8k = "gsm8k"  # lm-eval gsm8k: flexible (last number) and strict ("The answer is N.")
    auto = "auto"  # exact_match for rows with accepted answers, first_letter for the others
    execute = "execute"  # run the completion against the row's tests in the sandbox (pass@k)
    ifeval = "ifeval"  # IFEval's instruction checkers: prompt- and instruction-level, strict and loose
    regex = "regex"  # lm-eval's regex filter (gen.answer_regex, first match) then exact match with the answer
    math = "math"  # the final answer (last \boxed{}) equivalent to an accepted one, by math-verify


class JudgeMode(Enum):
    none = "none"  # no judge model: the extractor scores the output
    single = "single"  # a score from a rubric (MT-Bench: 1-10)
    pairwise = "pairwise"  # the answer against a baseline's, judged in both orders (Arena-Hard, AlpacaEval)
    reference = "reference"  # the answer is equivalent to the gold answer: CORRECT / INCORRECT


class VerdictFormat(Enum):
    rating = "rating"  # "[[7]]" (MT-Bench; "[7]" as its fallback)
    arena = "arena"  # "[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]" (Arena-Hard)
    abc = "abc"  # "[[A]]", "[[B]]", "[[C]]" for a tie (MT-Bench's pairwise prompts)
    correct = "correct"  # "[[CORRECT]]" / "[[INCORRECT]]" (reference mode)


class Sampler(Enum):
    first_n = "first_n"  # lm-eval's for MMLU's dev split
    random = "random"  # seeded per question


class Endpoint(Enum):
    auto = "auto"  # chat where a local model would use its chat template, else completions
    chat = "chat"  # /chat/completions: the server applies its chat template
    completions = "completions"  # /completions with the raw prompt


class DType(Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float64 = "float64"


class VizSource(Enum):
    files = "files"  # results/ under the job or sweep folder
    mlflow = "mlflow"  # every finished run in MLflow


@dataclass
class ServeConfig:
    """A server the job starts itself and stops at its end (hydra_eval/serve.py); an empty command: the
    server runs elsewhere, at api.base_url."""

    command: list[str] = field(default_factory=list)  # {host} and {port} are filled in
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    url_path: str = "/v1"  # base_url = http://host:port + this
    env: dict[str, str] = field(default_factory=dict)  # added to the job's environment
    ready_timeout_s: float = 900.0  # until GET <base_url>/models answers 200
    stop_timeout_s: float = 30.0  # after SIGTERM, before SIGKILL


@dataclass
class ApiConfig:
    """An OpenAI-compatible endpoint: vLLM, TGI, llama.cpp's server, a hosted API."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None  # the served model's name; null = model.name
    api_key_env: str | None = None  # the environment variable holding the key (the key itself is never stored)
    # ppl mode always uses /completions with echo + logprobs, whatever the endpoint.
    endpoint: Endpoint = Endpoint.auto
    timeout_s: float = 120.0  # per request
    max_concurrency: int = 4  # requests in flight at once
    requests_per_s: float | None = None  # null = no limit
    retries: int = 6  # on 429, 5xx, timeouts and connection errors, with exponential backoff
    backoff_s: float = 1.0  # first wait; doubles each retry (a Retry-After header wins when longer)
    backoff_max_s: float = 30.0
    # Before scoring, check on a counting sequence that the echoed prompt logprobs are aligned with their
    # tokens (llama-cpp-python returns them shifted for models without a BOS token; docs/api-models.md)
    check_logprobs: bool = True
    serve: ServeConfig = field(default_factory=ServeConfig)


@dataclass
class ReasoningConfig:
    """A reasoning model's thinking, split off its output before the answer is read (hydra_eval/reasoning.py)."""

    strip: bool = False  # score only what follows `end`; an output that opens `start` and never closes it
    #   scores as an empty answer (and is counted)
    start: str = "<think>"
    end: str = "</think>"


@dataclass
class ModelConfig:
    """What every backend has. `_target_` names the backend's factory (hydra_eval/backends/*.py: build)."""

    _target_: str = MISSING
    name: str = MISSING
    max_out_len: int = 100  # new tokens per generation (a dataset's gen.max_out_len wins)
    chat_template: bool = False  # gen-mode prompts go as chat messages (the backend applies the template)
    system_prompt: str | None = None  # chat: the system message (a dataset's gen.system_prompt wins)
    # extra arguments for the chat template (e.g. enable_thinking: false for templates that read it)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)
    seed: int = 0
    # What one job of this model asks a launcher for (hydra_plugins/hydra_eval_plugins/launchers.py reads these)
    num_gpus: int = 0
    num_cpus: int = 2
    mem_gb: int = 16


@dataclass
class LocalModelConfig(ModelConfig):
    """A model that runs in this process (torch)."""

    dtype: DType = DType.float32
    device: str = "auto"  # auto = cuda when present, else cpu; or cpu, cuda, cuda:1, ...
    max_seq_len: int = 2048
    batch_size: int = 16  # rows generated at once
    token_budget: int = 4096  # padded tokens per scoring forward (rows are questions, longest first), and
    #   prompt tokens per prefill forward of generation
    kv_cache_gb: float = 4.0  # generation's KV cache (rows' own tokens; shared prompt prefixes come on top)
    num_threads: int | None = None  # torch intra-op threads; null = all cores


@dataclass
class PplConfig:
    convention: Convention = Convention.opencompass
    context: str = MISSING
    target_delimiter: str = " "
    # The candidates, one of:
    choices: list[str] = field(default_factory=list)  # templates, one per candidate
    choices_field: str | None = None  # a list field of the sample: its items are the candidates (ARC: 3-5)
    contexts_field: str | None = None  # partial scoring (winogrande): one context per candidate, and the
    #   rendered `context` is the continuation they share, the only part scored
    task: PplTask = PplTask.multiple_choice  # loglikelihood: one continuation (lambada)
    metrics: list[Metric] | None = None  # which of acc, acc_norm, perplexity to report (null: the task's default)


@dataclass
class FewshotConfig:
    k: int = 0  # examples put before each question (0: zero-shot)
    files: dict[str, str] = field(default_factory=dict)  # the split they come from (read like `files`);
    #   empty: the evaluated split itself, never the question itself
    split: str | None = None  # the hub split they come from, when the data comes from the hub
    sampler: Sampler = Sampler.first_n
    seed: int = 1234
    group_by: str | None = None  # a field the examples share with the question (MMLU: subject)
    delimiter: str = "\n\n"  # between examples, and before the question
    suffix: str = ""  # after the examples (also with none), before the question (OpenCompass's end of examples)
    drop_to_fit: bool = False  # drop the last example while a text has more tokens than model.max_seq_len
    #   (OpenCompass's PPLInferencer; candidates in order, each keeping what the one before dropped)


@dataclass
class GenConfig:
    template: str = MISSING
    stop: list[str] = field(default_factory=list)
    max_out_len: int | None = None  # null = the model's max_out_len
    extractor: Extractor = Extractor.first_letter  # how an answer is read (hydra_eval/judges.py)
    option_fields: list[str] = field(default_factory=list)  # fields holding option texts (edit distance)
    shot_answer: str = ""  # a few-shot example = template + this (e.g. " {answer}")
    answers_field: str | None = None  # a list field of accepted answers (extractor exact_match, regex, math)
    answer_regex: str | None = None  # extractor regex: the answer is its first match (its first non-empty group)
    ignore_case: bool = False  # extractor regex: compare case-folded (lm-eval's exact_match options)
    ignore_punctuation: bool = False
    chat_template: bool | None = None  # null: the model's chat_template setting; false for base-style prompts
    keep_fields: list[str] = field(default_factory=list)  # sample fields copied into predictions (tests, ...)
    system_prompt: str | None = None  # chat: the system message (null: the model's system_prompt)
    fewshot_as_multiturn: bool = True  # chat: each example a user turn and an assistant turn (lm-eval's
    #   --fewshot_as_multiturn, its default with a chat template); false: inlined in the one user turn
    # Sampling: one sample is greedy; num_samples = k > 1 samples each row k times at `temperature`, each
    # seeded by (model.seed, row id, sample number), and reports avg@k, pass@k and maj@k
    num_samples: int = 1
    temperature: float = 0.8  # used only when num_samples > 1
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    pass_at_k: list[int] = field(default_factory=lambda: [1])  # extra k of pass@k (each not above num_samples)
    length_warn_share: float = 0.05  # warn when more generations than this share hit max_out_len
    turns_field: str | None = None  # a list field of user turns (MT-Bench): each turn is generated after the
    #   model's own answers to the turns before it; `template` renders each turn (`{turn}`)


@dataclass
class JudgePrompt:
    """One judge prompt: a system message and a user message, `{name}` fields filled from the judged row
    (question, answer, answer_a, answer_b, question_1, answer_1, ref_answer_1, gold, ...)."""

    system: str = ""
    template: str = MISSING


@dataclass
class JudgeSettings:
    """How a dataset's outputs are judged by the judge model (judge=<model config>); hydra_eval/judging/."""

    mode: JudgeMode = JudgeMode.none
    verdict: VerdictFormat | None = None  # null: the mode's own (single: rating, pairwise: arena, reference:
    #   correct)
    prompt: JudgePrompt | None = None  # null: the mode's built-in prompt (hydra_eval/judging/prompts.py)
    prompt_reference: JudgePrompt | None = None  # rows with a reference answer (MT-Bench's math/reasoning/coding)
    prompt_multi_turn: JudgePrompt | None = None  # turns after the first: the whole conversation, judged on the
    prompt_multi_turn_reference: JudgePrompt | None = None  # last answer
    turns: list[int] = field(default_factory=list)  # multi-turn datasets: the turns judged (1-based; empty: all)
    reference_field: str | None = None  # a list field: a reference answer per turn (put in the judge prompt)
    # pairwise: the other answer is a baseline model's (its predictions in baseline_dir; in a sweep, the job of
    # the model named `baseline`), or the dataset's own reference output (baseline_field)
    baseline: str | None = None
    baseline_dir: str | None = None  # a job or sweep folder holding predictions/<baseline>/<dataset>.jsonl
    baseline_field: str | None = None  # a sample field holding the baseline answer (AlpacaEval: its reference)
    max_new_tokens: int = 1024  # of each judge reply
    temperature: float = 0.0  # 0: greedy, as MT-Bench and Arena-Hard judge
    strong_weight: int = 3  # pairwise: a "much better" verdict counts this many games (Arena-Hard's weight)
    bootstrap: int = 1000  # resamples of the questions for the 95% confidence interval
    seed: int = 0


@dataclass
class LmevalConfig:
    """dataset=lmeval: tasks and groups of lm-eval 0.4.13's library (the `lmeval` extra); hydra_eval/lmeval.py."""

    tasks: list[str] = field(default_factory=list)  # lm-eval task or group names
    include_path: list[str] = field(
        default_factory=list
    )  # folders of your own task YAMLs (lm_eval --include_path)
    num_fewshot: int | None = None  # null: each task's own
    allow_hub: bool = False  # false: the HF hub is off (a task whose data is not local fails at once)
    local: list[str] = field(default_factory=list)  # sets copied from paths.data_dir into the job's folder for
    #   lm-eval's tasks to read (hydra_eval/data/lmeval_local.py: nq_open, truthfulqa, ceval, cmmlu, ...)
    hub_dirs: list[str] = field(default_factory=list)  # "<hub dataset id>=<folder>": a task's hub dataset read
    #   from a local folder in the hub's layout (a clone of the dataset repo) instead of the hub


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
    program: str = "hydra_eval.data.humaneval.program_of"  # dotted path: (prediction, completion) -> the program


@dataclass
class DatasetConfig:
    name: str = MISSING
    mode: DatasetMode = MISSING
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
    group_average: bool = False  # and each metric's plain mean over those groups, '<metric>/naive_average'
    #   (OpenCompass's ceval / cmmlu totals: subjects weigh the same whatever their size)
    subsets: list[str] = field(default_factory=list)  # only rows whose group_metrics_by field is one of these
    #   (BBH tasks, MMLU subjects, MMLU-Pro categories); empty: every row
    ppl: PplConfig | None = None
    gen: GenConfig | None = None
    judge: JudgeSettings = field(default_factory=JudgeSettings)  # scored by a judge model (mode != none)
    lmeval: LmevalConfig | None = None  # mode=lmeval: lm-eval's tasks


# The dataset version (hydra_eval/prompts.py: version; also the prompt part of the predictions cache's key)
# hashes exactly the fields below, whatever their values, defaults included: what decides a dataset's prompts
# and how its outputs are scored. Every field of these four classes is in VERSIONED or in UNVERSIONED, and
# tests/test_versions.py pins the version of every shipped dataset: a new field is a decision, and a version
# changes only by an edit of this table or of the dataset's YAML.
VERSIONED: dict[type, tuple[str, ...]] = {
    DatasetConfig: ("mode", "description", "fewshot", "ppl", "gen"),  # the last three field by field, below
    FewshotConfig: ("k", "files", "split", "sampler", "seed", "group_by", "delimiter", "suffix", "drop_to_fit"),
    PplConfig: (
        "convention",
        "context",
        "target_delimiter",
        "choices",
        "choices_field",
        "contexts_field",
        "task",
        "metrics",
    ),
    GenConfig: (
        "template",
        "stop",
        "max_out_len",
        "extractor",
        "option_fields",
        "shot_answer",
        "answers_field",
        "answer_regex",
        "ignore_case",
        "ignore_punctuation",
        "chat_template",
        "keep_fields",
        "system_prompt",
        "fewshot_as_multiturn",
        "num_samples",
        "temperature",
        "top_p",
        "top_k",
        "pass_at_k",
        "turns_field",
    ),
}
UNVERSIONED: dict[type, tuple[str, ...]] = {
    DatasetConfig: (
        "name",  # beside the version wherever it is shown; the cache's key names it itself
        # where the rows come from and which are taken: rows are keyed by their content (cache.row_key)
        "local_dir",
        "files",
        "read_local",
        "record_to_sample",
        "path",
        "fewshot_path",
        "hf_path",
        "hf_name",
        "split",
        "limit",
        "stride",
        "subsets",
        "labels",  # read by no prompt and no scorer
        "execution",  # how model-written code is run (sandbox limits), not what is asked or accepted
        "group_metrics_by",
        "group_average",  # more breakdowns of the same per-row scores
        "judge",  # the judge stage has its own version (hydra_eval/judging/prompts.py: version)
        "lmeval",  # mode=lmeval has its own version (hydra_eval/lmeval.py: version)
    ),
    FewshotConfig: (),
    PplConfig: (),
    GenConfig: ("length_warn_share",),  # a warning's threshold: changes no prompt and no score
}
VERSION_SECTIONS: dict[str, type] = {"fewshot": FewshotConfig, "ppl": PplConfig, "gen": GenConfig}


@dataclass
class ModeConfig:
    name: str = MISSING
    infer: bool = True
    judge: bool = False  # the judge stage, for datasets with a judge (dataset.judge.mode != none)
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
    source: VizSource = VizSource.files
    models: list[str] = field(default_factory=list)  # filters for source=mlflow (empty = all)
    datasets: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    ci: bool = True  # each value with its 95% CI in the summary table (64.15 ± 2.19)
    baseline: str | None = None  # compare each model with this one (default: every pair; marks vs the first)
    seed: int = 20261205  # the bootstrap's and permutation test's seed: a rerun prints the same numbers
    report: bool = True  # summary/report.html beside the table


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
class SuiteConfig:
    name: str = MISSING  # conf/suite/<name>.yaml; its datasets are the sweeper's params (hydra.sweeper.params)


@dataclass
class Config:
    model: ModelConfig = MISSING  # one of the backends' schemas (hydra_eval/backends/*.py)
    judge: ModelConfig | None = None  # judge=<name> (conf/judge/): the model that judges, any backend
    dataset: DatasetConfig = MISSING
    mode: ModeConfig = MISSING
    paths: PathsConfig = MISSING
    tracking: TrackingConfig = MISSING
    viz: VizConfig = field(default_factory=VizConfig)
    output_dir: str = MISSING
    progress: bool = True
    # Scale-out and resume (read by hydra_plugins/hydra_eval_plugins/sweeper.py and the infer stage)
    shard: ShardConfig = field(default_factory=ShardConfig)
    max_partition_size: int | None = None  # a dataset with more rows becomes shards, one job each
    retry: int = 2  # a failed job is relaunched this many times before it is reported failed
    dry_run: bool = False  # print the job plan, run nothing
    checkpoint_every: int = 256  # samples per saved batch of predictions (a killed job resumes from there)
    resume: bool = True  # take rows computed before under the same content key (paths.cache_dir)
    reuse: str | None = None  # an earlier run/sweep folder (or "latest") whose matching predictions are reused
    suite: SuiteConfig | None = None  # suite=<name> (conf/suite/): a named list of datasets for a sweep


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    from hydra_eval.backends import schemas  # each backend module brings its own model schema

    for name, node in schemas().items():
        cs.store(group="model", name=f"base_{name}", node=node)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="mode", name="base_mode", node=ModeConfig)
    cs.store(group="paths", name="base_paths", node=PathsConfig)
    cs.store(group="tracking", name="base_tracking", node=TrackingConfig)
