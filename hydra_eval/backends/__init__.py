"""Backends: the one seam between the pipeline and a model.

Each backend is one module here with a model schema (`SCHEMA`, a subclass of schema.ModelConfig whose
`_target_` names the module's `build`) and a `build(cfg, env) -> Backend`. A YAML under conf/model/ extends
`base_<module>`. Nothing else in the package names a backend: infer sees only the `Backend` Protocol.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hydra_eval.records import (
    Counters,
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from hydra_eval.schema import Convention, ModelConfig


@runtime_checkable
class Backend(Protocol):
    """What infer asks of a model. Every backend module's `build` returns a class with each of these methods,
    named and ordered as here (tests/test_backend_protocol.py)."""

    def loglikelihood(
        self, groups: Sequence[Sequence[LoglikelihoodRequest]], convention: Convention
    ) -> list[list[LoglikelihoodResponse]]:
        """Log-likelihood of every request; a group holds the candidates of one row (a backend may share
        their common prefix). The convention says how a pair becomes tokens: lm-eval's context/continuation
        split (the continuation's tokens are scored), or OpenCompass's whole text (every token after the
        first is scored)."""
        ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Total log-likelihood of each whole text (perplexity tasks), in windows of the model's length as
        lm-eval's loglikelihood_rolling computes it; a backend that cannot raises a UserError saying so."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """One response per request, in order."""
        ...

    def count_tokens(self, texts: Sequence[str], special: bool = False) -> list[int] | None:
        """Tokens of each text by the model's tokenizer (reasoning and answer lengths; with special=True the
        tokenizer's special tokens too, as a whole text is scored); None where the tokenizer is not here (a
        served model)."""
        ...

    def identity(self) -> dict[str, object]:
        """What decides this backend's outputs (weights, settings, endpoint): part of every cache key.
        Known without loading the model."""
        ...

    def counters(self) -> Counters:
        """Load time and tokens computed so far."""
        ...

    def close(self) -> None:
        """Release what the backend holds (an engine's processes, a server it started); infer calls it once
        when it ends, also when it fails."""
        ...


@dataclass(frozen=True, slots=True)
class BackendEnv:
    """What a backend may use from the job besides its own schema."""

    cache_dir: str  # paths.cache_dir (GGUF de-quantized weights)
    job_dir: str | None = None  # the job's folder (a started server's log)


def schemas() -> dict[str, type[ModelConfig]]:
    """module name -> its model schema, for every backend module in this package."""
    found: dict[str, type[ModelConfig]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        schema = getattr(module, "SCHEMA", None)
        if isinstance(schema, type) and issubclass(schema, ModelConfig):
            found[info.name] = schema
    return found


def check(cfg: ModelConfig) -> None:
    """The backend's own check of its config, where its module has one (`check(cfg)`: weights that are not
    where the config says, an engine this Python cannot import): one UserError before any data or model loads."""
    module = importlib.import_module(cfg._target_.rpartition(".")[0])
    own = getattr(module, "check", None)
    if own is not None:
        own(cfg)


def make(cfg: ModelConfig, env: BackendEnv) -> Backend:
    """The backend a model config names by `_target_` (the one place a config becomes a backend)."""
    from hydra.utils import get_method

    build = get_method(cfg._target_)
    backend: Backend = build(cfg, env)
    return backend
