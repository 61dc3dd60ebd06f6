"""The model library's own config: what ``build_segmentor`` and ``build_vision_encoder`` need.

The pipeline's config tree holds it as its ``model`` section; the models import nothing from the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vision_model: str = "tiny"  # open_clip image tower name (ViT-B-16) or `tiny`
    vision_pretrained: str = "none"  # open_clip tag, local file, or `none`
    vision_init: Literal["clip", "imagenet", "random"] = "clip"  # VLP ablation
    imagenet_checkpoint: Path | None = None  # timm ViT-B/16 weights for vision_init=imagenet
    dlg: bool = True  # Dense Language Guidance; False decodes F_V alone
    dlg_captions: Literal["own", "shuffled", "empty"] = "own"  # what DLG reads: each image's caption, another image's (a fixed derangement), or none (the start token alone)
    dlg_pixel_text: bool = False  # the decoder also reads F_L^A, what each pixel gathered from the words (F_M's channels are token positions); False: Eq. 2-3 alone
    dlg_dim: int = Field(256, ge=1)  # width of the DLG keys and values
    max_tokens: int = Field(77, ge=1)  # nL after padding: F_M has this many channels
    decoder_channels: int = Field(256, ge=1)
    decoder: Literal["light", "multilevel"] = "multilevel"  # multilevel: blocks at 1/4, 1/2, 3/4 depth to 4x the grid

    @field_validator("imagenet_checkpoint")
    @classmethod
    def _checkpoint_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).expanduser().exists():
            raise ValueError(f"path does not exist: {value}")
        return None if value is None else Path(value).expanduser()


def vision_init(model: ModelConfig) -> str:
    """The image tower's actual start: CLIP (VLP) only with pretrained weights; random weights are random."""
    if model.vision_init == "imagenet":
        return "imagenet"
    return "clip" if model.vision_init == "clip" and model.vision_pretrained != "none" else "random"
