"""Every backend conforms to the Backend Protocol (issue 30 step 5).

Discovery: the backends are the modules whose `build` a model config's `_target_` names, in a schema's
default (`backends.schemas()`) or in a YAML of conf/model/ or conf/judge/. The class each `build` returns (its
return annotation) must have every method of the `runtime_checkable` Protocol, with the same parameter names,
kinds and defaults. Nothing is loaded: vllm.py imports vLLM inside its functions only.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hydra_eval import backends
from hydra_eval.backends import Backend

CONF = Path(__file__).resolve().parents[1] / "hydra_eval" / "conf"


def targets() -> set[str]:
    """Every `_target_` a model config can name: the schemas' defaults and the YAMLs' own."""
    found = {schema._target_ for schema in backends.schemas().values()}
    for path in [*CONF.glob("model/*.yaml"), *CONF.glob("judge/*.yaml")]:
        target = OmegaConf.load(path).get("_target_")
        if target is not None:
            found.add(str(target))
    return found


def backend_class(target: str) -> type:
    """The class a factory returns, read from its return annotation."""
    module_name, _, attr = target.rpartition(".")
    module = importlib.import_module(module_name)
    build = getattr(module, attr)
    returned = typing.get_type_hints(build, vars(module))["return"]
    assert isinstance(returned, type), f"{target} returns {returned!r}, not a class"
    return returned


def protocol_methods() -> list[str]:
    return sorted(n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_"))


def _shape(method: object) -> list[tuple[str, object, bool]]:
    params = list(inspect.signature(method).parameters.values())  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default is not p.empty) for p in params]


def mismatches(cls: type) -> list[str]:
    """What `cls` lacks of the Protocol, one line per method (empty: it conforms)."""
    problems = []
    for name in protocol_methods():
        mine = getattr(cls, name, None)
        if not callable(mine):
            problems.append(f"{cls.__name__}.{name}: missing")
        elif _shape(mine) != _shape(getattr(Backend, name)):
            problems.append(f"{cls.__name__}.{name}{inspect.signature(mine)}: the Protocol has {name}"
                            f"{inspect.signature(getattr(Backend, name))}")  # fmt: skip
    if not problems and not isinstance(object.__new__(cls), Backend):
        problems.append(f"{cls.__name__}: not a Backend by isinstance")
    return problems


def test_the_protocol_has_its_seven_methods():
    assert protocol_methods() == [
        "close", "count_tokens", "counters", "generate", "identity", "loglikelihood", "loglikelihood_rolling",
    ]  # fmt: skip


def test_every_backend_module_is_named_by_a_target():
    named = {t.rpartition(".")[0].rpartition(".")[2] for t in targets()}
    assert named == set(backends.schemas()) == {"api", "fake", "hf", "tiny", "vllm"}


@pytest.mark.parametrize("target", sorted(targets()))
def test_backend_conforms_to_the_protocol(target):
    assert mismatches(backend_class(target)) == []


def test_a_backend_missing_a_method_or_with_another_signature_fails():
    class Partial:
        def loglikelihood(self, groups, convention): ...
        def loglikelihood_rolling(self, texts): ...
        def generate(self, requests): ...
        def count_tokens(self, texts): ...  # no `special`
        def identity(self): ...
        def counters(self): ...

    assert mismatches(Partial) == [
        "Partial.close: missing",
        "Partial.count_tokens(self, texts): the Protocol has count_tokens(self, texts: 'Sequence[str]', special: "
        "'bool' = False) -> 'list[int] | None'",
    ]
    assert not isinstance(Partial(), Backend)
