"""Language embeddings: the per-token path, the padded loader, truncation, and the stage's resume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from models.street.text import load_text_encoder
from pipeline.runner import fingerprints, rejected_files, run_pipeline, stage_dir
from pipeline.store import read_parquet, write_parquet
from stages.street.embed_text import EmbedBatch
from stages.street.language import TextEmbeddingStore, load_text_embeddings

CAPTIONS = ["a car on the road", "", "people walking near a red bus and two bicycles",
            " ".join(["street"] * 100)]  # the last is longer than CLIP's 77-token context


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store written by the stage's own batch function (tiny text tower, seed 0)."""
    out = tmp_path_factory.mktemp("store")
    batch = pa.table({"image_id": [f"id{i}" for i in range(len(CAPTIONS))], "caption": CAPTIONS,
                      "shard": pa.array([0] * len(CAPTIONS), pa.int32())})
    table = EmbedBatch("tiny", "none", 0)(batch)
    write_parquet(table.drop_columns(["shard"]), out / "shard-00000.parquet")
    return out, table


def test_end_token_embedding_equals_encode_text(store):
    path, table = store
    encoder = load_text_encoder("tiny", "none", torch.device("cpu"))
    pooled = encoder.encode(CAPTIONS).numpy()  # open_clip's encode_text
    for row, expected in zip(table.to_pylist(), pooled, strict=True):
        tokens = np.frombuffer(row["embedding"], np.float16).reshape(row["n_tokens"], row["dim"])
        np.testing.assert_allclose(tokens[-1].astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_only_valid_tokens_are_stored(store):
    _, table = store
    n = table.column("n_tokens").to_pylist()
    assert n[1] == 2  # an empty caption: start and end tokens
    assert n[0] == len("a car on the road".split()) + 2
    sizes = [len(b) for b in table.column("embedding").to_pylist()]
    assert sizes == [k * table.column("dim")[0].as_py() * 2 for k in n]  # float16


def test_loader_pads_and_masks(store):
    path, table = store
    ids = ["id2", "id0", "id1"]
    emb, mask = load_text_embeddings(path, ids, max_tokens=77)
    assert emb.shape == (3, 77, 64) and emb.dtype == torch.float32 and mask.dtype == torch.bool
    n = dict(zip(table.column("image_id").to_pylist(), table.column("n_tokens").to_pylist(), strict=True))
    assert mask.sum(1).tolist() == [n[i] for i in ids]
    for b, i in enumerate(ids):
        assert torch.all(emb[b, n[i]:] == 0) and torch.all(mask[b, : n[i]])
    short, short_mask = load_text_embeddings(path, ["id3"], max_tokens=10)  # a cut, not an error
    assert short.shape == (1, 10, 64) and short_mask.all()
    with pytest.raises(KeyError, match="no text embedding for image 'missing'"):
        TextEmbeddingStore(path).batch(["missing"])


def test_long_caption_is_truncated_and_flagged(store):
    _, table = store
    row = table.to_pylist()[3]
    assert row["truncated"] and row["n_tokens"] == 77
    assert not any(table.column("truncated").to_pylist()[:3])


def test_stage_writes_store_and_records_truncation(small_config, ray_local):
    cfg = small_config()
    run_pipeline(cfg, ["ingest", "caption"])
    cap_dir = stage_dir(cfg.paths.workdir, "caption", fingerprints(cfg)["caption"])
    first = sorted(cap_dir.glob("shard-*.parquet"))[0]
    table = read_parquet(first)  # make one caption too long, as a real captioner might
    captions = table.column("caption").to_pylist()
    captions[0] = " ".join(["road"] * 90)
    write_parquet(table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(captions)), first)
    outcome = run_pipeline(cfg, ["embed_text"])[0]
    out = stage_dir(cfg.paths.workdir, "embed_text", fingerprints(cfg)["embed_text"])
    store = read_parquet(out)
    assert store.num_rows == outcome.record.rows == 28
    assert len(set(store.column("image_id").to_pylist())) == 28
    assert outcome.record.details["truncated"] == 1
    truncated_id = table.column("image_id")[0].as_py()
    assert ("embed_text", truncated_id, "caption truncated to the context") in rejected_files(cfg)
    assert not (out / "class_embeddings.parquet").exists()  # read by nothing: no longer computed


def test_the_stages_store_is_memory_mapped_and_reads_as_a_parquet_one(store, tmp_path):
    """embed_text writes Arrow IPC shards that the store maps (its float16 buffer is a view of the file, not a
    copy); a Parquet store of the same rows (written before) serves the same embeddings."""
    import pyarrow as pa

    from pipeline.store import write_table

    _, table = store
    write_table(table.drop_columns(["shard"]), tmp_path / "shard-00000.arrow")
    allocated = pa.total_allocated_bytes()
    mapped = TextEmbeddingStore(tmp_path)
    assert pa.total_allocated_bytes() - allocated < 1000  # nothing of the embeddings was copied into memory
    parquet = TextEmbeddingStore(store[0])
    ids = [f"id{i}" for i in range(len(CAPTIONS))]
    for a, b in zip(mapped.batch(ids), parquet.batch(ids), strict=True):
        assert torch.equal(a, b)
    buffer = mapped.data[0]
    assert not buffer.flags.owndata and not buffer.flags.writeable  # a read-only view of the mapped file
    assert isinstance(pa.ipc.open_file(pa.memory_map(str(tmp_path / "shard-00000.arrow"))).schema, pa.Schema)
