"""Any captioner, and captions a user can see and trust: the families' prompts and echoes, tiny captioners that
say something, captions from a file, and the statistics the stage records."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.street.captioner import TASK_PROMPTS, echo_length, load_captioner, prompt_text
from pipeline.cli import language_lines
from pipeline.runner import fingerprints, open_manifest, run_pipeline, stage_dir, status_rows
from pipeline.stage import StageError
from pipeline.store import read_parquet
from stages.index import INDEX_FILE
from stages.street.user_captions import CaptionStats, read_captions_file
from tests.conftest import run_here

IMAGES = [np.random.default_rng(k).integers(0, 255, (32, 32, 3), dtype=np.uint8) for k in range(4)]


def test_blip_echoes_one_token_fewer_than_its_prompt_and_no_word_of_the_caption_is_lost():
    captioner = load_captioner("tiny-blip", "float32", torch.device("cpu"))
    inputs = captioner.processor(images=IMAGES, text=["a photo of"] * 4, return_tensors="pt", padding=True)
    raw = captioner.model.generate(**inputs, max_new_tokens=6, **captioner.generation)
    prompt = inputs["input_ids"]  # <s> a photo of </s>
    n = prompt.shape[1]
    assert torch.equal(raw[:, 1:n - 1], prompt[:, 1:n - 1])  # the prompt's words come back, its end token not
    expected = [s.strip() for s in captioner.processor.batch_decode(raw[:, n - 1:], skip_special_tokens=True)]
    captions = captioner(IMAGES, "a photo of", 6)
    assert captions == expected and all(captions)
    naive = captioner.processor.batch_decode(raw[:, n:], skip_special_tokens=True)  # slicing by input length
    assert [c.split()[1:] for c in captions] == [c.split() for c in naive]  # ... would lose the first word


def test_a_chat_model_is_prompted_through_its_template_and_padded_on_the_left():
    captioner = load_captioner("tiny-llava", "float32", torch.device("cpu"))
    text = prompt_text("llava", captioner.processor, None)
    assert text == "user : <image> Describe this image in one sentence. assistant : "
    assert captioner.processor.tokenizer.padding_side == "left"
    captions = captioner(IMAGES, None, 6)
    assert all(captions) and len(set(captions)) > 1
    assert not any("assistant" in c or "Describe" in c for c in captions)  # the echoed prompt is cut off


def test_family_prompts_and_echoes():
    assert prompt_text("florence2", SimpleNamespace(), "a photo of") == TASK_PROMPTS["florence2"] \
        == "<MORE_DETAILED_CAPTION>"
    assert prompt_text("paligemma", SimpleNamespace(), None) == "caption en"
    assert prompt_text("blip-2", SimpleNamespace(), "a photo of") == "a photo of"
    assert prompt_text("git", SimpleNamespace(chat_template=None), None) is None
    ids = torch.zeros(2, 7, dtype=torch.long)
    decoder_only = SimpleNamespace(model_type="opt", is_encoder_decoder=False, get_text_config=lambda: decoder_only)
    t5 = SimpleNamespace(is_encoder_decoder=True)
    blip2_t5 = SimpleNamespace(model_type="blip-2", is_encoder_decoder=False, get_text_config=lambda: t5)
    florence = SimpleNamespace(model_type="florence2", is_encoder_decoder=True)
    blip = SimpleNamespace(model_type="blip", is_encoder_decoder=False)
    assert [echo_length(c, ids) for c in (decoder_only, blip2_t5, florence, blip)] == [7, 0, 0, 6]
    assert echo_length(decoder_only, None) == 0


def test_only_floating_inputs_take_the_models_dtype():
    captioner = load_captioner("tiny-llava", "bfloat16", torch.device("cpu"))
    assert next(captioner.model.parameters()).dtype == torch.bfloat16
    assert len(captioner(IMAGES[:2], None, 4)) == 2  # input_ids cast to bf16 would fail in the embedding


@pytest.mark.parametrize("model", ["tiny", "tiny-blip", "tiny-llava"])
def test_tiny_captioners_say_something_that_differs_between_images(model):
    captions = load_captioner(model, "float32", torch.device("cpu"))(IMAGES, None, 8)
    assert all(len(c.split()) >= 4 for c in captions), captions
    assert len(set(captions)) > 1, captions


def test_a_non_blip_captioner_runs_through_the_caption_stage_and_status_shows_what_it_said(small_config, monkeypatch):
    run_here(monkeypatch)  # the stage's UDF in this process (test_caption runs it under Ray Data)
    cfg = small_config("caption.model=tiny-llava")
    run_pipeline(cfg, ["ingest", "caption", "embed_text"])
    out = stage_dir(cfg.paths.workdir, "caption", fingerprints(cfg)["caption"])
    store = read_parquet(out)
    captions = store.column("caption").to_pylist()
    assert set(store.column("captioner").to_pylist()) == {"tiny-llava"}
    assert all(captions) and len(set(captions)) > len(captions) / 2
    lines = language_lines(status_rows(cfg))
    stats = CaptionStats.of(captions)
    assert lines[0] == (f"captions (caption.model tiny-llava): {len(captions)} images, 0 empty, {stats.distinct} "
                        f"distinct, {stats.mean_words} words on average")
    assert lines[1].startswith("text embeddings: ") and "0 captions cut" in lines[1]
    text = read_parquet(stage_dir(cfg.paths.workdir, "embed_text", fingerprints(cfg)["embed_text"]))
    assert dict(zip(text.column("image_id").to_pylist(), text.column("caption").to_pylist(), strict=True)) == \
        dict(zip(store.column("image_id").to_pylist(), captions, strict=True))  # the text store keeps the text


def test_mostly_empty_or_identical_captions_are_warned_about():
    assert "are empty" in CaptionStats.of(["", "", "a car"]).warning("caption.model x")
    assert "only 1 distinct" in CaptionStats.of(["a car"] * 3).warning("caption.model x")
    assert CaptionStats.of(["a car", "a bus", "a road"]).warning("caption.model x") is None


INDEX = [{"image_id": "gta5/train/00000", "image_path": "images/00000.png"},
         {"image_id": "cityscapes/train/aachen_000000_000019",
          "image_path": "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"}]


def write_captions(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_captions_file_names_images_by_id_or_by_path(tmp_path, suffix):
    rows = [{"image_id": "gta5/train/00000", "caption": "a red car"},
            {"image": INDEX[1]["image_path"], "caption": " two people "}]
    if suffix != ".jsonl":  # tables have every column in every row
        rows = [{"image_id": r.get("image_id", ""), "image": r.get("image", ""), "caption": r["caption"]} for r in rows]
    captions = read_captions_file(write_captions(tmp_path / f"c{suffix}", rows), INDEX)
    assert captions == {"gta5/train/00000": "a red car", INDEX[1]["image_id"]: "two people"}


@pytest.mark.parametrize("rows, message", [
    ([{"image_id": "gta5/train/00000", "caption": "a"}], r"c.jsonl: no caption for image 'cityscapes/train/aachen"),
    ([{"image_id": "gta5/train/00000", "caption": "a"}, {"image_id": "gta5/train/99999", "caption": "b"}],
     r"c.jsonl:2: unknown image 'gta5/train/99999'"),
    ([{"image_id": "gta5/train/00000", "caption": "a"}, {"image": "images/00000.png", "caption": "b"}],
     r"c.jsonl:2: image 'gta5/train/00000' has a caption already, at line 1"),
    ([{"image_id": "gta5/train/00000"}], r"c.jsonl:1: no 'caption' text"),
])
def test_a_captions_file_with_a_missing_unknown_or_repeated_image_is_named(tmp_path, rows, message):
    with pytest.raises(StageError, match=message):
        read_captions_file(write_captions(tmp_path / "c.jsonl", rows), INDEX)


def test_captions_from_a_file_edited_in_place_recaption_and_retrain_but_keep_ingest(small_config, tmp_path,
                                                                                    monkeypatch):
    run_here(monkeypatch)
    first = small_config()
    run_pipeline(first, ["ingest"])
    index = read_parquet(stage_dir(first.paths.workdir, "ingest", fingerprints(first)["ingest"]) / INDEX_FILE)
    path = tmp_path / "captions.jsonl"
    ids = index.column("image_id").to_pylist()
    write_captions(path, [{"image_id": i, "caption": f"scene {k}"} for k, i in enumerate(ids)])
    cfg = small_config(f"caption.captions_file={path}", "train.iterations=1")
    run_pipeline(cfg, ["ingest", "caption", "embed_text", "split", "train"])
    before = fingerprints(cfg)
    store = read_parquet(stage_dir(cfg.paths.workdir, "caption", before["caption"]))
    assert dict(zip(store.column("image_id").to_pylist(), store.column("caption").to_pylist(), strict=True)) == \
        {i: f"scene {k}" for k, i in enumerate(ids)}
    assert set(store.column("captioner").to_pylist()) == {"file:captions.jsonl"}
    write_captions(path, [{"image_id": i, "caption": f"another scene {k}"} for k, i in enumerate(ids)])
    after = fingerprints(cfg)
    assert after["ingest"] == before["ingest"] and after["split"] == before["split"]
    assert all(after[s] != before[s] for s in ("caption", "embed_text", "train"))
    outcomes = {o.stage: o for o in run_pipeline(cfg, ["ingest", "caption"])}
    manifest = open_manifest(cfg)
    assert len(manifest.stage_runs("ingest", status="complete")) == 1
    assert outcomes["caption"].record.details["captions"] == len(ids)
