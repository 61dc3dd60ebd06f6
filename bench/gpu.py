"""Every GPU figure of today's code from one command, on one GPU in a few minutes: the paper's sizes with random
weights (ViT-B/16 student + EMA teacher, DLG 256, the multi-level decoder, 2+2+2 crops of 512², the default
consistency training: ClassMix, class thresholds, feature perturbation; BLIP-2 OPT-2.7b; CLIP ViT-B/16's text
tower), on real-size PNGs it writes. One JSON line per figure, printed as soon as it is measured, so a run cut
short still reports what it measured:

- ``train_step_synthetic`` / ``train_step_loader``: s/step with a batch already on the device, and with the real
  loader (``--loader-workers`` processes per stream) from 1914x1052 / 2048x1024 PNGs;
- ``step_part``: teacher forward (pseudo-labels), the strong view's mixing, student forward + backward, AdamW,
  EMA update; ``peak_memory``: the training step's peak GPU memory;
- ``dyce_over_ce``: DyCE's forward + backward time over plain CE's on (8, 19, 512, 512) logits;
- ``caption``: BLIP-2 OPT-2.7b (bf16, 20 new tokens) images/s through ``CaptionBatch`` (the caption stage's
  replica) and through raw ``generate``, at each ``--caption-batches``; ``caption_decode``: the CPU part
  (2048x1024 PNG -> 224², OpenCV) per core;
- ``text_tower``: CLIP ViT-B/16 text tower captions/s; ``evaluate``: 2048x1024 frames/s with sliding windows.

It needs torch, transformers, open_clip, pyarrow, pydantic and OpenCV; no Ray, no network (DuckDB is imported
by the stage modules, not used). ``--tiny`` runs the same path with the tiny models, small frames and few steps,
on CPU (a test runs it).

Usage: python bench/gpu.py [--tiny] [--steps 20] [--loader-workers 4] [--caption-batches 64,128,256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file, from anywhere

from models.ema import ema_alpha, ema_update  # noqa: E402
from models.losses import CrossEntropyLoss, DyCELoss, build_supervised_loss  # noqa: E402
from models.street.preprocess import normalize  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from stages.street import demo_world  # noqa: E402
from stages.street.datasets import TRAIN_TO_CITYSCAPES_ID  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"full": {"gta5": (1052, 1914), "cityscapes": (1024, 2048)}, "tiny": {"gta5": (140, 256), "cityscapes": (128, 256)}}


def emit(figure: str, **values) -> None:
    print(json.dumps({"figure": figure, **values}), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def timed(device: torch.device, out: dict, key: str):
    sync(device)
    t0 = time.perf_counter()
    yield
    sync(device)
    out[key] = out.get(key, 0.0) + time.perf_counter() - t0


def write_world(root: Path, n: int, sizes: dict) -> list[dict]:
    """n GTA5-layout and n Cityscapes-layout frames (demo scenes at real size) as training-set rows."""
    rng, rows = np.random.default_rng(0), []
    for i in range(n):
        for dataset, style, domain in (("gta5", "source", "source"), ("cityscapes", "target", "target")):
            h, w = sizes[dataset]
            labels = demo_world.render_labels(rng, h, w)
            image, label = root / dataset / f"{i:05d}.png", root / dataset / f"{i:05d}_labelIds.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(demo_world.render_image(rng, labels, style)).save(image)
            Image.fromarray(TRAIN_TO_CITYSCAPES_ID[labels]).save(label)
            rows.append({"image_id": f"{dataset}/train/{i:05d}", "dataset": dataset, "domain": domain,
                         "split": "train", "image_path": str(image), "label_path": str(label)})
    return rows




def training_config(tiny: bool, loader_workers: int):
    if tiny:
        return load_config(None, ["train.batch_size=2", f"execution.train.loader_workers={loader_workers}"])
    return load_config(ROOT / "configs" / "gta5_cityscapes.yaml", [
        "data.source.root=/", "data.target.root=/", "model.vision_pretrained=none",
        f"execution.train.loader_workers={loader_workers}"])


def text_store(directory: Path, ids: list[str], dim: int):
    import pyarrow as pa

    from pipeline.store import write_table
    from stages.street.embed_text import embedding_table
    from stages.street.language import TextEmbeddingStore

    n = 16  # tokens per caption: a 20-token BLIP-2 caption is ~16 CLIP tokens
    emb = np.random.default_rng(0).standard_normal((len(ids), n, dim)).astype(np.float16)
    table = embedding_table(pa.array(ids), pa.array([0] * len(ids), pa.int32()), ["a street"] * len(ids), emb,
                            np.full(len(ids), n), [False] * len(ids), "bench")
    write_table(table.drop_columns(["shard"]), directory / "shard-00000.arrow")
    return TextEmbeddingStore(directory)


def time_steps(name: str, next_fn, plain, steps: int, device: torch.device, t, loader_workers) -> None:
    """Seconds per training step of ``plain`` on ``next_fn``'s batches, after a warm-up of 2 (and the peak
    memory of the synthetic one on a GPU)."""
    for k in range(2):
        plain(next_fn(), k)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    for k in range(steps):
        plain(next_fn(), k)
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    emit(name, seconds_per_step=round(seconds, 4), images_per_step=3 * t.batch_size, crop=t.crop_size,
         loader_workers_per_stream=loader_workers, samples_per_s=round(3 * t.batch_size / seconds, 1))
    if name == "train_step_synthetic" and device.type == "cuda":
        emit("peak_memory", gib=round(torch.cuda.max_memory_allocated() / 2**30, 2), what="training step")


def train_figures(cfg, rows: list[dict], store, device: torch.device, steps: int) -> None:
    import stages.street.train.loop as loop

    t = cfg.train
    source = [r for r in rows if r["domain"] == "source"]
    target = [r for r in rows if r["domain"] == "target"]
    half = max(len(target) // 2, 1)
    data = loop.TrainingSet(source, target[:half], [{**r, "label_path": None} for r in target[half:]])
    learner = loop.build_learner(cfg, store.dim, device)
    sup = build_supervised_loss(True, cfg.loss.hard_ratio, cfg.loss.omega, 255)
    amp = device.type == "cuda"
    streams = loop.build_streams(data, t, cfg.execution.train, seed=0, start=0, pin=amp)
    fixed = loop.next_batch(streams, store, cfg.model.max_tokens, device)
    parts: dict[str, float] = {}

    def step(batch, k: int, record: bool) -> None:
        out = parts if record else {}
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
        with timed(device, out, "teacher_forward"), torch.no_grad(), autocast:
            learner.teacher(normalize(batch.unlabelled), *batch.unlabelled_text)
        with timed(device, out, "teacher_forward_and_mixing"):
            loop.strong_view(batch, learner.teacher, cfg, autocast)
        with timed(device, out, "student_forward_backward_and_losses"):
            loss, _ = loop.train_step(batch, learner.student, learner.teacher, sup, cfg, amp)
            learner.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with timed(device, out, "adamw"):
            learner.optimizer.step()
        with timed(device, out, "ema"):
            ema_update(learner.teacher, learner.student, ema_alpha(k, t.ema_alpha, t.ema_warmup))

    def plain(batch, k: int) -> None:  # the loop's own step: what a training iteration costs
        loss, _ = loop.train_step(batch, learner.student, learner.teacher, sup, cfg, amp)
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()
        ema_update(learner.teacher, learner.student, ema_alpha(k, t.ema_alpha, t.ema_warmup))

    for name, next_fn in (("train_step_synthetic", lambda: fixed),
                          ("train_step_loader", lambda: loop.next_batch(streams, store, cfg.model.max_tokens, device))):
        time_steps(name, next_fn, plain, steps, device, t, cfg.execution.train.loader_workers)
    for k in range(steps):
        step(fixed, k, record=True)
    teacher, view = parts.pop("teacher_forward"), parts.pop("teacher_forward_and_mixing")
    student = parts.pop("student_forward_backward_and_losses") - view  # train_step runs the teacher and mix too
    for part, seconds in {"teacher_forward": teacher, "mixing": view - teacher,
                          "student_forward_backward_and_losses": student, **parts}.items():
        emit("step_part", part=part, seconds=round(seconds / steps, 4))


def dyce_figure(device: torch.device, shape: tuple[int, ...]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loss_cost import time_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g).to(device)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    target[:, :16] = 255
    target = target.to(device)
    ce = time_loss(CrossEntropyLoss(), logits, target, 5)
    dyce = time_loss(DyCELoss(hard_ratio=0.2, omega=0.5), logits, target, 5)
    emit("dyce_over_ce", ratio=round(dyce / ce, 2), dyce_ms=round(1000 * dyce, 2), ce_ms=round(1000 * ce, 2),
         logits=list(shape))


def images_per_s(run, images: int, repeats: int, device: torch.device) -> float:
    """Images per second of ``run()`` (``images`` a call) over ``repeats`` calls after one warm-up."""
    run()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    sync(device)
    return images * repeats / (time.perf_counter() - t0)


def caption_figures(model: str, rows: list[dict], device: torch.device, batches: list[int], repeats: int) -> None:
    import pyarrow as pa

    from stages.street.caption import CaptionBatch, decode_batch

    paths = [r["image_path"] for r in rows if r["dataset"] == "cityscapes"]
    n = max(len(paths), 4)
    table = pa.table({"image_id": [str(i) for i in range(n)], "image_path": [paths[i % len(paths)] for i in range(n)]})
    t0 = time.perf_counter()
    decoded = decode_batch(table, 224)
    emit("caption_decode", images_per_s_per_core=round(n / (time.perf_counter() - t0), 1),
         what=f"{SIZES_NOW['cityscapes'][1]}x{SIZES_NOW['cityscapes'][0]} PNG -> 224x224, OpenCV, one process")
    replica = CaptionBatch(model, "auto", None, 20, 1 if device.type == "cuda" else 0, 224)
    pixels = decoded.column("pixels").to_pylist()
    for b in batches:
        batch = pa.table({"image_id": [str(i) for i in range(b)], "shard": pa.array([0] * b, pa.int32()),
                          "pixels": pa.array([pixels[i % n] for i in range(b)], pa.binary()),
                          "error": pa.nulls(b, pa.string())})
        images = [np.frombuffer(p, np.uint8).reshape(224, 224, 3) for p in batch.column("pixels").to_pylist()]
        inputs = replica.captioner.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device, replica.captioner.dtype)
        rates = {"raw_generate": images_per_s(partial(replica.captioner.model.generate, pixel_values=pixel_values,
                                                      max_new_tokens=20, **replica.captioner.generation),
                                              b, repeats, device),
                 "caption_batch": images_per_s(partial(replica, batch), b, repeats, device)}
        emit("caption", batch=b, images_per_s_caption_batch=round(rates["caption_batch"], 1),
             images_per_s_raw_generate=round(rates["raw_generate"], 1),
             udf_over_raw=round(rates["caption_batch"] / rates["raw_generate"], 3), new_tokens=20)
    del replica
    if device.type == "cuda":
        torch.cuda.empty_cache()


def text_figure(model: str, device: torch.device, batch: int, repeats: int) -> None:
    from models.street.text import load_text_encoder

    encoder = load_text_encoder(model, "none", device)
    captions = [f"a city street with {k % 7 + 1} cars parked near tall buildings and a bus under a grey sky"
                for k in range(batch)]
    encoder.caption_embeddings(captions)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        encoder.caption_embeddings(captions)
    sync(device)
    emit("text_tower", captions_per_s=round(batch * repeats / (time.perf_counter() - t0), 1), batch=batch)


def evaluate_figure(cfg, rows: list[dict], store, device: torch.device, repeats: int) -> None:
    from models.inference import label_map
    from models.street.segmentor import build_segmentor
    from stages.street.images import read_rgb, resize_image

    model = build_segmentor(cfg.model, store.dim, 19).to(device).eval()
    frames = [r for r in rows if r["dataset"] == "cityscapes"]
    text, mask = store.batch([frames[0]["image_id"]], cfg.model.max_tokens)
    text, mask = text.to(device), mask.to(device)
    t = cfg.train

    def one(row) -> None:  # as evaluate: resized to the training's target size, sliding windows, label resolution
        image = read_rgb(row["image_path"])
        x = resize_image(image, t.target_size) if t.target_size else image
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            label_map(model, x, text, mask, t.crop_size, 19, True, image.shape[:2])

    one(frames[0])
    sync(device)
    t0 = time.perf_counter()
    for k in range(repeats):
        one(frames[k % len(frames)])
    sync(device)
    h, w = SIZES_NOW["cityscapes"]
    emit("evaluate", frames_per_s=round(repeats / (time.perf_counter() - t0), 2), frame=f"{w}x{h}",
         sliding_window=t.crop_size, resized_to=list(t.target_size) if t.target_size else None)


SIZES_NOW: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="tiny models, small frames, CPU: the same path")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=8, help="frames per domain to write")
    parser.add_argument("--loader-workers", type=int, default=4)
    parser.add_argument("--caption-batches", default="64,128,256")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    SIZES_NOW.update(SIZES["tiny" if args.tiny else "full"])
    emit("machine", device=torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
         torch=torch.__version__, tiny=args.tiny)
    steps = 2 if args.tiny else args.steps
    batches = [2, 4] if args.tiny else [int(b) for b in args.caption_batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = write_world(Path(tmp) / "data", 2 if args.tiny else args.images, SIZES_NOW)
        emit("setup", seconds_writing_pngs=round(time.perf_counter() - t0, 1), frames=len(rows))
        cfg = training_config(args.tiny, 0 if args.tiny else args.loader_workers)
        store = text_store(Path(tmp), [r["image_id"] for r in rows], 64 if args.tiny else 512)
        jobs = [("train", lambda: train_figures(cfg, rows, store, device, steps)),
                ("dyce", lambda: dyce_figure(device, (2, 19, 64, 64) if args.tiny else (8, 19, 512, 512))),
                ("caption", lambda: caption_figures("tiny" if args.tiny else "random-blip2-opt-2.7b", rows, device,
                                                    batches, 1 if args.tiny else 3)),
                ("text", lambda: text_figure("tiny" if args.tiny else "ViT-B-16", device, 8 if args.tiny else 1024,
                                             2 if args.tiny else 10)),
                ("evaluate", lambda: evaluate_figure(cfg, rows, store, device, 2 if args.tiny else 10))]
        for name, job in jobs:
            try:
                job()
            except Exception as err:  # one figure failing must not cost the others
                emit("error", job=name, error=f"{type(err).__name__}: {err}"[:500])


if __name__ == "__main__":
    main()
