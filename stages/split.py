"""Stage 2, split: which target train images are labelled (DESIGN §6).

N images chosen from a seed (``data.labelled_target``, ``data.seed``), or a list (``data.split_file``, or the
task's own: Synapse's labelled cases at 20 %), fingerprinted by its content, not its path. Both tasks: the
index's target train rows are the candidates (the Synapse train cases). Writes ``labelled.txt`` (one image_id
a line). Training depends on the ``labelled`` digest, the list of ids itself: two ways of naming the same
split train the same model once, and a label sweep never touches captions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.config import Config, SplitData
from pipeline.stage import StageContext, StageError, StageResult, digest
from pipeline.store import write_atomic
from stages.index import INDEX_FILE, SPLIT_FILE, split_file_lines
from stages.tasks import task_of

NAME = "split"
VERSION = 1
INPUTS = ("ingest",)
INPUT_DIGESTS = {"ingest": "index"}


def split_file(cfg: Config) -> Path | None:
    """The labelled list to read: ``data.split_file``, else the task's own (Synapse at 20 %: GenericSSL's
    ``labeled_0.2.txt``), else None (N chosen from the seed)."""
    return cfg.data.split_file or task_of(cfg.task).DEFAULT_SPLIT_FILE


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    data, path = cfg.data, split_file(cfg)
    if path is not None:
        entries = sorted(e for _, e in split_file_lines(path))
        return {"data": {"split_file": "content sha256:" + hashlib.sha256("\n".join(entries).encode()).hexdigest()}}
    return {"data": {"labelled_target": data.labelled_target, "seed": data.seed}}


def labelled_split(train_ids: list[str], data: SplitData, path: Path | None = None) -> list[str]:
    """The labelled target images, sorted: a split file (``path``, default ``data.split_file``), or N chosen
    from the seed."""
    path = path or data.split_file
    if path is not None:
        known, chosen = set(train_ids), set()
        for lineno, name in split_file_lines(path):
            match = _match_split_name(name, known)
            if match is None:
                raise StageError(f"{path}:{lineno}: {name!r} is not a target train image with a label")
            chosen.add(match)
        return sorted(chosen)
    n = len(train_ids) if data.labelled_target == "all" else data.labelled_target
    if n > len(train_ids):
        raise StageError(f"data.labelled_target: {n} asked for, the target has {len(train_ids)} train images with "
                         "a label")
    return sorted(seeded_order(train_ids, data.seed)[:n])


def seeded_order(image_ids: list[str], seed: int) -> list[str]:
    """The images ranked by a hash of (seed, id): the same seed gives the same list on any machine and in any
    file order (the labelled split is its first N; ``select``'s random strategy reads it too)."""
    return sorted(image_ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def _match_split_name(name: str, known: set[str]) -> str | None:
    """A split line may be an image_id, a file name or a Cityscapes stem (aachen_000000_000019)."""
    if name in known:
        return name
    stem = Path(name).name.removesuffix(".png").removesuffix("_leftImg8bit")
    candidates = [k for k in known if k.rsplit("/", 1)[-1] == stem]
    return candidates[0] if len(candidates) == 1 else None


def run(ctx: StageContext) -> StageResult:
    index = pq.read_table(ctx.inputs["ingest"] / INDEX_FILE, columns=["image_id", "domain", "split", "label_path"])
    train = [r for r in index.to_pylist() if r["domain"] == "target" and r["split"] == "train"]
    train_ids = [r["image_id"] for r in train]
    path = split_file(ctx.cfg)
    chosen = labelled_split([r["image_id"] for r in train if r["label_path"]], ctx.cfg.data, path)  # those with a mask
    write_atomic(ctx.out_dir / SPLIT_FILE, lambda tmp: tmp.write_text("".join(f"{i}\n" for i in chosen)))
    source = str(path) if path else \
        f"{ctx.cfg.data.labelled_target} from seed {ctx.cfg.data.seed}"
    return StageResult(len(chosen), {"labelled": len(chosen), "unlabelled": len(train_ids) - len(chosen),
                                     "from": source, "split_file": str(ctx.out_dir / SPLIT_FILE)},
                       digests={"labelled": digest(chosen)})
