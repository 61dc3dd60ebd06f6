from __future__ import annotations

from pipeline.config import load_config
from pipeline.runner import STAGES, fingerprints
from pipeline.stage import fingerprint


def fps(*overrides: str) -> dict[str, str]:
    return fingerprints(load_config(None, list(overrides)))


def test_same_config_same_fingerprints():
    assert fps() == fps()
    assert fingerprint("x", 1, {"a": 1, "b": 2}, []) == fingerprint("x", 1, {"b": 2, "a": 1}, [])


def test_version_and_inputs_change_fingerprint():
    base = fingerprint("x", 1, {"a": 1}, ["f"])
    assert fingerprint("x", 2, {"a": 1}, ["f"]) != base
    assert fingerprint("x", 1, {"a": 1}, ["g"]) != base
    assert fingerprint("y", 1, {"a": 1}, ["f"]) != base


def test_a_key_the_stage_reads_changes_it_and_everything_downstream():
    base = fps()
    changed = fps("caption.max_new_tokens=7")
    assert changed["ingest"] == base["ingest"]
    for name in ("caption", "embed_text", "train", "evaluate", "report"):
        assert changed[name] != base[name], name


def test_a_key_only_a_later_stage_reads_leaves_earlier_stages_alone():
    base, changed = fps(), fps("loss.omega=0.7")
    assert [n for n in STAGES if base[n] != changed[n]] == ["train", "evaluate", "report"]
    assert fps("eval.model=student")["train"] == base["train"]


def test_execution_keys_do_not_change_fingerprints():
    base = fps()
    for override in ("caption.batch_size=3", "caption.concurrency=4", "text.num_gpus=1",
                     "train.log_every=7", "cluster.address=auto", "paths.workdir=elsewhere"):
        assert fps(override) == base, override


def test_demo_sizes_do_not_touch_a_real_dataset_run(tmp_path):
    real = ["data.source.name=gta5", f"data.source.root={tmp_path}", "data.target.name=cityscapes",
            f"data.target.root={tmp_path}"]
    assert fps(*real) == fps(*real, "data.demo.n_source=7")
    assert fps()["ingest"] != fps("data.demo.n_source=7")["ingest"]
