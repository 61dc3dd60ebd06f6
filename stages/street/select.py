"""`semidavil select`: which target train images to label next, for a budget (issue 37; ``models.selection``).

It reads what the work directory already holds for the config: the index (ingest), the labelled split (kept:
a budget counts new images only, so a second ``select`` from a run trained on the first split adds N more), the
text store (embed_text: each image's pooled caption embedding, the descriptor of ``diverse``) and, for
``uncertainty`` and ``mixed``, a trained model (``--from``: a train directory or a checkpoint) whose teacher
predicts each unlabelled image. It writes the split file (``data.split_file`` reads it) and the ranking as CSV
beside it. The teacher scores images in a Ray actor, as evaluation runs (on a GPU worker with
``execution.eval.num_gpus``); the scores are a ``select`` stage run of the manifest, kept in
``<workdir>/select/<fingerprint>/scores.parquet`` (the fingerprint of the index, the split, the model file and the
scoring settings), so a rerun reuses them.

Strategies: ``random`` (the split stage's seeded draw), ``uncertainty`` (RIPU's image score), ``diverse``
(k-centre greedy over caption embeddings), ``mixed`` (the most uncertain image of each of N clusters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.manifest import MANIFEST_FILE
from stages.evaluation import Held, evaluate_on_ray
from stages.index import SELECT_HEADER as HEADER

STRATEGIES = ("random", "uncertainty", "diverse", "mixed")
NEEDS_MODEL = ("uncertainty", "mixed")
NEEDS_CAPTIONS = ("uncertainty", "diverse", "mixed")  # the caption embeddings: a descriptor, or the model's language
SCORES_FILE = "scores.parquet"


class SelectError(ValueError):
    """A selection that cannot be made; the message names the option, file or stage at fault."""


@dataclass
class Pool:
    """The target train images: those labelled already and those to choose from, with what the work directory
    holds for them."""

    labelled: list[str]
    candidates: list[dict[str, Any]]  # index rows (absolute paths) of the unlabelled target train images
    text_store: Path | None  # embed_text's output, if complete
    index_digest: str


def open_pool(cfg: Config, outputs: dict[str, Path | None]) -> Pool:
    """The work directory's target train images, split into labelled (the config's split, as the split stage
    draws or reads it) and candidates; SelectError naming the stage to run first. ``outputs``: the output folder
    of the config's complete ingest and embed_text (None: not run)."""
    from pipeline.store import content_hash
    from stages.index import INDEX_FILE, read_index
    from stages.split import labelled_split, split_file
    from stages.street.datasets import dataset_roots

    ingest = outputs.get("ingest")
    if ingest is None:
        raise SelectError(f"{cfg.paths.workdir}: no index for this config: run ingest first (`semidavil run`)")
    rows = read_index(ingest / INDEX_FILE, dataset_roots(cfg.data, Path(cfg.paths.workdir)))
    train = [r for r in rows if r["domain"] == "target" and r["split"] == "train"]
    labelled = labelled_split([r["image_id"] for r in train if r["label_path"]], cfg.data, split_file(cfg))
    kept = set(labelled)
    return Pool(labelled, [r for r in train if r["image_id"] not in kept], outputs.get("embed_text"),
                content_hash(ingest / INDEX_FILE))


def check_request(pool: Pool, budget: int, strategy: str, model: Path | None) -> None:
    """SelectError, before anything is computed or written, for a request that cannot be met."""
    if strategy not in STRATEGIES:
        raise SelectError(f"--strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if budget < 1 or budget > len(pool.candidates):
        raise SelectError(f"--budget: {budget} asked for, the target has {len(pool.candidates)} unlabelled train "
                          f"images ({len(pool.labelled)} labelled already)")
    if strategy in NEEDS_MODEL and model is None:
        raise SelectError(f"--strategy {strategy}: scores images by a trained model's prediction; give --from "
                          "a train directory (train/<fingerprint>) or a checkpoint")
    if strategy in NEEDS_CAPTIONS and pool.text_store is None:
        raise SelectError(f"--strategy {strategy}: describes images by their captions, and this work directory "
                          "has no text embeddings for the config (run caption and embed_text first)")


def model_file(path: Path) -> Path:
    """The checkpoint ``--from`` names: a train directory's, or the file; SelectError when it is neither."""
    from stages.checkpoint import CheckpointError, read_meta
    from stages.trained import CHECKPOINT

    file = path / CHECKPOINT if path.is_dir() else path
    try:
        read_meta(file)
    except (CheckpointError, OSError) as err:
        raise SelectError(f"--from: {path} is not a train directory or a checkpoint ({err})") from None
    return file


def caption_features(store: Path, image_ids: list[str], max_tokens: int) -> np.ndarray:
    """(N, c) each image's caption embedding, its tokens' mean, unit length."""
    import torch

    from stages.street.language import TextEmbeddingStore

    text, parts = TextEmbeddingStore(store), []
    for start in range(0, len(image_ids), 256):  # in chunks: a whole target's tokens would not fit
        emb, mask = text.batch(image_ids[start:start + 256], max_tokens)
        parts.append((emb * mask[..., None]).sum(1) / mask.sum(1, keepdims=True).clamp(min=1))
    pooled = torch.cat(parts)
    return (pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-8)).numpy()


class Scorer(Held):
    """Holds a checkpoint's teacher where it runs — a Ray actor like evaluation's (``stages.evaluation``: on a GPU
    worker with ``execution.eval.num_gpus``) — and scores chunks of rows; usable without Ray too (the page)."""

    def __init__(self, cfg_dump: dict[str, Any], checkpoint: str, store: str):
        from models.device import pick_device
        from stages.checkpoint import load_model
        from stages.street.language import TextEmbeddingStore
        from stages.tasks import task_of

        self.cfg = Config.model_validate(cfg_dump)
        self.hold(pick_device())  # in the actor: its GPU if it has one
        self.model = load_model(Path(checkpoint), self.cfg.model, "teacher", self.device)
        self.store = TextEmbeddingStore(store, self.cfg.model.dlg_captions)  # as evaluate reads it
        self.n = len(task_of(self.cfg.task).classes(self.cfg))

    def probs(self, row: dict[str, Any]) -> Any:
        """The row's (C, H, W) class probabilities under the teacher."""
        from models.inference import prob_map
        from stages.street.images import read_rgb, resize_image

        cfg = self.cfg
        image = read_rgb(row["image_path"])
        image = resize_image(image, cfg.train.target_size) if cfg.train.target_size is not None else image
        text, mask = self.store.batch([row["image_id"]], cfg.model.max_tokens)
        return prob_map(self.model, image, text.to(self.device), mask.to(self.device), cfg.train.crop_size, self.n,
                        cfg.eval.sliding_window)[0]

    def __call__(self, rows: list[dict[str, Any]], first: int) -> np.ndarray:
        """RIPU's image score of each row (``first``: the index of rows[0])."""
        from models.selection import image_score

        return np.array([image_score(self.probs(row)) for row in rows])


def score_images(cfg: Config, rows: list[dict[str, Any]], checkpoint: Path, store: Path) -> np.ndarray:
    """RIPU's image score of each row under the checkpoint's teacher, in a Ray actor, with a progress bar."""
    from types import SimpleNamespace

    parts: list[np.ndarray] = []
    ctx = SimpleNamespace(cfg=cfg, workdir=Path(cfg.paths.workdir))
    evaluate_on_ray(ctx, Scorer, (cfg.model_dump(mode="json"), str(checkpoint), str(store)), rows, 16, "images",
                    parts.append, "select: scoring")
    return np.concatenate(parts) if parts else np.zeros(0)


def cached_scores(cfg: Config, pool: Pool, checkpoint: Path) -> np.ndarray:
    """``score_images`` of the candidates, as a stage the manifest records (``select``, fingerprinted by the
    index, the split, the model file and the scoring settings): a rerun reads them back from
    ``<workdir>/select/<fingerprint>/``."""
    from pipeline.manifest import Manifest
    from pipeline.stage import digest
    from pipeline.store import content_hash

    fp = digest({"index": pool.index_digest, "labelled": pool.labelled, "model": content_hash(checkpoint),
                 "store": str(pool.text_store), "eval": cfg.eval.model_dump(mode="json"),
                 "train": [cfg.train.crop_size, cfg.train.target_size]})
    path = Path(cfg.paths.workdir) / "select" / fp[:12] / SCORES_FILE
    manifest = Manifest(Path(cfg.paths.workdir) / MANIFEST_FILE)
    ids = [r["image_id"] for r in pool.candidates]
    if manifest.latest_stage_run("select", fp, "complete") is not None and path.exists():
        table = read_scores(path)
        if table["image_id"] == ids:
            return np.asarray(table["score"])
    return record_scores(manifest, fp, path, ids, lambda: score_images(cfg, pool.candidates, checkpoint,
                                                                         pool.text_store))


def read_scores(path: Path) -> dict[str, list]:
    from pipeline.store import read_parquet

    return read_parquet(path).to_pydict()


def record_scores(manifest: Any, fp: str, path: Path, ids: list[str], score: Any) -> np.ndarray:
    """``score()`` written to ``path`` as a ``select`` stage run of the manifest (failed, with the error, if it
    raises)."""
    import pyarrow as pa

    from pipeline.store import write_parquet

    run_id = manifest.start_run("select")
    stage_run = manifest.start_stage(run_id, "select", fp, path.parent)
    try:
        scores = score()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(pa.table({"image_id": ids, "score": scores}), path)
    except BaseException as err:
        manifest.end_stage(stage_run, "failed", error=f"{type(err).__name__}: {err}")
        manifest.end_run(run_id, "failed", str(err))
        raise
    manifest.end_stage(stage_run, "complete", rows=len(ids))
    manifest.end_run(run_id, "complete")
    return scores


@dataclass
class Selection:
    chosen: list[str]  # the new images, best first
    ranking: list[tuple[str, float]]  # every candidate with its score (random: its draw, 1 first), best first


def choose(cfg: Config, pool: Pool, budget: int, strategy: str, checkpoint: Path | None) -> Selection:
    """The ``budget`` new images of ``strategy`` and the ranking of every candidate."""
    from models.selection import k_centre, mixed

    ids = [r["image_id"] for r in pool.candidates]
    if strategy == "random":
        from stages.split import seeded_order

        order = seeded_order(ids, cfg.data.seed)
        return Selection(order[:budget], [(i, 1.0 - k / len(order)) for k, i in enumerate(order)])
    scores = cached_scores(cfg, pool, checkpoint) if strategy in NEEDS_MODEL else None
    if strategy == "uncertainty":
        order = [ids[k] for k in np.argsort(-scores, kind="stable")]
        return Selection(order[:budget], [(i, float(scores[ids.index(i)])) for i in order])
    features = caption_features(pool.text_store, [*pool.labelled, *ids], cfg.model.max_tokens)
    if strategy == "diverse":
        picked = k_centre(features, budget, chosen=range(len(pool.labelled)))
        chosen = [ids[k - len(pool.labelled)] for k in picked]
        spread = _nearest(features, len(pool.labelled))
        return Selection(chosen, sorted(zip(ids, map(float, spread), strict=True), key=lambda t: -t[1]))
    picked = mixed(features[len(pool.labelled):], scores, budget)
    return Selection([ids[k] for k in picked], sorted(zip(ids, map(float, scores), strict=True), key=lambda t: -t[1]))


def _nearest(features: np.ndarray, n_labelled: int) -> np.ndarray:
    """Each candidate's distance to its nearest other image (diverse's score: how far it is from the rest)."""
    from models.selection import squared_distances

    cand = features[n_labelled:].astype(np.float64)
    d = squared_distances(cand, features.astype(np.float64))  # (N, N + labelled): 70 MB at Cityscapes' 2,975
    d[np.arange(len(cand)), n_labelled + np.arange(len(cand))] = np.inf
    return np.sqrt(d.min(1))


def write_selection(out: Path, pool: Pool, selection: Selection, strategy: str, budget: int) -> Path:
    """The split file (kept labelled images, then the new ones) and ``<out>.csv``, the ranking."""
    import csv

    from pipeline.store import write_atomic

    header = f"{HEADER}{strategy} --budget {budget}: {len(pool.labelled)} kept, {budget} new\n"
    lines = "".join(f"{i}\n" for i in [*pool.labelled, *selection.chosen])
    write_atomic(out, lambda tmp: tmp.write_text(header + lines))
    chosen = set(selection.chosen)

    def ranking(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["rank", "image_id", "score", "chosen"])
            writer.writerows((k, i, f"{s:.6f}", i in chosen) for k, (i, s) in enumerate(selection.ranking, 1))

    csv_path = out.with_suffix(".csv")
    write_atomic(csv_path, ranking)
    return csv_path


PAGE = Path(__file__).with_name("select.html.j2")


def write_page(cfg: Config, out: Path, pool: Pool, selection: Selection, strategy: str,
               checkpoint: Path | None) -> Path:
    """``<out>.html``: the chosen images as thumbnails with their rank, score and caption, and the teacher's
    prediction where a model was given (images in ``<out>_files/``), for the people who will label them."""
    from stages.reporting import render_template, save_example
    from stages.street.images import read_rgb
    from stages.street.language import served_captions
    from stages.tasks import task_of

    rows = {r["image_id"]: r for r in pool.candidates}
    chosen = [rows[i] for i in selection.chosen]
    scores = dict(selection.ranking)
    captions = served_captions(pool.text_store, selection.chosen) if pool.text_store else {}
    scorer = Scorer(cfg.model_dump(mode="json"), str(checkpoint), str(pool.text_store)) if checkpoint else None
    preds = (scorer.probs(row) for row in chosen) if scorer is not None else iter(())
    classes, files, items = task_of(cfg.task).classes(cfg), out.parent / f"{out.stem}_files", []
    for k, row in enumerate(chosen):
        name = row["image_id"].replace("/", "__")
        probs = next(preds, None)
        items.append({"rank": k + 1, "image_id": row["image_id"], "score": f"{scores[row['image_id']]:.4f}",
                      "caption": captions.get(row["image_id"]) or "", "path": str(row["image_path"]),
                      "image": save_example(read_rgb(row["image_path"]), files / f"{name}.png"),
                      "prediction": save_example(classes.colourise(probs.argmax(0).cpu().numpy()),
                                                 files / f"{name}_pred.png") if probs is not None else None})
    page = out.with_suffix(".html")
    render_template(PAGE, {"strategy": strategy, "items": items, "kept": len(pool.labelled),
                           "unlabelled": len(pool.candidates)}, page)
    return page
