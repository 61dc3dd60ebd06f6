"""Whose caption DLG reads (``model.dlg_captions``), and captions that stay with their images through the
loader, mixing and feature perturbation: each image's caption encodes its identity, each image its colour, so a
caption paired with the wrong image shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import stages.street.train.loop as train
from models.street.text import load_text_encoder
from pipeline.config import load_config
from pipeline.store import write_parquet
from stages.street.embed_text import embedding_table
from stages.street.language import TextEmbeddingStore, derangement, served_captions
from stages.street.loader import Streams

IDS = [f"img{k}" for k in range(6)]
DIM = 4


def identity_store(directory: Path) -> Path:
    """Image k's caption: k + 2 tokens, every value k + 1 (so a token tells whose caption it is)."""
    n = np.array([k + 2 for k in range(len(IDS))])
    emb = np.zeros((len(IDS), int(n.max()), DIM), np.float32)
    for k in range(len(IDS)):
        emb[k, :n[k]] = k + 1
    table = embedding_table(pa.array(IDS), pa.array([0] * len(IDS), pa.int32()), [f"caption of {i}" for i in IDS],
                            emb, n, [False] * len(IDS), "test")
    write_parquet(table.drop_columns(["shard"]), directory / "shard-00000.parquet")
    return directory


def whose(text: torch.Tensor, mask: torch.Tensor) -> list[int]:
    """The image index each valid token of one row belongs to."""
    return [int(round(float(v))) - 1 for v in text[mask][:, 0]]


def test_shuffled_serves_every_image_another_images_caption_the_same_each_time(tmp_path):
    store = TextEmbeddingStore(identity_store(tmp_path), "shuffled")
    text, mask = store.batch(IDS)
    owners = [set(whose(text[b], mask[b])) for b in range(len(IDS))]
    assert all(len(o) == 1 for o in owners)
    partner = [o.pop() for o in owners]
    assert all(p != k for k, p in enumerate(partner)) and sorted(partner) == list(range(len(IDS)))  # a derangement
    assert [int(mask[b].sum()) for b in range(len(IDS))] == [partner[b] + 2 for b in range(len(IDS))]
    again, _ = TextEmbeddingStore(tmp_path, "shuffled").batch(IDS[::-1])
    assert torch.equal(again, text.flip(0))  # fixed: every run, evaluate too, reads the same pairing
    assert served_captions(tmp_path, IDS, "shuffled") == {i: f"caption of {IDS[p]}" for i, p in zip(IDS, partner)}


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10, 101):
        ids = [str(k) for k in range(n)]
        pairs = derangement(ids)
        assert sorted(pairs.values()) == sorted(ids) and all(a != b for a, b in pairs.items())


def test_empty_serves_the_start_token_alone_which_is_the_same_for_every_caption(tmp_path):
    own, own_mask = TextEmbeddingStore(identity_store(tmp_path)).batch(IDS)
    empty, mask = TextEmbeddingStore(tmp_path, "empty").batch(IDS)
    assert mask.sum(1).tolist() == [1] * len(IDS) and torch.equal(empty[:, 0], own[:, 0])
    assert own_mask.sum(1).tolist() == [k + 2 for k in range(len(IDS))]
    encoder = load_text_encoder("tiny", "none", torch.device("cpu"))
    tokens = encoder.token_embeddings(encoder.tokenize(["a car on the road", "two trucks", ""]))
    torch.testing.assert_close(tokens[0, 0], tokens[1, 0])  # CLIP's causal mask: the start token reads no word
    torch.testing.assert_close(tokens[0, 0], tokens[2, 0])
    assert served_captions(tmp_path, IDS[:2], "empty") == {IDS[0]: "", IDS[1]: ""}


def stream_of(ids: list[str], size: int = 8):
    """An endless stream of one batch: image k is the flat colour 20·k (uint8), labels 0."""
    k = torch.tensor([IDS.index(i) for i in ids])
    batch = {"image": (20 * (k + 1)).to(torch.uint8)[:, None, None, None].expand(-1, 3, size, size).contiguous(),
             "label": torch.zeros(len(ids), size, size, dtype=torch.uint8), "image_id": ids}
    while True:
        yield batch


def colour_owner(images: torch.Tensor) -> torch.Tensor:
    """(B, S, S): which image each pixel of a [0, 1] batch came from."""
    return (images[:, 0] * 255 / 20).round().long() - 1


@pytest.mark.parametrize("mode", ["own", "shuffled"])
def test_next_batch_gives_each_image_the_caption_dlg_is_to_read(tmp_path, mode):
    store = TextEmbeddingStore(identity_store(tmp_path), mode)
    partner = {IDS.index(a): IDS.index(b) for a, b in derangement(IDS).items()} if mode == "shuffled" else \
        {k: k for k in range(len(IDS))}
    streams = Streams(stream_of(IDS[:2]), stream_of(IDS[2:3]), stream_of(IDS[3:6]))
    batch = train.next_batch(streams, store, 77, torch.device("cpu"))
    for images, (text, mask) in ((batch.labelled, batch.labelled_text), (batch.unlabelled, batch.unlabelled_text)):
        for b, owner in enumerate(colour_owner(images)[:, 0, 0].tolist()):
            assert set(whose(text[b], mask[b])) == {partner[owner]}, (mode, b)


class Recorder(torch.nn.Module):
    """A student that remembers the one pass it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, images, text, mask, perturb=(0, 0.0)):
        self.calls.append((images, text, mask, perturb))
        logits = torch.zeros(images.shape[0], 19, *images.shape[2:]) + self.weight
        return type("Out", (), {"logits": logits})()


class Teacher(torch.nn.Module):
    """Labels each pixel with the index of the image it shows, sure of it."""

    def forward(self, x, text, mask):
        owner = colour_owner(x * torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
                             + torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None])
        return type("Out", (), {"logits": torch.nn.functional.one_hot(owner, 19).permute(0, 3, 1, 2).float() * 9})()


@pytest.mark.parametrize("mix_from", ["unlabelled", "labelled", "both"])
def test_every_stream_of_the_one_pass_carries_its_own_images_captions(tmp_path, monkeypatch, mix_from):
    """Through next_batch, the mixed strong view and feature perturbation: a mixed image's caption holds the
    captions of exactly the images it shows (pasted one first), and every other image's its own. Permuting
    the captions of a batch anywhere on the way fails this."""
    monkeypatch.setattr(train, "strong_augment", lambda x, *_: x)  # colours stay readable; geometry is the test
    store = TextEmbeddingStore(identity_store(tmp_path))
    streams = Streams(stream_of(IDS[:2]), stream_of(IDS[2:3]), stream_of(IDS[3:6]))
    batch = train.next_batch(streams, store, 77, torch.device("cpu"))
    cfg = load_config(None, ["train.feature_perturbation=0.5", f"train.mix_from={mix_from}", "train.mix=cutmix",
                             "train.colour_jitter=0.5", "loss.pasted_gt=ct"])
    student = Recorder()
    torch.manual_seed(0)
    train.train_step(batch, student, Teacher(), torch.nn.CrossEntropyLoss(ignore_index=255), cfg, amp=False)
    ((images, text, mask, perturb),) = student.calls
    owners = colour_owner(images * torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
                          + torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None])
    assert images.shape[0] == 3 + 3 + 3 and perturb == (3, 0.5)
    # rows: labelled images 0-2 (source, labelled target), strong views of 3-5, weak views of 3-5 (perturbed)
    expected_base = [0, 1, 2, 3, 4, 5, 3, 4, 5]
    mixed = 0
    for b in range(images.shape[0]):
        shown = set(owners[b].unique().tolist())
        read = whose(text[b], mask[b])
        assert set(read) == shown and read[-1] == expected_base[b], b  # the base image's caption comes last
        if len(shown) == 2:  # a mixed image: the pasted image's tokens first
            mixed += 1
            assert b in (3, 4, 5) and read[0] == (shown - {expected_base[b]}).pop()
    assert mixed == 3
