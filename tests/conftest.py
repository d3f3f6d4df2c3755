from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from hydra_eval.config import setup

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HYDRA_EVAL_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()

setup()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def compose_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """Compose the real config tree as the CLI would, writing into a temp folder."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
            return compose(
                config_name="config",
                overrides=[
                    f"output_dir={tmp_path / 'out'}",
                    f"paths.data_dir={DATA_DIR}",
                    f"paths.cache_dir={cache_dir}",
                    f"paths.output_root={tmp_path}",
                    "tracking=none",
                    "progress=false",
                    *overrides,
                ],
            )

    return _compose
