"""The training data streams of SSDA: source, labelled target, unlabelled target (DESIGN §5).

Each stream is one ``DataLoader`` that lives for the whole run (persistent workers, pinned memory on GPU).
Batch b of a stream is a function of (seed, stream, b) alone — which images and each image's crop and flip —
so a run resumed at step s draws exactly the batches an uninterrupted run would have drawn, with any number
of loader workers. Samples stay uint8 until they are on the device (4× less to copy).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stages.street.datasets import IGNORE, Labels
from stages.street.images import read_rgb, resize_image, resize_label

STREAMS = ("source", "labelled_target", "unlabelled")


class CropSet(Dataset):
    """Images (and labels) resized, randomly cropped to a square and flipped, from a per-sample seed.

    Item ``(i, seed)`` -> ``image`` (3, S, S) uint8 RGB; ``label`` (S, S) uint8 trainIds (255 where absent);
    ``image_id`` str.
    """

    def __init__(self, rows: list[dict], labels: Any, crop: int, resize: tuple[int, int] | None):
        """``labels``: the domain's label codec (``stages.street.datasets.labels``), or a dataset layout's name."""
        self.rows, self.crop, self.resize = rows, crop, resize
        self.labels = Labels(labels) if isinstance(labels, str) else labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        i, seed = item
        row = self.rows[i]
        image = read_rgb(row["image_path"])
        label = self.labels.read(row["label_path"]) if row["label_path"] else None
        if self.resize is not None:
            image = resize_image(image, self.resize)
            label = None if label is None else resize_label(label, self.resize)
        image, label = random_crop_flip(image, label, self.crop, np.random.default_rng(seed))
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "label": torch.from_numpy(np.ascontiguousarray(label)), "image_id": row["image_id"]}


def random_crop_flip(image: np.ndarray, label: np.ndarray | None, size: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pad (label with 255) to at least size×size, take a random crop, flip half the time; uint8 throughout.
    A missing label becomes all 255."""
    h, w = image.shape[:2]
    if label is None:
        label = np.full((h, w), IGNORE, np.uint8)
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE)
    h, w = image.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    image, label = image[top:top + size, left:left + size], label[top:top + size, left:left + size]
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return image, label


class StepSampler(Sampler):
    """Batches of (index, sample seed), drawn with replacement; batch b from a generator seeded by
    (seed, stream, b), starting at batch ``start`` (the step a run resumes at)."""

    def __init__(self, n: int, batch_size: int, seed: int, stream: int, start: int = 0):
        self.n, self.batch_size, self.seed, self.stream, self.start = n, batch_size, seed, stream, start

    def __len__(self) -> int:  # endless; the DataLoader asks anyway
        return 2**62

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.start
        while True:
            rng = np.random.default_rng([self.seed, self.stream, b])
            idx, seeds = rng.integers(0, self.n, self.batch_size), rng.integers(0, 2**31, self.batch_size)
            yield list(zip(idx.tolist(), seeds.tolist(), strict=True))
            b += 1


def default_workers(cpus: int, streams: int) -> int:
    """Loader processes per stream from the CPUs a train worker has: one core stays with the step."""
    return max(cpus - 1, 0) // max(streams, 1)


def stream(rows: list[dict], crop: int, resize: tuple[int, int] | None, batch_size: int, seed: int, k: int,
           start: int, workers: int, pin: bool, labels: Any = None) -> Iterator[dict[str, Any]] | None:
    """An endless iterator of batches of one stream (``labels``: its domain's codec; default: its dataset's
    functions), or None when it has no images."""
    if not rows:
        return None
    loader = DataLoader(CropSet(rows, labels or rows[0]["dataset"], crop, resize),
                        batch_sampler=StepSampler(len(rows), batch_size, seed, k, start), num_workers=workers,
                        pin_memory=pin, persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                        generator=torch.Generator().manual_seed(seed))  # its own: the step's generators stay untouched
    return iter(loader)


@dataclass
class Streams:
    """The three data streams of SSDA; ``labelled_target`` and ``unlabelled`` may be None."""

    source: Iterator[dict[str, Any]]
    labelled_target: Iterator[dict[str, Any]] | None
    unlabelled: Iterator[dict[str, Any]] | None

