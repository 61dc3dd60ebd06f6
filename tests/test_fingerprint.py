"""Fingerprints: captions and text embeddings depend on the image set alone; the split on its content."""

from __future__ import annotations

import shutil

import pytest

from pipeline.config import load_config
from pipeline.plan import payload_changes, plan
from pipeline.runner import fingerprints, run_pipeline, stages_of
from pipeline.stage import digest, fingerprint, payload, stage_dir
from stages.index import SPLIT_FILE
from tests.conftest import small_overrides

LANGUAGE = ("caption", "embed_text")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A work directory whose small demo world is ingested; returns a function overrides -> fingerprints
    (after running the cheap ingest and split stages for those overrides, as `run` would first)."""
    workdir = tmp_path_factory.mktemp("fp") / "w"

    def fps(*overrides: str) -> dict[str, str]:
        cfg = load_config(None, small_overrides(workdir, *overrides))
        run_pipeline(cfg, ["ingest", "split"])
        return fingerprints(cfg)

    fps.workdir = workdir
    return fps


def test_payload_fingerprint_is_order_free_and_covers_version_and_inputs():
    base = fingerprint(payload("x", 1, {"a": 1, "b": 2}, {"i": "f"}))
    assert fingerprint(payload("x", 1, {"b": 2, "a": 1}, {"i": "f"})) == base
    assert fingerprint(payload("x", 2, {"a": 1, "b": 2}, {"i": "f"})) != base
    assert fingerprint(payload("x", 1, {"a": 1, "b": 2}, {"i": "g"})) != base
    assert fingerprint(payload("y", 1, {"a": 1, "b": 2}, {"i": "f"})) != base


def test_a_fresh_work_directory_knows_only_the_first_fingerprints(tmp_path):
    cfg = load_config(None, small_overrides(tmp_path / "w"))
    fps = fingerprints(cfg)
    assert fps["ingest"] is not None and all(fps[n] is None for n in list(stages_of(cfg))[1:])
    assert not (tmp_path / "w").exists()  # computing them wrote nothing


@pytest.mark.parametrize("override", ["data.labelled_target=2", "data.seed=3", "loss.omega=0.7", "loss.dyce=false",
                                      "model.dlg=false", "model.vision_init=random", "train.iterations=5",
                                      "train.consistency=false", "train.feature_perturbation=0",
                                      "eval.model=student"])
def test_split_loss_model_train_and_eval_keys_leave_the_language_alone(world, override):
    base, changed = world(), world(override)
    assert [changed[n] == base[n] for n in LANGUAGE] == [True, True], override
    trains_again = not override.startswith("eval.")
    assert (changed["train"] != base["train"]) == trains_again, override
    assert changed["evaluate"] != base["evaluate"]


def test_caption_and_text_keys_change_the_language(world):
    base = world()
    assert world("caption.max_new_tokens=7")["caption"] != base["caption"]
    changed = world("text.pretrained=openai")
    assert changed["caption"] == base["caption"] and changed["embed_text"] != base["embed_text"]
    assert changed["train"] != base["train"]


def test_execution_keys_change_nothing(world):
    base = world()
    for override in ("execution.caption.batch_size=3", "execution.caption.concurrency=4", "execution.text.num_gpus=1", "execution.train.log_every=7",
                     "execution.train.loader_workers=1", "cluster.address=auto"):
        assert world(override) == base, override


def test_auto_and_the_value_it_resolves_to_give_one_fingerprint(world):
    """Every ``auto`` that changes a result is resolved as the config loads (``StreetConfig.resolved``), so a run
    with ``auto`` and one with its value are one run."""
    assert world("train.colour_jitter=auto") == world("train.colour_jitter=0.2")  # some target images labelled
    assert world("train.colour_jitter=auto") != world("train.colour_jitter=0.5")
    none = "data.labelled_target=0"
    assert world("train.colour_jitter=auto", none) == world("train.colour_jitter=0.5", none)
    assert world("loss.pasted_gt=auto") == world("loss.pasted_gt=ct") != world("loss.pasted_gt=sup")
    model = "caption.captions_file=null"  # the tiny captioner runs: its dtype counts
    assert world(model, "caption.dtype=auto") == world(model, "caption.dtype=float32")  # no GPU for the captioner
    assert world(model, "caption.dtype=auto", "execution.caption.num_gpus=1") == world(model, "caption.dtype=bfloat16")
    assert world(model, "caption.dtype=bfloat16")["caption"] != world(model)["caption"]


def test_consistency_keys_leave_a_run_without_consistency_alone(world):
    """Every CT variant of a sweep shares one no-CT baseline; with CT on, the same keys train anew."""
    ct_keys = ("train.mix=cutmix", "train.feature_perturbation=0", "loss.class_threshold_quantile=0.5",
               "loss.confidence_threshold=0.9")
    for off in ("train.consistency=false", "loss.consistency_weight=0"):
        assert world(off, *ct_keys)["train"] == world(off)["train"], off
    assert world(*ct_keys)["train"] != world()["train"]
    assert world("train.ema_warmup=false", "train.consistency=false")["train"] != world("train.consistency=false")["train"]


def test_a_moved_dataset_keeps_its_captions_and_training(world, tmp_path):
    base = world()
    demo = world.workdir / "data" / "demo"
    moved = tmp_path / "mnt"  # another mount point; a plain copy, so file times differ
    shutil.copytree(demo, moved, copy_function=shutil.copy)
    changed = world("data.source.name=gta5", f"data.source.root={moved / 'gta5'}",
                    "data.target.name=cityscapes", f"data.target.root={moved / 'cityscapes'}")
    assert changed["ingest"] != base["ingest"]  # the new place is read and checked once
    for name in ("split", *LANGUAGE, "train"):
        assert changed[name] == base[name], name
    image = next((moved / "gta5" / "images").glob("*.png"))
    image.write_bytes(next((moved / "gta5" / "images").glob("*.png")).read_bytes()[:-1] + b"\0")  # one file edited
    edited = world("data.source.name=gta5", f"data.source.root={moved / 'gta5'}",
                   "data.target.name=cityscapes", f"data.target.root={moved / 'cityscapes'}",
                   "data.demo.height=64")  # a no-op key for real datasets: ingest runs again only if told to
    assert edited["ingest"] == changed["ingest"]


def test_a_split_file_is_fingerprinted_by_its_content(world, tmp_path):
    base = world()
    split = tmp_path / "split.txt"
    ids = sorted(p.name.removesuffix("_leftImg8bit.png") for p in
                 (world.workdir / "data" / "demo" / "cityscapes" / "leftImg8bit" / "train").glob("*/*.png"))
    split.write_text("\n".join(ids[:3]) + "\n")
    first = world(f"data.split_file={split}")
    split.write_text("# the same images, another order\n" + "\n".join(reversed(ids[:3])) + "\n")
    assert world(f"data.split_file={split}") == first
    split.write_text("\n".join(ids[:2]) + "\n")  # edited in place: one image fewer
    edited = world(f"data.split_file={split}")
    assert edited["split"] != first["split"] and edited["train"] != first["train"]
    assert [edited[n] for n in LANGUAGE] == [base[n] for n in LANGUAGE]


def test_the_same_labelled_images_train_once_however_named(world, tmp_path):
    """A split file naming exactly the seed's choice trains the same model as the seed."""
    base = world()
    split = tmp_path / "same.txt"
    split.write_text((stage_dir(world.workdir, "split", base["split"]) / SPLIT_FILE).read_text())
    same = world(f"data.split_file={split}")
    assert same["split"] != base["split"] and same["train"] == base["train"]


def test_plan_names_the_changed_key_and_writes_nothing(world, tmp_path):
    world()
    manifest = world.workdir / "manifest.duckdb"
    before = manifest.stat().st_mtime_ns
    rows = {r.stage: r for r in plan(load_config(None, small_overrides(world.workdir, "data.labelled_target=3")))}
    assert rows["ingest"].action == "reuse"
    assert rows["caption"].action == "run" and rows["caption"].reason == "no complete run of this stage on record"
    assert rows["split"].action == "run"
    assert rows["split"].reason.startswith("differs from the closest complete run: data.labelled_target: ")
    assert rows["split"].reason.endswith(" → 3")
    assert rows["train"].action == "after split"
    assert manifest.stat().st_mtime_ns == before
    assert plan(load_config(None, small_overrides(tmp_path / "empty")))[0].reason.startswith("no complete run")
    assert not (tmp_path / "empty").exists()


def test_payload_changes_name_keys_inputs_and_versions():
    old = payload("train", 1, {"loss": {"omega": 0.5}, "train": {"lr": 1}}, {"split.labelled": "a"})
    new = payload("train", 2, {"loss": {"omega": 0.7}, "train": {"lr": 1}}, {"split.labelled": "b"})
    assert payload_changes(old, new) == ["stage version 1 → 2", "loss.omega: 0.5 → 0.7", "input split.labelled differs"]


# What the code before the plug-in layout (commit 9ed4eff) computed for the small demo config once its world was
# ingested and split: a work directory it made keeps its captions and text embeddings (docs/ARCHITECTURE.md).
BEFORE_PLUGINS = {"caption": "beddb8d244d6554217dcfd3d7a753239ed4d03d0c68e6db0718057b332c01b3d",
                  "embed_text": "eb4ba07941cca5f1bfe044372911ff20677dbd982d2c411913b2f8a97e6cc9b9"}


def test_captions_and_embeddings_of_a_work_directory_made_before_the_plugin_layout_are_reused(tmp_path):
    cfg = load_config(None, small_overrides(tmp_path / "w"))
    run_pipeline(cfg, only=["ingest"])
    run_pipeline(cfg, only=["split"])
    fps = fingerprints(cfg)
    assert {stage: fps[stage] for stage in BEFORE_PLUGINS} == BEFORE_PLUGINS


def test_a_methods_version_changes_its_training_alone(monkeypatch):
    """A 3D method's VERSION is its own: raising it retrains that method, and the other methods' runs stay reused
    (version 1 leaves the fingerprints of before the key existed)."""
    from models.volumes.methods import spec
    from stages.synapse.train import fingerprint_config

    def train_fp(method: str) -> str:
        return digest(fingerprint_config(load_config("configs/synapse_demo.yaml", [f"volumes.method={method}"])))

    before = {m: train_fp(m) for m in ("uamt", "dhc")}
    assert spec("dhc").VERSION == 1 and spec("uamt").VERSION == 2
    monkeypatch.setattr(spec("uamt").module, "VERSION", 3)
    assert train_fp("uamt") != before["uamt"] and train_fp("dhc") == before["dhc"]
