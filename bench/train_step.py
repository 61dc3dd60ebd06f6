"""Trainer step time with cached language embeddings vs. captioning and embedding inside the step.

The public reference code runs the captioner and the text encoder inside every training step; this pipeline
reads F_L from the embed_text store. Both variants run the same train_step on the demo world with the tiny
models (CPU), or with --full the full-size architectures (ViT-B/16 student, BLIP-2 OPT-2.7b, CLIP text
tower; random weights) where a GPU is present.

Usage: uv run python bench/train_step.py [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from models.captioner import default_device, load_captioner
from models.losses import build_supervised_loss
from models.segmentor import build_segmentor, make_teacher
from models.text import end_positions, load_text_encoder
from pipeline.config import load_config
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from stages.embed_text import TextEmbeddingStore
from stages.ingest import INDEX_FILE
from stages.train import NUM_CLASSES, Batch, build_streams, next_batch, train_step, trim


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = default_device()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"paths.workdir={tmp}", "data.demo.n_source=64", "data.demo.n_target_train=64",
                                 "data.demo.n_target_val=4"])
        run_pipeline(cfg, ["ingest", "caption", "embed_text"])
        fps, workdir = fingerprints(cfg), Path(tmp)
        store = TextEmbeddingStore(stage_dir(workdir, "embed_text", fps["embed_text"]))
        streams = build_streams(stage_dir(workdir, "ingest", fps["ingest"]) / INDEX_FILE, cfg, seed=0)
        student = build_segmentor(cfg.model, store.dim, NUM_CLASSES).to(device)
        teacher = make_teacher(student)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
        loss_fn = build_supervised_loss(True, 0.2, 0.5, 255)
        in_step = InStepLanguage(cfg, device)

        def step(language: str) -> None:
            batch = next_batch(streams, store, cfg.model.max_tokens, device)
            if language == "in-step":  # recompute what the store holds
                batch = Batch(batch.labelled, batch.labels, in_step(batch.labelled), batch.unlabelled,
                              in_step(batch.unlabelled))
            loss, _ = train_step(batch, student, teacher, loss_fn, cfg, amp=False)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        results = {}
        for language in ("cached", "in-step", "cached"):
            step(language)  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(language)
            results[language] = (time.perf_counter() - t0) / args.steps
        n = cfg.train.batch_size
        print(f"tiny models on {device}, {3 * n} images per step ({cfg.train.crop_size}px crops), "
              f"{torch.get_num_threads()} threads:")
        print(f"  cached F_L (embed_text store): {1000 * results['cached']:.0f} ms/step")
        print(f"  captions + F_L in the step:    {1000 * results['in-step']:.0f} ms/step "
              f"({results['in-step'] / results['cached']:.2f}x)")


if __name__ == "__main__":
    main()
