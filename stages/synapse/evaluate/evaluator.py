"""The volumetric evaluation's work: sliding-window inference, the metrics, the saved predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import import_plugins
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import write_json, write_parquet
from stages.checkpoint import checkpoint_step
from stages.evaluation import Held, evaluate_on_ray
from stages.synapse import SYNAPSE
from stages.synapse.datasets import volume_dataset
from stages.synapse.inference import predict_case
from stages.synapse.metrics import case_scores, summarise
from stages.trained import BEST, CHECKPOINT, read_setup

ORGANS = SYNAPSE.subsets["organs"]


def load_method(checkpoint: Path, device: torch.device):
    from models.volumes.methods import spec
    from stages.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, device)
    import_plugins(tuple(ckpt.meta.get("plugins", ())))  # a method registered by a plugin module
    v = ckpt.meta["config"]["volumes"]
    method = spec(v["method"]).build(ckpt.meta["num_classes"], v)
    for name, net in {**method.networks, **method.frozen}.items():
        net.load_state_dict(ckpt.networks[name])
        net.to(device).eval()
    return method


def best_slice(label: np.ndarray) -> int:
    """The axial slice with the most organ voxels (the report shows it)."""
    return int(np.argmax((label > 0).reshape(label.shape[0], -1).sum(1)))


class CaseEvaluator(Held):
    """Holds the trained method where it runs (``stages.evaluation``): each case predicted, scored, its prediction
    written; the scores and example slices of a chunk of cases."""

    def __init__(self, checkpoint: str, ingest_dir: str, patch: tuple[int, int, int], stride: tuple[int, int],
                 out_dir: str, save_slices: int, use_gpu: bool):
        self.hold(torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu"))
        self.method = load_method(Path(checkpoint), self.device)
        self.ingest_dir, self.patch, self.stride = Path(ingest_dir), patch, stride
        self.out_dir, self.save_slices = Path(out_dir), save_slices

    def __call__(self, cases: list[dict[str, str]], first: int) -> dict[str, Any]:
        """Each case ({"case", "source": its original image file}) predicted in fp32 (as DHC evaluates), scored on
        the evaluated grid (ASD in voxels, and in mm with HD95 where the source has a voxel size), and written back
        on its original grid with its affine."""
        from stages.synapse.cases import evaluated_spacing, geometry, load_case, write_prediction

        per_case, examples = {}, []
        for k, item in enumerate(cases, first):
            case, geo = item["case"], geometry(Path(item["source"]))
            image, label = (np.asarray(a) for a in load_case(self.ingest_dir, case))
            pred = predict_case(self.method.predict, image, self.patch, self.stride, len(SYNAPSE), self.device)
            per_case[case] = case_scores(pred, label, ORGANS, evaluated_spacing(geo, pred.shape))
            write_prediction(pred, geo, self.out_dir / "predictions" / f"{case}.nii.gz")
            if k < self.save_slices:
                z = best_slice(label)
                examples.append({"case": case, "slice": z, "image": image[z].tolist(), "label": label[z].tolist(),
                                 "prediction": pred[z].tolist()})
        return {"per_case": per_case, "examples": examples}


def save_examples(examples: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """Each example slice as three PNGs (image | ground truth | prediction) under ``slices/``."""
    from PIL import Image

    from pipeline.store import atomic_path

    saved = []
    for e in examples:
        files = {}
        for key in ("image", "label", "prediction"):
            a = np.array(e[key])
            rgb = np.repeat((255 * a).clip(0, 255).astype(np.uint8)[..., None], 3, -1) if key == "image" \
                else SYNAPSE.colourise(a.astype(np.int64))
            path = out_dir / "slices" / f"{e['case']}_{key}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Image.fromarray(rgb).save(tmp, format="PNG")
            files[key] = str(path)
        saved.append({"case": e["case"], "slice": e["slice"], **files})
    return saved


def chosen_checkpoint(train_dir: Path, choice: str) -> tuple[Path, str]:
    """The checkpoint ``volumes.checkpoint`` asks for: ``best`` (the best mean DSC on the eval cases, DHC's
    ``best_model.pth``) or ``last``; a run without model selection (``volumes.eval_every: 0``) has only the last."""
    if choice == "best" and (train_dir / BEST).exists():
        return train_dir / BEST, "best"
    return train_dir / CHECKPOINT, "last"


def evaluate(ctx: StageContext) -> StageResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    v, train_dir = ctx.cfg.volumes, ctx.inputs["train"]
    rows = pq.read_table(ctx.inputs["ingest"] / "index.parquet", columns=["image_id", "split", "image_path"]).to_pylist()
    root = volume_dataset(v.data.name).root(ctx.cfg, ctx.workdir)
    cases = sorted(({"case": r["image_id"], "source": str(root / r["image_path"])} for r in rows if r["split"] == "test"),
                   key=lambda c: c["case"])
    if not cases:
        raise StageError(f"{ctx.inputs['ingest'] / 'index.parquet'}: no test case to evaluate")
    per_case, examples = {}, []

    def fold(part: dict[str, Any]) -> None:
        per_case.update(part["per_case"])
        examples.extend(part["examples"])

    checkpoint, which = chosen_checkpoint(train_dir, v.checkpoint)
    args = (str(checkpoint), str(ctx.inputs["ingest"]), tuple(v.patch), tuple(v.stride), str(ctx.out_dir),
            v.save_slices, ctx.cfg.execution.eval.num_gpus > 0)
    evaluate_on_ray(ctx, CaseEvaluator, args, cases, 1, "cases", fold)
    per_organ, mean_dsc, mean_asd = summarise(per_case, ORGANS)
    names = SYNAPSE.names
    metrics = {"task": "synapse", "cases": len(cases), "mean_dsc": mean_dsc, "mean_asd": mean_asd,
               "checkpoint": which, "checkpoint_step": checkpoint_step(checkpoint),
               "per_class": {names[o]: score._asdict() for o, score in per_organ.items()}}
    write_json(metrics, ctx.out_dir / "metrics.json")
    write_parquet(pa.Table.from_pylist([{"case": c, "organ": names[o], **score._asdict()}
                                        for c, scores in per_case.items() for o, score in scores.items()]),
                  ctx.out_dir / "per_case.parquet")
    setup = read_setup(train_dir)
    write_json({**setup, "train_dir": str(train_dir), "checkpoint": which,
                "examples": save_examples(examples, ctx.out_dir)},
               ctx.out_dir / "run.json")
    return StageResult(len(cases), {"mean_dsc": mean_dsc, "mean_asd": mean_asd})
