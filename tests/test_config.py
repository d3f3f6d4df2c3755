import itertools
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from hydra_eval.cli import config_error
from hydra_eval.config import typed
from hydra_eval.schema import DatasetMode
from tests.conftest import ROOT

MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml"))
MODES = sorted(p.stem for p in (ROOT / "conf" / "mode").glob("*.yaml"))
JUDGES = sorted(p.stem for p in (ROOT / "conf" / "judge").glob("*.yaml"))


def test_groups_are_not_empty():
    assert {"smollm2_135m", "llama7b", "tiny_llama"} <= set(MODELS)
    assert {"piqa", "siqa"} <= set(DATASETS)
    assert MODES == ["all", "eval", "infer", "judge", "sync", "viz"]
    assert {"smollm2_135m", "llamacpp_smollm2"} <= set(JUDGES)


@pytest.mark.parametrize("judge", JUDGES)
def test_every_judge_is_its_model_config(compose_cfg, judge):
    """judge=<name> gives the model config of the same name, typed by its backend's schema."""
    cfg = typed(compose_cfg(f"judge={judge}", "dataset=mt_bench"))
    model = typed(compose_cfg(f"model={judge}"))
    assert cfg.judge == model.model
    assert type(cfg.judge) is type(model.model)


@pytest.mark.parametrize(("model", "dataset", "mode"), list(itertools.product(MODELS, DATASETS, MODES)))
def test_every_combination_composes_and_resolves(compose_cfg, model, dataset, mode):
    cfg = typed(compose_cfg(f"model={model}", f"dataset={dataset}", f"mode={mode}"))  # every value resolves
    assert cfg.model.name == model and cfg.dataset.name == dataset and cfg.mode.name == mode
    sections = {
        DatasetMode.ppl: cfg.dataset.ppl,
        DatasetMode.gen: cfg.dataset.gen,
        DatasetMode.lmeval: cfg.dataset.lmeval,
    }
    assert sections[cfg.dataset.mode] is not None
    assert Path(cfg.dataset.local_dir).is_absolute()


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        (["dataset.ppl.convention=opencompas"], "expected one of [opencompass, lmeval]"),
        (["dataset=siqa", "dataset.gen.extractor=nosuch"], "expected one of [first_letter, edit_distance,"),
        (["dataset.mode=foo"], "expected one of [ppl, gen, lmeval]"),
        (["model.dtype=float33"], "expected one of [float32, float16, bfloat16, float64]"),
        (["model=llamacpp_smollm2", "model.api.endpoint=chatt"], "expected one of [auto, chat, completions]"),
        (["model.api.base_url=x"], "Key 'api' not in 'TransformersModelConfig'"),
        (["model=tiny_llama", "model.gguf_file=x.gguf"], "Key 'gguf_file' not in 'TinyModelConfig'"),
        (["model=llamacpp_smollm2", "model.dtype=float16"], "Key 'dtype' not in 'OpenAIModelConfig'"),
    ],
)
def test_a_value_outside_its_schema_fails_at_compose_in_one_line(compose_cfg, overrides, allowed):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_cfg(*overrides)
    line = config_error(caught.value)
    assert line is not None and "\n" not in line and allowed in line, line
    assert overrides[-1].split("=")[0] in line


def test_defaults_are_the_real_model_on_piqa(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.model.name, cfg.dataset.name, cfg.mode.name) == ("smollm2_135m", "piqa", "all")
    assert (Path(cfg.model.path) / cfg.model.gguf_file).is_file()  # located inside the installed wheel


def test_no_absolute_path_in_model_yaml():
    assert "/" not in (ROOT / "conf" / "model" / "smollm2_135m.yaml").read_text().split("path:")[1].split()[0]


def test_unknown_option_fails_at_compose(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="nosuch"):
        compose_cfg("model=nosuch")


def test_mistyped_field_fails_at_compose(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="bach_size"):
        compose_cfg("model.bach_size=3")


def test_wrong_type_fails_at_compose(compose_cfg):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg("model.batch_size=many")


def test_data_dir_override_moves_every_dataset(compose_cfg, tmp_path):
    cfg = compose_cfg(f"paths.data_dir={tmp_path}", "dataset=siqa")
    assert cfg.dataset.local_dir == f"{tmp_path}/siqa"


@pytest.mark.process
def test_configs_ship_inside_the_installed_package(tmp_path):
    """A regular (non-editable) install finds every config group without the source checkout."""
    import subprocess
    import sys

    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheel_dir), str(ROOT)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("hydra_eval-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True
    )
    probe = (
        "import hydra_eval, hydra_eval.cli\n"
        "from hydra import compose, initialize_config_module\n"
        f"assert hydra_eval.__file__.startswith({str(site)!r}), hydra_eval.__file__\n"
        "with initialize_config_module(config_module='hydra_eval.conf', version_base='1.3'):\n"
        "    cfg = compose(config_name='config', overrides=['model=llama7b', 'dataset=siqa', 'output_dir=x'])\n"
        "print(cfg.model.path, cfg.dataset.name)\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.split() == ["huggyllama/llama-7b", "siqa"]


@pytest.mark.parametrize(
    ("name", "ours"),
    [("submitit_slurm", "SlurmLauncher"), ("slurm", "SlurmLauncher"), ("submitit_local", "LocalLauncher")]
    + [("local", "LocalLauncher")],
)
def test_every_launcher_name_gives_the_extended_launcher(name, ours, tmp_path):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        cfg = compose("config", [f"hydra/launcher={name}", f"output_dir={tmp_path}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == f"hydra_plugins.hydra_eval_plugins.launchers.{ours}"
    from omegaconf import OmegaConf

    assert "gpus_per_node: ${model.num_gpus}" in OmegaConf.to_yaml(cfg.hydra.launcher)  # resources per job


def test_failure_of_reads_hydras_job_return():
    """hydra_plugins/hydra_eval_plugins/composed.py reads JobReturn's stored exception (no public getter that
    does not re-raise): this fails when Hydra moves it."""
    from hydra.core.utils import JobStatus

    from hydra_plugins.hydra_eval_plugins.composed import failed_return, failure_of

    error = RuntimeError("boom")
    ret = failed_return(["a=1"], "/tmp/x", error)
    assert ret.status == JobStatus.FAILED and failure_of(ret) is error
