"""The street task's config (``task: street``): its sections beside the shared ones (``pipeline.config.Config``),
its execution knobs, and where its ``auto`` keys become values (``StreetConfig.resolved``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from models.street.config import ModelConfig
from pipeline.config import Config, DyceLoss, ExecutionConfig, Section, SplitData, TrainRun, _existing_path

SCENE_DESCRIPTIONS = "demo"  # caption.captions_file's keyword: a generated world's own scene descriptions


class DomainConfig(Section):
    name: str = "demo"  # a registered dataset (stages.street.datasets): demo, gta5, synthia, cityscapes, acdc, bdd100k
    root: Path | None = None  # None only for a generated dataset (demo: under <workdir>/data/demo)
    subsets: tuple[str, ...] | None = None  # a dataset's parts to read (ACDC's conditions: fog, night, rain, snow); None: all
    images: str | None = None  # folder: a glob of its images under the root ({split}: train and val), e.g. frames/{split}/*.jpg
    masks: str | None = None  # folder: each image's mask ({stem}, {name}, {split}, {dir}), e.g. masks/{split}/{stem}.png
    classes: Path | None = None  # folder: its class file (names, colours, mask values; README "Your own data")

    @model_validator(mode="after")
    def _root_exists(self) -> DomainConfig:
        for key in ("root", "classes"):
            path = getattr(self, key)
            if path is not None and not path.expanduser().exists():
                raise ValueError(f"{key}: path does not exist: {path}")
        return self


class DemoWorldConfig(Section):
    """Size of the procedural demo world (DESIGN §6)."""

    n_source: int = Field(160, ge=1)  # GTA5-layout images
    n_target_train: int = Field(160, ge=1)  # Cityscapes-layout train images
    n_target_val: int = Field(40, ge=1)
    height: int = Field(128, ge=32)
    width: int = Field(256, ge=32)
    seed: int = 0  # draws the scenes; the labelled split has its own seed (data.seed)
    gap: float = Field(1.0, ge=0)  # the target's style shift from the source (palette, texture, noise, blur): 1 default, 0 none
    lookalike: bool = False  # cars and trucks drawn alike, trucks in half the scenes: only a caption tells them apart


class DataConfig(SplitData):
    source: DomainConfig = DomainConfig(name="demo")
    target: DomainConfig = DomainConfig(name="demo")
    demo: DemoWorldConfig = DemoWorldConfig()


class CaptionConfig(Section):
    model: str = "tiny"  # any HF image-text-to-text id (Salesforce/blip2-opt-2.7b) or local directory; `tiny` (BLIP-2), `tiny-blip`, `tiny-llava`
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    max_new_tokens: int = Field(20, ge=1)
    prompt: str | None = None  # e.g. "a photo of"; None = unconditional captioning
    shard_size: int = Field(256, ge=1)  # images per output shard
    image_size: int = Field(224, ge=16)  # decoded images are resized to this square: BLIP-2's input size
    captions_file: Path | Literal["demo"] | None = None  # a user's captions (Parquet, JSONL or CSV: image_id or image, caption) instead of a captioner; `demo`: the demo world's scene descriptions

    @field_validator("captions_file")
    @classmethod
    def _captions_exist(cls, value: Path | str | None) -> Path | str | None:
        return value if value == SCENE_DESCRIPTIONS else _existing_path(value)


class TextConfig(Section):
    model: str = "tiny"  # open_clip model name (ViT-B-16) or `tiny`
    pretrained: str = "none"  # open_clip tag (openai), a local checkpoint file, or `none`
    shard_size: int = Field(1024, ge=1)


class LossConfig(DyceLoss):
    consistency_weight: float = Field(1.0, ge=0)  # λ_CT
    confidence_threshold: float = Field(0.95, ge=0, le=1)  # Th, Eq. 4
    class_thresholds: bool = True  # τ_c = a quantile of the class's confidences (not Th): rare classes teach too
    class_threshold_quantile: float = Field(0.95, ge=0, le=1)  # that quantile, per class and batch (0.95: no class collapses at 1000 its)
    class_threshold_cap: bool = False  # True: τ_c = min(Th, quantile); False: the quantile alone, so the same share of each class passes (measured better at 1000 its)
    consistency_omega: float = Field(0.5, ge=0, le=1)  # class balance of L_CT as DyCE's ω over the passed pixels; 1: plain CE (Eq. 4); 0.5 by docs/BENCHMARKS.md
    pasted_gt: Literal["ct", "sup", "auto"] = "auto"  # ground truth pasted by a cross-domain mix: in L_CT at confidence 1, class-balanced by consistency_omega with the pseudo-labels, or in L_sup, mined by DyCE; auto: pasted_gt_for
    ignore_index: int = 255


class TrainConfig(TrainRun):
    batch_size: int = Field(2, ge=1)  # per stream (source, labelled target, unlabelled target)
    crop_size: int = Field(512, ge=16)
    source_size: tuple[int, int] | None = None  # (width, height) resize before cropping; None = as is
    target_size: tuple[int, int] | None = None
    lr: float = Field(1e-4, gt=0)
    backbone_lr_mult: float = Field(0.1, ge=0)
    weight_decay: float = Field(2e-4, ge=0)
    lr_power: float = Field(0.9, ge=0)  # polynomial decay: lr·(1 - t/T)^0.9
    ema_alpha: float = Field(0.999, ge=0, le=1)  # α, Eq. 6
    mix: Literal["none", "cutmix", "classmix"] = "classmix"  # the strong view mixes each unlabelled image with a partner
    mix_from: Literal["unlabelled", "labelled", "both"] = "both"  # the partner: another unlabelled image (teacher's labels), a labelled one (ground truth; DACS), or either (IIDM; the default by docs/BENCHMARKS.md)
    cross_domain_ratio: float = Field(0.75, ge=0, le=1)  # with mix_from both: the share of each batch's strong views that are cross-domain (0.75 by docs/BENCHMARKS.md)
    colour_jitter: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = "auto"  # s of the strong view: brightness/contrast/saturation ±s, hue ±s/2, grayscale p 0.4·s; auto: colour_jitter_for (docs/BENCHMARKS.md)
    strong_blur: float = Field(0.5, ge=0, le=1)  # the strong view's Gaussian blur probability (UniMatch: 0.5)
    ema_warmup: bool = True  # α_t = min(1 − 1/(t+1), α): the teacher follows the student early (Mean Teacher)
    feature_perturbation: float = Field(0.5, ge=0, lt=1)  # p: also teach the weak views with encoder channels dropped at p (UniMatch); 0 = off
    warmup_iters: int = Field(0, ge=0)  # linear learning-rate warm-up (DAFormer: 1500)
    consistency: bool = True  # consistency training on the unlabelled target (CT, Eq. 4); weight: loss.consistency_weight
    amp: bool = True  # bf16 autocast on GPU


class EvalConfig(Section):
    model: Literal["teacher", "student"] = "teacher"
    sliding_window: bool = True  # crop_size windows, 2/3 overlap stride
    save_predictions: Annotated[int, Field(ge=0)] | Literal["all"] = 4  # val predictions kept: colour PNGs and labelId PNGs (predictions/labelIds/, for cityscapesscripts); a count or all


def colour_jitter_for(t: TrainConfig, labelled_target: int) -> float:
    """The strong view's colour jitter s: ``train.colour_jitter``, or with ``auto`` UniMatch's 0.5 when no target
    image is labelled (the jitter then stands in for the target's unseen colours: on the demo world at 0 labelled,
    0.2 gained +8.6 mIoU19 over no CT, 0.5 +25.0 to +25.7) and 0.2 when some are (their ground truth shows the
    target's colours; 0.5 moved look-alike classes onto each other, fence taken for terrain: docs/BENCHMARKS.md)."""
    if t.colour_jitter != "auto":
        return t.colour_jitter
    return 0.5 if labelled_target == 0 else 0.2


def pasted_gt_for(loss: LossConfig, labelled_target: int) -> str:
    """Where pasted ground truth is taught: ``loss.pasted_gt``, or with ``auto`` L_sup (``sup``) when no target
    image is labelled and L_CT (``ct``) when some are. On the demo world (docs/BENCHMARKS.md): with labelled
    target images, pasted pixels in L_sup (mined by DyCE with the labelled ones) widened the thin classes (pole
    −5 to −8 IoU at 20 labelled), in the class-balanced L_CT they did not (+1.8 mIoU19 at 20, +4.4 at 4, over
    three seeds); with none, L_CT (scaled by the share of pixels that pass) taught the source's pasted objects too
    weakly (+15.0 against +26.6 in L_sup, machine C)."""
    if loss.pasted_gt != "auto":
        return loss.pasted_gt
    return "sup" if labelled_target == 0 else "ct"


def uses_consistency(cfg: Config) -> bool:
    """Whether training has a consistency term: on, and with a weight."""
    return cfg.train.consistency and cfg.loss.consistency_weight > 0


class CaptionExecution(Section):
    batch_size: int = Field(16, ge=1)  # images per captioner call
    num_gpus: float = Field(0.0, ge=0)  # per replica (> 0: ``caption.dtype: auto`` is bf16)
    concurrency: int = Field(1, ge=1)  # replicas in the actor pool
    max_retries: int = Field(2, ge=0)  # re-runs of a shard whose replica died
    decode_cpus: float = Field(1.0, gt=0)  # CPUs per decode task (the tasks run on any node with CPUs)
    replica_cpus: float = Field(0.5, gt=0)  # CPUs reserved per replica: it only feeds the model (on its GPU)

    def requests(self) -> dict[str, dict[str, float]]:
        return {"caption decode task": {"CPU": self.decode_cpus},
                "caption replica": {"CPU": self.replica_cpus, "GPU": self.num_gpus}}


class TextExecution(Section):
    batch_size: int = Field(64, ge=1)
    num_gpus: float = Field(0.0, ge=0)
    concurrency: int = Field(1, ge=1)

    def requests(self) -> dict[str, dict[str, float]]:
        return {"text replica": {"CPU": 1.0, "GPU": self.num_gpus}}


class StreetExecution(ExecutionConfig):
    """The shared ``execution.train`` and ``execution.eval``, and the street task's language stages'."""

    caption: CaptionExecution = CaptionExecution()
    text: TextExecution = TextExecution()


class StreetConfig(Config):
    task: Literal["street"] = "street"
    data: DataConfig = DataConfig()
    caption: CaptionConfig = CaptionConfig()
    text: TextConfig = TextConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    execution: StreetExecution = StreetExecution()

    def resolved(self) -> StreetConfig:
        """``train.colour_jitter`` and ``loss.pasted_gt`` by whether any target image is labelled,
        ``caption.dtype`` by whether the captioner has a GPU (bf16) or not (fp32)."""
        labelled = labelled_any(self.data)
        dtype = self.caption.dtype if self.caption.dtype != "auto" else \
            "bfloat16" if self.execution.caption.num_gpus > 0 else "float32"
        return self.model_copy(update={
            "train": self.train.model_copy(update={"colour_jitter": colour_jitter_for(self.train, labelled)}),
            "loss": self.loss.model_copy(update={"pasted_gt": pasted_gt_for(self.loss, labelled)}),
            "caption": self.caption.model_copy(update={"dtype": dtype})})


def labelled_any(data: SplitData) -> int:
    """Whether the split will hold a labelled target image (1) or none (0): the split file's lines, or
    ``labelled_target`` (``all`` counts as some)."""
    if data.split_file is not None:
        from stages.index import split_file_lines

        return int(bool(split_file_lines(data.split_file)))
    return int(data.labelled_target == "all" or data.labelled_target > 0)
