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
