"""Captions a user brings (``caption.captions_file``) and what the caption stage says about its captions.

A captions file is Parquet, JSONL or CSV with a ``caption`` column and, per row, the image it describes:
``image_id`` (as the index names it) or ``image`` (its path relative to its dataset root, as the index holds
it). It must give exactly one caption to every indexed image: a missing, unknown or repeated image is an error
naming the file, the line (the row, for Parquet) and the image.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.stage import StageError
from pipeline.store import content_hash

FORMATS = (".parquet", ".jsonl", ".csv")


def file_digest(path: Path) -> str:
    """The captions file's content (blake2b of its bytes): the caption stage's fingerprint holds this, not the path."""
    return "content blake2b:" + content_hash(Path(path).read_bytes())


def read_entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) of a captions file; line 1 is the first data row (CSV: the line after the header)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), 1))
    if suffix == ".jsonl":
        entries = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    entries.append((n, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise StageError(f"{path}:{n}: not a JSON object ({err.msg})") from None
        return entries
    if suffix == ".csv":
        with open(path, newline="") as fh:
            return [(n, row) for n, row in enumerate(csv.DictReader(fh), 2)]  # line 1 is the header
    raise StageError(f"{path}: a captions file is {', '.join(FORMATS)}, not {suffix or 'without a suffix'}")


def match_captions(path: Path, entries: list[tuple[int, dict[str, Any]]],
                   index: list[dict[str, Any]]) -> dict[str, str]:
    """image_id -> caption for every indexed image (``index`` rows: image_id, image_path relative to its root)."""
    by_id = {r["image_id"]: r["image_id"] for r in index}
    by_path: dict[str, str] = {}
    for r in index:
        by_path.setdefault(Path(r["image_path"]).as_posix(), r["image_id"])
    captions: dict[str, str] = {}
    lines: dict[str, int] = {}
    for n, row in entries:
        where = f"{path}:{n}"
        if not isinstance(row, dict) or not isinstance(row.get("caption"), str):
            raise StageError(f"{where}: no 'caption' text")
        key = row.get("image_id") or row.get("image")
        if not key:
            raise StageError(f"{where}: no 'image_id' or 'image' (a path relative to its dataset root)")
        image_id = by_id.get(key) or by_path.get(Path(str(key)).as_posix())
        if image_id is None:
            raise StageError(f"{where}: unknown image {key!r}: not in the ingested index")
        if image_id in captions:
            raise StageError(f"{where}: image {image_id!r} has a caption already, at line {lines[image_id]}")
        captions[image_id], lines[image_id] = row["caption"].strip(), n
    missing = [r["image_id"] for r in index if r["image_id"] not in captions]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise StageError(f"{path}: no caption for image {missing[0]!r}{more}")
    return captions


def read_captions_file(path: Path, index: list[dict[str, Any]]) -> dict[str, str]:
    """The captions of ``path`` for every indexed image, validated."""
    if not Path(path).exists():
        raise StageError(f"{path}: captions file not found (caption.captions_file)")
    return match_captions(Path(path), read_entries(Path(path)), index)


@dataclass(frozen=True)
class CaptionStats:
    """What a user checks before trusting captions: are they there, and do they differ between images?"""

    captions: int  # images with a caption (not rejected)
    empty: int
    distinct: int
    mean_words: float

    @classmethod
    def of(cls, captions: list[str | None]) -> CaptionStats:
        texts = [c for c in captions if c is not None]
        words = [len(c.split()) for c in texts]
        return cls(len(texts), sum(not c.strip() for c in texts), len(set(texts)),
                   round(sum(words) / len(words), 2) if words else 0.0)

    def details(self) -> dict[str, Any]:
        return {"captions": self.captions, "empty": self.empty, "distinct": self.distinct,
                "mean_words": self.mean_words}

    def warning(self, source: str) -> str | None:
        """A warning when most captions are empty or the same: DLG then sees one caption for every image."""
        if not self.captions:
            return None
        if self.empty > self.captions / 2:
            return f"{self.empty} of {self.captions} captions from {source} are empty: DLG sees no language"
        if self.distinct < self.captions / 2:
            return (f"only {self.distinct} distinct captions for {self.captions} images from {source}: "
                    "most images share a caption")
        return None
