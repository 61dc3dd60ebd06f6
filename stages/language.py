"""The cached language: reading the embed_text stage's store of caption embeddings F_L (DESIGN §3).

Train, evaluate and predict read F_L through ``TextEmbeddingStore``; embed_text writes the store.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.store import read_parquet

if TYPE_CHECKING:
    import torch

CLASS_FILE = "class_embeddings.parquet"
META_FILE = "meta.json"


class TextEmbeddingStore:
    """All caption embeddings of a store in one float16 buffer, served by image_id."""

    def __init__(self, store_path: Path | str):
        self.path = Path(store_path)
        files = sorted(self.path.glob("shard-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{self.path}: no text embedding shards")
        table = read_parquet(self.path, columns=["image_id", "n_tokens", "dim", "embedding"])
        self.dim = int(table.column("dim")[0].as_py())
        self.row = {image_id: r for r, image_id in enumerate(table.column("image_id").to_pylist())}
        self.n_tokens = table.column("n_tokens").to_numpy()
        emb = table.column("embedding").combine_chunks()  # LargeBinaryArray: offsets + one data buffer
        offsets = np.frombuffer(emb.buffers()[1], dtype=np.int64)[emb.offset:emb.offset + len(emb) + 1]
        self.data = np.frombuffer(emb.buffers()[2], dtype=np.float16)
        self.start = offsets[:-1] // 2  # in float16 elements

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
            s = self.start[r]
            out[b, :n] = self.data[s:s + n * self.dim].reshape(n, self.dim)
            mask[b, :n] = True
        return torch.from_numpy(out), torch.from_numpy(mask)


@lru_cache(maxsize=4)
def open_store(store_path: str) -> TextEmbeddingStore:
    return TextEmbeddingStore(store_path)


def load_text_embeddings(store_path: Path | str, image_ids: list[str],
                         max_tokens: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded caption embeddings and their mask for ``image_ids`` (the store is opened once and cached)."""
    return open_store(str(Path(store_path).resolve())).batch(image_ids, max_tokens)
