"""The synapse task's config (``task: synapse``): the volumes (data, network, method, model selection), DyCE
(``loss``) and DHC's optimisation (``train``) beside the shared sections (``pipeline.config.Config``); no street
section. ``SynapseConfig.resolved`` settles ``volumes.data.layout: auto`` from the root."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from models.volumes import methods
from pipeline.config import Config, DyceLoss, Section, SplitData, TrainRun


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
    ``hard_ratio``, ``omega``) and the optimisation (``train``) are sections of their own."""

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


class SynapseTrain(TrainRun):
    """DHC's optimisation: SGD (momentum ``volumes.momentum``, Nesterov), poly decay; defaults of its README."""

    iterations: int = Field(2400, ge=1)  # ~300 epochs as DHC counts them on Synapse (8 steps an epoch)
    batch_size: int = Field(2, ge=1)  # labelled patches per step, and as many unlabelled
    lr: float = Field(0.03, gt=0)  # DHC README: -l 3e-2
    weight_decay: float = Field(3e-5, ge=0)
    lr_power: float = Field(0.9, ge=0)
    amp: bool = True  # bf16 autocast on GPU


class SynapseConfig(Config):
    task: Literal["synapse"] = "synapse"
    data: SplitData = SplitData()  # the labelled cases: data.split_file (default GenericSSL's 20 %)
    volumes: VolumeConfig = VolumeConfig()
    loss: DyceLoss = DyceLoss()
    train: SynapseTrain = SynapseTrain()

    def resolved(self) -> SynapseConfig:
        """``volumes.data.layout: auto`` as the dataset finds it under its root (left ``auto`` where none is
        there: ingest then lists what it looked for)."""
        d = self.volumes.data
        if d.layout != "auto":
            return self
        from stages.synapse.datasets import volume_dataset

        spec = volume_dataset(d.name)
        if spec.NEEDS_ROOT and d.root is None:  # ingest's check names the missing root
            return self
        try:
            layout = spec.layout(Path(d.root).expanduser() if d.root else None, d.layout)
        except FileNotFoundError:
            return self
        volumes = self.volumes.model_copy(update={"data": d.model_copy(update={"layout": layout})})
        return self.model_copy(update={"volumes": volumes})
