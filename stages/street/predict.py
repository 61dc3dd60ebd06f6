"""`semidavil predict`: a trained model on a user's own images, with their language computed on the fly.

Each image is captioned and its caption embedded with the captioner and text encoder of the run that made
the checkpoint (its config travels in the checkpoint's header; ``--set`` overrides it, e.g. a local
``caption.model`` directory), then the teacher (or the student) segments it by sliding windows, as evaluate
does. For each image: ``<name>_pred.png`` (the class set's palette) and ``<name>_overlay.png``, at the input size,
and with ``--format dataset`` the prediction in the target dataset's own format (Cityscapes: labelIds; a folder:
its masks' values or colours), named as the dataset names it, in ``masks/``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, config_from_mapping
from pipeline.progress import console, progress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def expand_images(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, recursively) and globs, in order, each once; ValueError naming an input
    that matches nothing."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            raise ValueError(f"{item}: no such image, folder or glob match")
        found += [p for p in matches if p not in found]
    return found


def inference_config(meta: dict[str, Any], overrides: list[str], source: Path) -> Config:
    """The config the checkpoint was trained with (the sections inference needs), with ``overrides``."""
    if "config" not in meta:
        raise ValueError(f"{source}: the checkpoint carries no config (written before predict existed); "
                         "train again, or export it from a run directory")
    return config_from_mapping(meta["config"], overrides, f"{source} (its config)", warn=False)  # older: old spellings


@dataclass
class Predictor:
    """The trained segmentor and the language models that describe a new image to it."""

    cfg: Config
    model: Any  # models.street.segmentor.Segmentor, eval mode
    captioner: Any  # models.street.captioner.Captioner
    text: Any  # models.street.text.TextEncoder
    device: Any  # torch.device
    num_classes: int  # the checkpoint's
    classes: Any = None  # stages.tasks.ClassSet: the names and colours of the checkpoint's classes
    labels: Any = None  # the target dataset's label codec: predictions in its format

    def language(self, images: list[np.ndarray]) -> list[tuple[Any, Any]]:
        """Each image's caption as F_L (1, max_tokens, c) with its mask, as the embed_text store would hold
        it (float16, start to end token)."""
        import torch

        from stages.street.images import resize_image
        from stages.street.language import caption_length

        cap, m = self.cfg.caption, self.cfg.model
        small = [resize_image(im, (cap.image_size, cap.image_size)) for im in images]  # as the caption stage
        captions = self.captioner(small, cap.prompt, cap.max_new_tokens)
        emb, n_tokens, _ = self.text.caption_embeddings(captions)
        out = []
        for e, n in zip(emb, n_tokens, strict=True):  # a new image has no other image to borrow from:
            n = min(caption_length(int(n), m.dlg_captions), m.max_tokens)  # `shuffled` reads its own caption
            text = torch.zeros(1, m.max_tokens, e.shape[-1], device=self.device)
            mask = torch.zeros(1, m.max_tokens, dtype=torch.bool, device=self.device)
            text[0, :n] = torch.from_numpy(e[:n].astype(np.float32)).to(self.device)
            mask[0, :n] = True
            out.append((text, mask))
        return out

    def segment(self, image: np.ndarray, text: Any, mask: Any) -> np.ndarray:
        """(H, W) uint8 trainIds at the image's own size, as evaluate predicts."""
        from models.inference import label_map
        from stages.street.images import resize_image

        t = self.cfg.train
        x = resize_image(image, t.target_size) if t.target_size is not None else image  # as training saw it
        return label_map(self.model, x, text, mask, t.crop_size, self.num_classes, self.cfg.eval.sliding_window,
                         image.shape[:2])


def load_predictor(path: Path, which: str | None, overrides: list[str], device: Any = None) -> Predictor:
    from models.device import pick_device
    from models.street.captioner import load_captioner
    from models.street.text import load_text_encoder
    from stages.checkpoint import load_model, read_meta
    from stages.street.datasets import from_prediction_format

    device = device or pick_device()
    meta = read_meta(path)
    cfg = inference_config(meta, overrides, path)
    model = load_model(path, cfg.model, which, device)
    captioner = load_captioner(cfg.caption.model, cfg.caption.dtype, device)
    classes, codec = from_prediction_format(meta.get("prediction_format"))
    return Predictor(cfg, model, captioner, load_text_encoder(cfg.text.model, cfg.text.pretrained, device), device,
                     int(meta["num_classes"]), classes, codec)


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)


def output_names(paths: list[Path]) -> list[str]:
    """A file stem per image, made unique with its folder names where stems repeat."""
    names, seen = [], set()
    for p in paths:
        name, parents = p.stem, list(p.parent.parts)
        while name in seen and parents:
            name = f"{parents.pop()}__{name}"
        names.append(name)
        seen.add(name)
    return names


@dataclass
class Predicted:
    written: list[Path] = field(default_factory=list)  # the prediction PNGs
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (image, why)


FORMATS = ("colour", "dataset", "labelids")  # labelids: the name --format dataset had for Cityscapes' labelIds


def formatted(predictor: Predictor, name: str, pred: np.ndarray, fmt: str) -> list[tuple[Path, np.ndarray]]:
    """The prediction in the format asked: ``dataset`` (the target's own, named as it names files, in masks/) or
    ``labelids`` (Cityscapes labelIds in labelIds/, as the benchmark server takes them; 19-class checkpoints)."""
    from stages.street.datasets import CITYSCAPES, label_ids_name, to_label_ids

    if fmt == "dataset":
        return [(Path("masks") / predictor.labels.name(name), predictor.labels.encode(pred))]
    if fmt == "labelids":
        if predictor.classes.names != CITYSCAPES.names:
            raise ValueError(f"--format labelids: the checkpoint's classes are not Cityscapes' 19 "
                             f"({len(predictor.classes)} classes); use --format dataset")
        return [(Path("labelIds") / label_ids_name(name), to_label_ids(pred))]
    return []


def check_format(predictor: Predictor, fmt: str) -> None:
    """ValueError, before any image is read, for a format the checkpoint cannot be written in."""
    formatted(predictor, "check", np.zeros((1, 1), np.uint8), fmt)


def write_outputs(out_dir: Path, name: str, image: np.ndarray, pred: np.ndarray, predictor: Predictor,
                  fmt: str = "colour") -> Path:
    from PIL import Image

    from pipeline.store import atomic_path

    colours = predictor.classes.colourise(pred)
    outputs = [(out_dir / f"{name}_pred.png", colours), (out_dir / f"{name}_overlay.png", overlay(image, colours))]
    outputs += [(out_dir / path, array) for path, array in formatted(predictor, name, pred, fmt)]
    for path, array in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
    return out_dir / f"{name}_pred.png"


def read_images(paths: list[Path], result: Predicted) -> list[tuple[Path, np.ndarray]]:
    """The images that decode; the others are recorded in ``result.skipped`` with the reason."""
    from stages.street.images import read_rgb

    good = []
    for p in paths:
        try:
            good.append((p, read_rgb(p)))
        except ValueError as err:
            result.skipped.append((p, str(err)))
    return good


def predict_images(predictor: Predictor, paths: list[Path], out_dir: Path, batch_size: int = 8,
                   fmt: str = "colour") -> Predicted:
    """Caption, embed and segment ``paths`` in batches; write a prediction and an overlay per image (and in
    ``fmt``, ``formatted``'s, the prediction in the dataset's format)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names, result = dict(zip(paths, output_names(paths), strict=True)), Predicted()
    with progress("predict", total=len(paths), unit="images") as advance:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images = read_images(chunk, result)
            texts = predictor.language([im for _, im in images]) if images else []
            for (p, image), (text, mask) in zip(images, texts, strict=True):
                result.written.append(write_outputs(out_dir, names[p], image, predictor.segment(image, text, mask),
                                                    predictor, fmt))
            advance(len(chunk))
    for p, why in result.skipped:
        console.print(f"[yellow]skipped[/] {p}: {why}", soft_wrap=True)  # the whole path, however long
    return result
