"""The image index that ingest writes and every later stage reads, and the labelled split (DESIGN §1).

Paths in the index are relative to their dataset root; ``dataset_roots`` finds the roots from the config
and ``read_index`` joins them, so a work directory and a dataset can each move without re-doing work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

INDEX_FILE = "index.parquet"
SPLIT_FILE = "labelled.txt"  # written by the split stage: one labelled image id per line
DEMO_DIR = Path("data") / "demo"  # under the work directory

INDEX_SCHEMA = pa.schema([
    ("image_id", pa.string()),  # <dataset>/<split>/<stem>: the same wherever the dataset lies
    ("dataset", pa.string()),  # the layout it was read in: gta5, synthia or cityscapes
    ("domain", pa.string()),  # source or target
    ("split", pa.string()),  # train or val
    ("image_path", pa.string()),  # relative to the domain's root
    ("label_path", pa.string()),  # relative to the domain's root; null when the image has no label file
    ("image_hash", pa.string()),  # blake2b of the file's bytes
    ("label_hash", pa.string()),
    ("height", pa.int32()), ("width", pa.int32()),
])


def resolve_rows(rows: list[dict[str, Any]], roots: dict[str, Path | str]) -> list[dict[str, Any]]:
    """Index rows with ``image_path`` and ``label_path`` made absolute under their domain's root."""
    out = []
    for r in rows:
        root = Path(roots[r["domain"]])
        out.append({**r, "image_path": str(root / r["image_path"]),
                    "label_path": str(root / r["label_path"]) if r.get("label_path") else None})
    return out


def read_index(path: Path | str, roots: dict[str, Path | str]) -> list[dict[str, Any]]:
    """The index as rows with absolute paths."""
    return resolve_rows(pq.read_table(path).to_pylist(), roots)


SELECT_HEADER = "# semidavil select --strategy "  # a split file's first line when `semidavil select` wrote it


def selection_of(split_file: Path | str | None) -> str:
    """How a run's labelled images were chosen: the split stage's seeded draw (``random``), the strategy of the
    ``select`` that wrote its split file, or ``file`` (a list of the user's)."""
    if split_file is None:
        return "random"
    with open(split_file) as fh:
        first = fh.readline()
    return first.removeprefix(SELECT_HEADER).split()[0] if first.startswith(SELECT_HEADER) else "file"


def split_file_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, entry) of a split file, without blank lines and # comments."""
    lines = enumerate(Path(path).read_text().splitlines(), 1)
    return [(n, line.strip()) for n, line in lines if line.strip() and not line.strip().startswith("#")]


def index_digests(table: pa.Table) -> dict[str, str]:
    """``images``: which images and their content; ``index``: everything in the index."""
    from pipeline.stage import digest

    images = table.select(["image_id", "image_path", "image_hash"])
    return {"images": digest(images.to_pydict()), "index": digest(table.to_pydict())}


def record_rejected(ctx, rejected: list[tuple[str, str]], kind: str) -> None:
    """An ingest's rejected files into the manifest, said on the console; with ``data.strict`` the stage fails
    naming each one and why."""
    from pipeline.progress import console
    from pipeline.stage import StageError

    ctx.manifest.record_rejected(ctx.name, ctx.fingerprint, rejected)
    if rejected:
        console.print(f"  ingest: rejected {len(rejected)} {kind}(s); `semidavil status` lists them")
        if ctx.cfg.data.strict:
            raise StageError(f"data.strict: rejected {kind}s:\n" + "\n".join(f"  {p}: {r}" for p, r in rejected))


def read_split(out_dir: Path) -> set[str]:
    """The labelled image ids a split stage wrote."""
    return set(Path(out_dir, SPLIT_FILE).read_text().split())
