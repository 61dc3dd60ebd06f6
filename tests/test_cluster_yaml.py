"""cluster.yaml is a valid Ray cluster launcher config and says what every key is for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

CLUSTER = Path(__file__).parent.parent / "cluster.yaml"


def test_cluster_yaml_matches_rays_schema():
    config = yaml.safe_load(CLUSTER.read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    assert config["head_node_type"] in config["available_node_types"]
    assert any("uv sync --locked" in c for c in config["setup_commands"])
    assert config["available_node_types"]["gpu_worker"]["max_workers"] >= 1


def test_every_top_level_key_is_commented():
    lines = CLUSTER.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            assert lines[i - 1].startswith("#") or "#" in line, f"cluster.yaml:{i + 1}: {line} has no comment"


def node_types() -> dict[str, dict[str, float]]:
    config = yaml.safe_load(CLUSTER.read_text())
    return {name: {k: float(v) for k, v in node["resources"].items()}
            for name, node in config["available_node_types"].items()}


def test_every_stage_of_every_config_fits_a_node_type(tmp_path):
    from pipeline.config import load_config
    from pipeline.resources import misfits

    types = node_types()
    assert types["head"] == {"CPU": 0.0} and types["gpu_worker"]["GPU"] >= 1 and "GPU" not in types["cpu_worker"]
    for path in sorted(CLUSTER.parent.glob("configs/*.yaml")):
        roots = [] if path.stem.endswith("demo") else [f"volumes.data.root={tmp_path}"] if path.stem == "synapse" \
            else [f"data.source.root={tmp_path}", f"data.target.root={tmp_path}"]
        cfg = load_config(path, roots)
        assert misfits(cfg, types) == [], path.name
    too_big = load_config(CLUSTER.parent / "configs" / "gta5_cityscapes.yaml",
                          [f"data.source.root={tmp_path}", f"data.target.root={tmp_path}", "execution.train.cpus_per_worker=12",
                           "execution.caption.num_gpus=2"])
    assert sorted(misfits(too_big, types)) == ["caption replica", "train worker"]
