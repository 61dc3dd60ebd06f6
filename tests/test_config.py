from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from pipeline.runner import check_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_is_frozen():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.data.source.name == "demo"
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.iterations = 5


def test_overrides_are_typed():
    cfg = load_config(None, ["train.iterations=7", "loss.dyce=false", "train.source_size=[1280, 720]"])
    assert cfg.train.iterations == 7 and cfg.loss.dyce is False and cfg.train.source_size == (1280, 720)


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("train: {iterations: 10\n", [], "not valid YAML"),
        ("train: {iterationz: 10}\n", [], "train.iterationz: unknown key"),
        ("train: {iterations: many}\n", [], "train.iterations: Input should be a valid integer"),
        ("data: {source: {name: gta5, root: /no/such/dir}}\n", [], "data.source.root: path does not exist"),
        ("data: {source: {name: gta5}}\n", [], "data.source.root: required for dataset 'gta5'"),
        ("data: {source: {name: cityscapes, root: /}}\n", [], "data.source.name: cityscapes cannot be the source"),
        ("data: {target: {name: mapillary, root: /}}\n", [], "data.target.name: 'mapillary' is not a registered"),
        ("loss: {omega: 2}\n", [], "loss.omega"),
        ("{}\n", ["nosection.key=1"], "nosection: not a section of task 'street'"),
        ("task: synapse\n", ["caption.model=tiny"], "caption: not a section of task 'synapse'"),
        ("task: tennis\n", [], "task: 'tennis' is not a registered task"),
        ("train: {log_every: 5}\nexecution: {train: {log_every: 6}}\n", [], "train.log_every: moved to execution.train.log_every, which is set too"),
        ("{}\n", ["train.iterations"], "expected section.key=value"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, overrides, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        check_config(load_config(path, overrides), str(path))  # the CLI's checks: the model, then the plug-ins
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    if "--set" not in message:
        assert str(path) in message


def test_an_old_spelling_of_an_execution_key_loads_and_names_the_new_one(tmp_path):
    path = write(tmp_path, "train: {log_every: 5, iterations: 3}\ncaption: {batch_size: 3}\neval: {num_cpus: 2}\n")
    with pytest.warns(FutureWarning, match="train.log_every is now spelt execution.train.log_every"):
        cfg = load_config(path)
    assert (cfg.execution.train.log_every, cfg.execution.caption.batch_size, cfg.execution.eval.num_cpus) == (5, 3, 2)
    assert cfg.train.iterations == 3


def test_a_task_config_holds_its_own_sections_only():
    street, synapse = load_config(), load_config("configs/synapse_demo.yaml")
    assert {"data", "caption", "text", "model", "eval"} <= set(type(street).model_fields)
    assert not {"caption", "text", "model", "eval"} & set(type(synapse).model_fields)
    assert "volumes" not in type(street).model_fields
    assert type(synapse)().train.lr == 0.03 and type(street)().train.lr == 1e-4  # SGD's and AdamW's defaults
    assert synapse.volumes.data.layout == "nifti"  # auto, as the demo volumes are written


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path):
    workdir = tmp_path / "work"
    path = write(tmp_path, f"paths: {{workdir: {workdir}}}\ntrain: {{iterations: -3}}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "train.iterations" in proc.stderr and str(path) in proc.stderr
    assert not workdir.exists()


def test_default_config_path_exists():
    assert DEFAULT_CONFIG.exists()
