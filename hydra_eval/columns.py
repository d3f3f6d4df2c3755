"""The names a sweep's jobs are shown under: a column per model, a row per dataset (the summary table, its CSV,
comparison.json, report.html, the MLflow runs). Jobs of one model on one dataset that differ in their overrides
are told apart by those overrides: a model setting names the column (`fake[seed=1]`), a dataset setting the row
(`piqa[limit=10]`). Two jobs never fill one cell; where names cannot tell them apart the sweep is refused."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra_eval.errors import UserError

VALUE_CAP = 60  # characters of a value shown in a name (a name is also a folder name)


def settings(overrides: Sequence[str]) -> dict[str, str]:
    """key -> value as given (`model.seed=1` -> {"model.seed": "1"}); `+`/`~` prefixes dropped."""
    out = {}
    for o in overrides:
        key, _, value = o.partition("=")
        out[key.lstrip("+~")] = value
    return out


def is_dataset_key(key: str) -> bool:
    return key == "dataset" or key.startswith("dataset.")


def _differing(jobs: list[dict[str, str]], names: list[str], dataset_side: bool) -> dict[str, list[str]]:
    """name -> the keys (of its side) whose values differ among the jobs of that name, in command-line order."""
    out: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        mine = [s for s, n in zip(jobs, names, strict=True) if n == name]
        keys = dict.fromkeys(k for s in mine for k in s if is_dataset_key(k) == dataset_side)
        out[name] = [k for k in keys if len({s.get(k) for s in mine}) > 1]
    return out


def _shown(value: str) -> str:
    """A value as a name shows it: a path by its last part (no `/` in a folder name), a long one cut."""
    if "/" in value:
        value = value.rstrip("/'\"").rsplit("/", 1)[-1]
    return value if len(value) <= VALUE_CAP else value[: VALUE_CAP - 1] + "…"


def _name(name: str, job: dict[str, str], keys: list[str], prefix: str) -> str:
    if not keys:
        return name
    parts = [f"{k.removeprefix(prefix)}={_shown(job.get(k, ''))}" for k in keys]
    return f"{name}[{','.join(parts)}]"


def names(jobs: Sequence[tuple[Sequence[str], str, str]]) -> list[tuple[str, str]]:
    """Each job's (model, dataset) names, from its overrides and its config's model and dataset names."""
    parsed = [settings(overrides) for overrides, _, _ in jobs]
    models, datasets = [m for _, m, _ in jobs], [d for _, _, d in jobs]
    model_keys = _differing(parsed, models, dataset_side=False)
    dataset_keys = _differing(parsed, datasets, dataset_side=True)
    out = [
        (_name(m, s, model_keys[m], "model."), _name(d, s, dataset_keys[d], "dataset."))
        for s, m, d in zip(parsed, models, datasets, strict=True)
    ]
    seen: dict[tuple[str, str], int] = {}
    for i, cell in enumerate(out):
        if cell in seen:
            first = jobs[seen[cell]][0]
            raise UserError(
                f"jobs {seen[cell]} and {i} would fill one cell of the summary table ({cell[0]} on {cell[1]}): "
                f"`{' '.join(first)}` and `{' '.join(jobs[i][0])}`; sweep each setting once, or give each job "
                "a name of its own (model.name=... or dataset.name=...)"
            )
        seen[cell] = i
    return out


def override(key: str, value: str) -> str:
    """`key='value'`, quoted so that the config reads the value back as it is (brackets, `=`, quotes, `${`):
    Hydra unescapes backslashes before a quote or the end, OmegaConf an escaped `\\${`."""
    escaped = re.sub(r"\\+(?='|$)", lambda m: m.group(0) * 2, value).replace("'", "\\'").replace("${", "\\${")
    return f"{key}='{escaped}'"
