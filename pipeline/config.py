"""One typed config tree, one slice per concern (STYLE: "One typed config tree").

Every section is a frozen pydantic model with ``extra="forbid"``: an unknown key or a wrong type is an
error that names the key. ``load_config`` reads a YAML file, applies ``--set section.key=value``
overrides and raises :class:`ConfigError` with a one-line message naming the file and the key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.street.config import ModelConfig
from models.volumes import methods

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


SCENE_DESCRIPTIONS = "demo"  # caption.captions_file's keyword: a generated world's own scene descriptions


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _existing_path(value: Path | None) -> Path | None:
    if value is not None and not Path(value).expanduser().exists():
        raise ValueError(f"path does not exist: {value}")
    return None if value is None else Path(value).expanduser()


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


class DataConfig(Section):
    source: DomainConfig = DomainConfig(name="demo")
    target: DomainConfig = DomainConfig(name="demo")
    labelled_target: int | Literal["all"] = 20  # N labelled Cityscapes train images
    split_file: Path | None = None  # a user's list of labelled images; wins over labelled_target
    seed: int = 0  # chooses the labelled split (N from the target train images)
    strict: bool = False  # fail ingest on any rejected file instead of skipping it
    demo: DemoWorldConfig = DemoWorldConfig()

    _check_split = field_validator("split_file")(_existing_path)

    @model_validator(mode="after")
    def _labelled(self) -> DataConfig:  # which datasets may play which role: ingest's check_config (the registry)
        if isinstance(self.labelled_target, int) and self.labelled_target < 0:
            raise ValueError("labelled_target: must be >= 0 or 'all'")
        return self


class CaptionConfig(Section):
    model: str = "tiny"  # any HF image-text-to-text id (Salesforce/blip2-opt-2.7b) or local directory; `tiny` (BLIP-2), `tiny-blip`, `tiny-llava`
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(20, ge=1)
    prompt: str | None = None  # e.g. "a photo of"; None = unconditional captioning
    num_gpus: float = Field(0.0, ge=0)  # per replica
    concurrency: int = Field(1, ge=1)  # replicas in the actor pool
    shard_size: int = Field(256, ge=1)  # images per output shard
    max_retries: int = Field(2, ge=0)  # re-runs of a shard whose replica died
    image_size: int = Field(224, ge=16)  # decoded images are resized to this square: BLIP-2's input size
    decode_cpus: float = Field(1.0, gt=0)  # CPUs per decode task (the tasks run on any node with CPUs)
    replica_cpus: float = Field(0.5, gt=0)  # CPUs reserved per replica: it only feeds the model (on its GPU)
    captions_file: Path | Literal["demo"] | None = None  # a user's captions (Parquet, JSONL or CSV: image_id or image, caption) instead of a captioner; `demo`: the demo world's scene descriptions

    @field_validator("captions_file")
    @classmethod
    def _captions_exist(cls, value: Path | str | None) -> Path | str | None:
        return value if value == SCENE_DESCRIPTIONS else _existing_path(value)


class TextConfig(Section):
    model: str = "tiny"  # open_clip model name (ViT-B-16) or `tiny`
    pretrained: str = "none"  # open_clip tag (openai), a local checkpoint file, or `none`
    batch_size: int = Field(64, ge=1)
    shard_size: int = Field(1024, ge=1)
    num_gpus: float = Field(0.0, ge=0)
    concurrency: int = Field(1, ge=1)


class LossConfig(Section):
    dyce: bool = True  # False: plain CE (the ablation baseline)
    hard_ratio: float = Field(0.2, gt=0, le=1)  # h: share of hardest pixels mined, Eq. 9
    omega: float = Field(0.5, ge=0, le=1)  # ω, Eq. 9
    consistency_weight: float = Field(1.0, ge=0)  # λ_CT
    confidence_threshold: float = Field(0.95, ge=0, le=1)  # Th, Eq. 4
    class_thresholds: bool = True  # τ_c = a quantile of the class's confidences (not Th): rare classes teach too
    class_threshold_quantile: float = Field(0.95, ge=0, le=1)  # that quantile, per class and batch (0.95: no class collapses at 1000 its)
    class_threshold_cap: bool = False  # True: τ_c = min(Th, quantile); False: the quantile alone, so the same share of each class passes (measured better at 1000 its)
    consistency_omega: float = Field(0.5, ge=0, le=1)  # class balance of L_CT as DyCE's ω over the passed pixels; 1: plain CE (Eq. 4); 0.5 by docs/BENCHMARKS.md
    pasted_gt: Literal["ct", "sup", "auto"] = "auto"  # ground truth pasted by a cross-domain mix: in L_CT at confidence 1, class-balanced by consistency_omega with the pseudo-labels, or in L_sup, mined by DyCE; auto: pasted_gt_for
    ignore_index: int = 255


class TrainConfig(Section):
    iterations: int = Field(40_000, ge=1)
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
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    workers: int = Field(1, ge=1)  # Ray Train workers (DDP ranks)
    cpus_per_worker: int = Field(1, ge=1)
    use_gpu: bool | Literal["auto"] = "auto"
    amp: bool = True  # bf16 autocast on GPU
    loader_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # DataLoader processes per stream; auto: (cpus_per_worker - 1) / streams
    max_failures: int = Field(3, ge=0)  # Ray Train restarts of a failed worker group, each from the last checkpoint
    seed: int = 0


class EvalConfig(Section):
    model: Literal["teacher", "student"] = "teacher"
    batch_size: int = Field(1, ge=1)
    sliding_window: bool = True  # crop_size windows, 2/3 overlap stride
    save_predictions: Annotated[int, Field(ge=0)] | Literal["all"] = 4  # val predictions kept: colour PNGs and labelId PNGs (predictions/labelIds/, for cityscapesscripts); a count or all
    num_gpus: float = Field(0.0, ge=0)  # of the Ray actor that holds the model (1 on a cluster: a GPU worker)
    num_cpus: float = Field(1.0, gt=0)


class ClusterConfig(Section):
    address: str | None = None  # None: start Ray locally; "auto" or HOST:PORT: join a cluster
    num_cpus: int | None = None  # for a local Ray only


class VolumeDataConfig(Section):
    """The volumetric task's data (``task: synapse``): Synapse in its released or DHC's preprocessed layout."""

    name: str = "demo"  # a registered dataset (stages.synapse.datasets): synapse, or demo (CT-like volumes generated under <workdir>/data/demo)
    root: Path | None = None  # synapse: the download (RawData/Training/{img,label}/), imagesTr/+labelsTr/, or DHC's npy/
    layout: Literal["auto", "raw", "nifti", "npy"] = "auto"  # auto: the first found of raw, nifti (imagesTr/), npy
    splits: Path | None = None  # a folder with train.txt, eval.txt, test.txt; None: GenericSSL's Synapse split (shipped)
    hu_window: tuple[float, float] = (-75.0, 275.0)  # intensities clipped to it, then scaled to [0, 1] per volume
    halve: bool = True  # halve the in-plane size (H, W), as DHC does; depth kept

    @model_validator(mode="after")
    def _root(self) -> VolumeDataConfig:  # which dataset needs a root: ingest's check_config (the registry)
        for key in ("root", "splits"):
            value = getattr(self, key)
            if value is not None and not Path(value).expanduser().exists():
                raise ValueError(f"{key}: path does not exist: {value}")
        return self


class VolumeDemoConfig(Section):
    """CT-like demo volumes: 13 organ-like bodies with Synapse's imbalance, HU-like intensities and noise."""

    depth: int = Field(32, ge=8)
    height: int = Field(96, ge=16)  # before the in-plane halving
    width: int = Field(96, ge=16)
    noise: float = Field(20.0, ge=0)  # HU standard deviation
    seed: int = 0
    variant: Literal["default", "drift"] = "default"  # drift: per-case pose, bent organs, intensity drift (not shaped for any result)


class VolumeConfig(Section):
    """Network, method and evaluation of the volumetric task (DHC's protocol); the loss (``loss.dyce``,
    ``hard_ratio``, ``omega``) and the run (``train.iterations``, ``batch_size``, ``lr``, ``weight_decay``,
    ``lr_power``, ``seed``, workers, checkpoints) are the shared sections'."""

    data: VolumeDataConfig = VolumeDataConfig()
    demo: VolumeDemoConfig = VolumeDemoConfig()
    method: str = "dhc"  # a registered method (models.volumes.methods): supervised, uamt, urpc, depl, dhc
    n_filters: int = Field(32, ge=1)  # V-Net width (DHC: 32 for Synapse)
    dropout: bool = True  # while training: V-Net's Dropout3d(0.5) after bottleneck and last block; URPC U-Net's 0.5-0.1
    unet_filters: int = Field(16, ge=1)  # URPC's deeply supervised 3D U-Net: first level's width (DHC: 64 / 4 = 16)
    patch: tuple[int, int, int] = (64, 128, 128)  # D, H, W of the random training patches and the sliding windows
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD, Nesterov
    unsup_weight: float = Field(0.1, ge=0)  # λ of the unsupervised term (DHC README: -w 0.1), ramped up by a sigmoid
    rampup: bool = True  # sigmoid ramp-up exp(-5 (1 - t/T)^2) of the unsupervised weight
    ema_alpha: float = Field(0.99, ge=0, le=1)  # UA-MT's teacher
    uamt_passes: int = Field(8, ge=2)  # UA-MT: noisy teacher passes for the uncertainty (T)
    depl_threshold: float = Field(0.9, ge=0, le=1)  # DePL: confidence of a debiased pseudo-label
    depl_margin: bool = False  # DePL: train on the logits shifted by the other network's log prior (the paper); DHC's code computes the shift but trains on the unshifted logits
    dyce_keeps_weights: bool = False  # DHC with loss.dyce: its DistDW/DiffDW class weights kept inside DyCE's Eq. 9 (false: DyCE's replace them)
    dyce_unsup: bool = False  # DHC with loss.dyce: its unsupervised CE terms class-balanced by Eq. 9 too (every pseudo-labelled voxel, no mining, ω = loss.omega)
    stride: tuple[int, int] = (32, 16)  # sliding-window strides (in-plane, depth): DHC's test.py
    save_slices: int = Field(3, ge=0)  # test cases whose middle slices the report shows
    eval_every: int = Field(80, ge=0)  # DHC's model selection: mean DSC of the eval cases every so many steps, the best kept (0: off)
    patience: int = Field(0, ge=0)  # stop after this many evaluations without a better mean DSC (DHC: 100 epochs = 10 evaluations); 0: never
    checkpoint: Literal["best", "last"] = "best"  # which networks evaluate tests: the best on the eval cases (DHC), or the last

    @model_validator(mode="after")
    def _patch(self) -> VolumeConfig:
        if any(p % 16 for p in self.patch):
            raise ValueError(f"patch: every side must be a multiple of 16 (the V-Net halves it 4 times), got {self.patch}")
        if self.method not in methods.names():  # a method's own checks run when its module loads (train's fingerprint)
            raise ValueError(f"method: {self.method!r} is not one of {', '.join(methods.names())}")
        return self


class PathsConfig(Section):
    workdir: Path = Path("runs/demo")


def import_plugins(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Import each plugin module (it registers its datasets, methods or tasks when imported): in every process
    that validates the config, Ray's workers included."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"cannot import plugin module {module!r} ({err})") from None
    return modules


class Config(Section):
    plugins: tuple[str, ...] = ()  # modules that register datasets, 3D methods or tasks (docs/ARCHITECTURE.md)
    task: str = "street"  # a registered task (stages.tasks): street (SSDA on street scenes), synapse (3D CT, Table 5)
    data: DataConfig = DataConfig()
    caption: CaptionConfig = CaptionConfig()
    text: TextConfig = TextConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    cluster: ClusterConfig = ClusterConfig()
    paths: PathsConfig = PathsConfig()
    volumes: VolumeConfig = VolumeConfig()

    _plugins = field_validator("plugins", mode="after")(lambda cls, v: import_plugins(v))


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


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.iterations=10"`` → ``("train.iterations", 10)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected section.key=value")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text}: value is not valid YAML ({err.__class__.__name__})") from None


_KEYED = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    keyed = _KEYED.match(msg)  # model validators say "key: problem" for a key below their section
    if keyed:
        loc, msg = ".".join(filter(None, (loc, keyed.group(1)))), keyed.group(2)
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    return f"{source}: {loc or '<root>'}: {msg}" + (f" (and {more} more)" if more else "")


def config_from_mapping(raw: dict[str, Any], overrides: list[str] | tuple[str, ...], source: str) -> Config:
    """``raw`` with ``overrides`` applied, validated; ConfigError naming ``source`` and the key."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(raw, key, value)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(source, err)) from None


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path`` (default ``configs/demo.yaml``), apply ``overrides`` and validate."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping of sections")
    return config_from_mapping(raw, overrides, str(path))
