"""Training step time and loader throughput.

Default (tiny models, the demo world, CPU): a step with cached language embeddings vs. captioning and
embedding inside the step, as the public reference code does.

``--full``: the paper's sizes (ViT-B/16 student + EMA teacher, DLG 256, decoder 256, 2+2+2 crops of 512²,
bf16 and fused AdamW on GPU; random weights), on real-size PNGs written to a temporary directory in the
official layouts (GTA5 1914×1052 resized to 1280×720, Cityscapes 2048×1024 resized to 1024×512). Measures
  - loader samples/s on one core (CropSet alone; OpenCV, and PIL decode for comparison);
  - s/step with a synthetic batch already on the device (the model alone);
  - s/step with the real loader (``--loader-workers`` processes per stream, pinned memory on GPU).

Usage: uv run python bench/train_step.py [--steps 20]
       uv run python bench/train_step.py --full [--steps 20] [--images 12] [--loader-workers 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from models.device import pick_device
from models.ema import ema_update
from models.losses import build_supervised_loss
from models.street.captioner import load_captioner
from models.street.text import end_positions, load_text_encoder
from pipeline.config import load_config
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from pipeline.store import write_parquet
from stages.index import read_split
from stages.street import demo_world
from stages.street.datasets import TRAIN_TO_CITYSCAPES_ID
from stages.street.embed_text import embedding_table
from stages.street.language import TextEmbeddingStore
from stages.street.loader import CropSet
from stages.street.train.loop import (
    Batch,
    build_learner,
    build_streams,
    next_batch,
    resolved,
    train_step,
    training_set,
    trim,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# default: cached vs in-step language, tiny models ------------------------------------------------------
class InStepLanguage:
    """F_L computed inside the step: caption the batch's images, then embed the captions."""

    def __init__(self, cfg, device):
        self.captioner = load_captioner(cfg.caption.model, "float32", device)
        self.text = load_text_encoder(cfg.text.model, cfg.text.pretrained, device)
        self.cfg = cfg

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.functional import to_pil_image

        captions = self.captioner([to_pil_image(x) for x in images.cpu()], None, self.cfg.caption.max_new_tokens)
        tokens = self.text.tokenize(captions)
        emb = self.text.token_embeddings(tokens).float()
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] <= end_positions(tokens)[:, None]
        return trim(emb, mask)


def training_inputs(cfg, workdir: Path):
    fps = fingerprints(cfg)
    index = stage_dir(workdir, "ingest", fps["ingest"]) / "index.parquet"
    from stages.street.datasets import dataset_roots

    roots = {k: str(v) for k, v in dataset_roots(cfg.data, workdir).items()}
    return training_set(index, roots, read_split(stage_dir(workdir, "split", fps["split"])), cfg)


def tiny_language(steps: int) -> None:
    device = pick_device()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"paths.workdir={tmp}", "data.demo.n_source=64", "data.demo.n_target_train=64",
                                 "data.demo.n_target_val=4"])
        run_pipeline(cfg, ["ingest", "split", "caption", "embed_text"])
        store = TextEmbeddingStore(stage_dir(Path(tmp), "embed_text", fingerprints(cfg)["embed_text"]))
        data = training_inputs(cfg, Path(tmp))
        cfg = resolved(cfg, data)  # the keys set to auto, settled from the training set as a run does
        streams = build_streams(data, cfg.train, cfg.execution.train, seed=0, start=0, pin=False)
        learner = build_learner(cfg, store.dim, device)
        loss_fn = build_supervised_loss(True, 0.2, 0.5, 255)
        in_step = InStepLanguage(cfg, device)

        def step(language: str) -> None:
            batch = next_batch(streams, store, cfg.model.max_tokens, device)
            if language == "in-step":  # recompute what the store holds
                batch = Batch(batch.labelled, batch.labels, in_step(batch.labelled), batch.unlabelled,
                              in_step(batch.unlabelled))
            loss, _ = train_step(batch, learner.student, learner.teacher, loss_fn, cfg, amp=False)
            learner.optimizer.zero_grad()
            loss.backward()
            learner.optimizer.step()

        results = {}
        for language in ("cached", "in-step", "cached"):
            step(language)  # warm-up
            t0 = time.perf_counter()
            for _ in range(steps):
                step(language)
            results[language] = (time.perf_counter() - t0) / steps
        n = cfg.train.batch_size
        print(f"tiny models on {device}, {3 * n} images per step ({cfg.train.crop_size}px crops), "
              f"{torch.get_num_threads()} threads:")
        print(f"  cached F_L (embed_text store): {1000 * results['cached']:.0f} ms/step")
        print(f"  captions + F_L in the step:    {1000 * results['in-step']:.0f} ms/step "
              f"({results['in-step'] / results['cached']:.2f}x)")


# --full: paper sizes, real-size PNGs ---------------------------------------------------------------------
def write_real_size_world(root: Path, n: int) -> tuple[Path, Path]:
    """n GTA5-layout frames of 1914×1052 and n Cityscapes-layout train frames of 2048×1024 (demo scenes)."""
    rng = np.random.default_rng(0)
    gta5, city = root / "gta5", root / "cityscapes"
    for i in range(n):
        for (h, w), style, image_path, label_path in (
            ((1052, 1914), "source", gta5 / "images" / f"{i:05d}.png", gta5 / "labels" / f"{i:05d}.png"),
            ((1024, 2048), "target", city / "leftImg8bit" / "train" / "town" / f"town_{i:06d}_000019_leftImg8bit.png",
             city / "gtFine" / "train" / "town" / f"town_{i:06d}_000019_gtFine_labelIds.png"),
        ):
            labels = demo_world.render_labels(rng, h, w)
            for path, array in ((image_path, demo_world.render_image(rng, labels, style)),
                                (label_path, TRAIN_TO_CITYSCAPES_ID[labels])):
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
    for kind in ("leftImg8bit", "gtFine_labelIds"):  # one val image, so the layout is complete
        folder = kind.split("_")[0]
        src = city / folder / "train" / "town" / f"town_000000_000019_{kind}.png"
        dst = city / folder / "val" / "town" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    return gta5, city


def synthetic_text_store(out_dir: Path, image_ids: list[str], dim: int, n_tokens: int = 16) -> TextEmbeddingStore:
    """Random caption embeddings of CLIP ViT-B/16's width: the loader and step read them like real ones."""
    emb = np.random.default_rng(0).standard_normal((len(image_ids), n_tokens, dim)).astype(np.float16)
    table = embedding_table(pa.array(image_ids), pa.array([0] * len(image_ids), pa.int32()), ["a street"] * len(image_ids), emb,
                            np.full(len(image_ids), n_tokens), [False] * len(image_ids), "bench")
    write_parquet(table.drop_columns(["shard"]), out_dir / "shard-00000.parquet")
    return TextEmbeddingStore(out_dir)


def loader_rate(data_rows: list[dict], dataset: str, resize: tuple[int, int], samples: int) -> float:
    """Samples/s of CropSet in this process (one core)."""
    crop_set = CropSet(data_rows, dataset, 512, resize)
    crop_set[(0, 0)]  # warm-up
    t0 = time.perf_counter()
    for i in range(samples):
        crop_set[(i % len(data_rows), i)]
    return samples / (time.perf_counter() - t0)


def decode_rates(paths: list[str], samples: int) -> tuple[float, float]:
    """Images/s of PNG decode alone on one core: PIL, OpenCV."""
    from stages.street.images import read_rgb

    rates = []
    for decode in (lambda p: np.asarray(Image.open(p).convert("RGB")), read_rgb):
        t0 = time.perf_counter()
        for i in range(samples):
            decode(paths[i % len(paths)])
        rates.append(samples / (time.perf_counter() - t0))
    return rates[0], rates[1]


def previous_loader_rate(rows: list[dict], resize: tuple[int, int], samples: int) -> float:
    """The loader as it was before OpenCV: PIL decode, PIL bilinear resize, float conversion of the whole
    image, then the crop (for the before/after figure)."""
    import random

    import torch.nn.functional as F

    from stages.street.datasets import load_label

    t0 = time.perf_counter()
    for i in range(samples):
        row = rows[i % len(rows)]
        with Image.open(row["image_path"]) as im:
            image = im.convert("RGB").resize(resize, Image.BILINEAR)
        label = np.asarray(Image.fromarray(load_label(row["label_path"], row["dataset"])).resize(resize, Image.NEAREST))
        image_t = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
        top, left = random.randint(0, image_t.shape[1] - 512), random.randint(0, image_t.shape[2] - 512)
        image_t = F.pad(image_t, (0, 0))[:, top:top + 512, left:left + 512].contiguous()
        torch.from_numpy(label.astype(np.int64))[top:top + 512, left:left + 512].contiguous()
    return samples / (time.perf_counter() - t0)


def time_steps(next_fn, learner, loss_fn, cfg, device, steps: int) -> float:
    amp = device.type == "cuda"
    for k in range(steps + 2):  # two warm-up steps
        if k == 2:
            sync(device)
            t0 = time.perf_counter()
        loss, _ = train_step(next_fn(), learner.student, learner.teacher, loss_fn, cfg, amp)
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()
        ema_update(learner.teacher, learner.student, cfg.train.ema_alpha)
    sync(device)
    return (time.perf_counter() - t0) / steps


def caption_decode_rate(paths: list[str], samples: int) -> float:
    """Images/s of the caption stage's CPU part (decode + resize to 224) on one core."""
    import pyarrow as pa

    from stages.street.caption import decode_batch

    table = pa.table({"image_id": [str(i) for i in range(samples)],
                      "image_path": [paths[i % len(paths)] for i in range(samples)]})
    t0 = time.perf_counter()
    decode_batch(table, 224)
    return samples / (time.perf_counter() - t0)


def full(steps: int, images: int, loader_workers: int, loader_only: bool = False) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        gta5, city = write_real_size_world(tmp / "data", images)
        print(f"wrote {images} GTA5 (1914x1052) and {images} Cityscapes (2048x1024) PNGs in "
              f"{time.perf_counter() - t0:.0f} s; mean size "
              f"{np.mean([p.stat().st_size for p in gta5.glob('images/*.png')]) / 1e6:.1f} MB (GTA5), "
              f"{np.mean([p.stat().st_size for p in city.glob('leftImg8bit/train/*/*.png')]) / 1e6:.1f} MB")
        cfg = load_config(Path(__file__).parent.parent / "configs" / "gta5_cityscapes.yaml", [
            f"data.source.root={gta5}", f"data.target.root={city}", f"paths.workdir={tmp / 'work'}",
            f"data.labelled_target={images // 2}", "model.vision_pretrained=none", f"execution.train.loader_workers={loader_workers}"])
        run_pipeline(cfg, ["ingest", "split"])
        data = training_inputs(cfg, tmp / "work")
        cfg = resolved(cfg, data)  # the keys set to auto, settled from the training set as a run does
        ids = [r["image_id"] for r in data.source + data.labelled_target + data.unlabelled]
        store = synthetic_text_store(tmp / "text", ids, dim=512)

        n = min(40, 4 * images)
        src_rate = loader_rate(data.source, "gta5", cfg.train.source_size, n)
        tgt_rate = loader_rate(data.labelled_target, "cityscapes", cfg.train.target_size, n)
        before = previous_loader_rate(data.source, cfg.train.source_size, n)
        pil_rate, cv2_rate = decode_rates([r["image_path"] for r in data.source], n)
        print(f"loader, one core: GTA5 {src_rate:.1f} samples/s (decode + resize 1280x720 + crop; the previous "
              f"PIL loader: {before:.1f}), Cityscapes {tgt_rate:.1f} samples/s (resize 1024x512); decode alone "
              f"of a 1914x1052 PNG: PIL {pil_rate:.1f}/s, OpenCV {cv2_rate:.1f}/s")
        city_paths = [r["image_path"] for r in data.labelled_target + data.unlabelled]
        print(f"caption decode (2048x1024 PNG -> 224x224, OpenCV), one core: "
              f"{caption_decode_rate(city_paths, n):.1f} images/s")
        if loader_only:
            return

        learner = build_learner(cfg, store.dim, device)
        loss_fn = build_supervised_loss(True, cfg.loss.hard_ratio, cfg.loss.omega, 255)
        streams = build_streams(data, cfg.train, cfg.execution.train, seed=0, start=0, pin=device.type == "cuda")
        fixed = next_batch(streams, store, cfg.model.max_tokens, device)
        synthetic = time_steps(lambda: fixed, learner, loss_fn, cfg, device, steps)
        real = time_steps(lambda: next_batch(streams, store, cfg.model.max_tokens, device), learner, loss_fn, cfg,
                          device, steps)
        b = cfg.train.batch_size
        print(f"paper size on {where}: {b}+{b}+{b} crops of 512², ViT-B/16 + EMA teacher, DLG 256, "
              f"{'bf16, fused AdamW' if device.type == 'cuda' else 'fp32'}:")
        print(f"  synthetic batch on the device: {synthetic:.3f} s/step")
        print(f"  real loader ({loader_workers} worker(s) per stream): {real:.3f} s/step "
              f"(needs {3 * b / real:.0f} samples/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="paper sizes on real-size PNGs")
    parser.add_argument("--images", type=int, default=12, help="--full: images per domain to write")
    parser.add_argument("--loader-workers", type=int, default=4, help="--full: loader processes per stream")
    parser.add_argument("--loader-only", action="store_true", help="--full: the per-core rates alone, no model")
    args = parser.parse_args()
    if args.full:
        full(args.steps, args.images, args.loader_workers, args.loader_only)
    else:
        tiny_language(args.steps)


if __name__ == "__main__":
    main()
