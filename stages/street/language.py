"""The cached language: reading the embed_text stage's store of caption embeddings F_L (DESIGN §3).

Train, evaluate and predict read F_L through ``TextEmbeddingStore``; embed_text writes the store. The store
serves each image's own caption, or, for the control of ``model.dlg_captions``, another image's caption (a
fixed derangement: no image keeps its own) or none: the start token alone, which under CLIP's causal mask is
the same vector for every caption, so DLG runs unchanged and reads no words.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.store import read_parquet, shard_files

if TYPE_CHECKING:
    import torch

META_FILE = "meta.json"


CAPTION_MODES = ("own", "shuffled", "empty")


def derangement(image_ids: list[str], seed: int = 0) -> dict[str, str]:
    """image_id -> another image_id, the same on every machine: the images in a seeded random order, each
    taking the caption of the next one (the last the first's). No image keeps its own (for 2 images or more)."""
    order = sorted(image_ids)
    perm = np.random.default_rng(seed).permutation(len(order))
    cycle = [order[k] for k in perm]
    return {a: b for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True)}


def caption_length(n_tokens: int, mode: str) -> int:
    """Tokens of a caption DLG reads: all, or the start token alone for ``empty``."""
    return 1 if mode == "empty" else n_tokens


class TextEmbeddingStore:
    """Caption embeddings served by image_id; ``captions`` (a ``model.dlg_captions`` value) chooses whose
    caption an image is served. Arrow IPC shards (what embed_text writes) are memory-mapped: a worker's
    resident memory holds the index (ids, lengths, offsets) and the pages of the rows it reads, however large
    the store; Parquet shards (stores written before) are read whole."""

    def __init__(self, store_path: Path | str, captions: str = "own"):
        if captions not in CAPTION_MODES:
            raise ValueError(f"model.dlg_captions: {captions!r} is not one of {', '.join(CAPTION_MODES)}")
        self.path = Path(store_path)
        files = shard_files(self.path)
        if not files:
            raise FileNotFoundError(f"{self.path}: no text embedding shards")
        ids, n_tokens, shard, start, self.data = [], [], [], [], []
        for f in files:
            table = read_parquet(f, columns=["image_id", "n_tokens", "dim", "embedding"])
            self.dim = int(table.column("dim")[0].as_py())
            ids += table.column("image_id").to_pylist()
            n_tokens.append(table.column("n_tokens").to_numpy())
            for emb in table.column("embedding").chunks:  # LargeBinaryArray: offsets + one data buffer each
                offsets = np.frombuffer(emb.buffers()[1], dtype=np.int64)[emb.offset:emb.offset + len(emb) + 1]
                shard.append(np.full(len(emb), len(self.data), np.int32))
                start.append(offsets[:-1] // 2)  # in float16 elements
                self.data.append(np.frombuffer(emb.buffers()[2], dtype=np.float16))  # for .arrow: a view of the map
        self.row = {image_id: r for r, image_id in enumerate(ids)}
        if captions == "shuffled":
            self.row = {i: self.row[j] for i, j in derangement(list(self.row)).items()}
        self.n_tokens = np.array([caption_length(int(n), captions) for n in np.concatenate(n_tokens)])
        self.shard, self.start = np.concatenate(shard), np.concatenate(start)

    def __len__(self) -> int:
        return len(self.row)

    def batch(self, image_ids: list[str], max_tokens: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings (B, max_tokens, c) float32, mask (B, max_tokens) bool); longer captions are cut."""
        import torch  # here, so that the embed_text stage's interface stays light

        try:
            rows = [self.row[i] for i in image_ids]
        except KeyError as err:
            raise KeyError(f"{self.path}: no text embedding for image {err.args[0]!r}") from None
        out = np.zeros((len(rows), max_tokens, self.dim), dtype=np.float32)
        mask = np.zeros((len(rows), max_tokens), dtype=bool)
        for b, r in enumerate(rows):
            n = min(int(self.n_tokens[r]), max_tokens)
            s, data = self.start[r], self.data[self.shard[r]]
            out[b, :n] = data[s:s + n * self.dim].reshape(n, self.dim)
            mask[b, :n] = True
        return torch.from_numpy(out), torch.from_numpy(mask)


def served_captions(store_path: Path | str, image_ids: list[str], captions: str = "own") -> dict[str, str | None]:
    """The caption text DLG reads for each of ``image_ids`` under ``captions`` (``model.dlg_captions``): its
    own, the deranged partner's, or "" for ``empty``. None for a store without caption text."""
    table = read_parquet(Path(store_path), columns=["image_id", "caption"]) \
        if "caption" in _columns(Path(store_path)) else None
    if table is None:
        return dict.fromkeys(image_ids)
    text = dict(zip(table.column("image_id").to_pylist(), table.column("caption").to_pylist(), strict=True))
    partner = derangement(list(text)) if captions == "shuffled" else {}
    return {i: "" if captions == "empty" else text.get(partner.get(i, i)) for i in image_ids}


def _columns(store_path: Path) -> list[str]:
    """The store's column names, from its first shard's schema (no data read)."""
    import pyarrow.parquet as pq

    files = shard_files(store_path)
    if not files:
        return []
    return read_parquet(files[0]).column_names if files[0].suffix == ".arrow" else pq.read_schema(files[0]).names


@lru_cache(maxsize=4)
def open_store(store_path: str) -> TextEmbeddingStore:
    return TextEmbeddingStore(store_path)


def load_text_embeddings(store_path: Path | str, image_ids: list[str],
                         max_tokens: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded caption embeddings and their mask for ``image_ids`` (the store is opened once and cached)."""
    return open_store(str(Path(store_path).resolve())).batch(image_ids, max_tokens)
