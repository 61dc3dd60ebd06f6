"""The vision encoder E_V: dense features F_V from a CLIP ViT image tower (paper §3.1, DESIGN §3).

Dense features follow MaskCLIP: the last block's attention is replaced by its value path (no query-key
mixing, so each patch keeps its own content), then ``ln_post`` and ``proj`` map the patch tokens into the
joint embedding space, exactly as the class token is mapped in CLIP.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.street.clip import build_clip
from models.street.config import ModelConfig


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], native: tuple[int, int]) -> torch.Tensor:
    """(1 + gh*gw, width) position embedding -> (1 + h*w, width) for a new patch grid, bicubic."""
    if tuple(grid) == tuple(native):
        return pos
    cls, patches = pos[:1], pos[1:]
    patches = patches.reshape(1, *native, -1).permute(0, 3, 1, 2)  # (1, width, gh, gw)
    patches = F.interpolate(patches.float(), size=grid, mode="bicubic", align_corners=False).to(pos.dtype)
    return torch.cat([cls, patches.flatten(2).transpose(1, 2)[0]], dim=0)


def value_path(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An open_clip ResidualAttentionBlock with attention replaced by v = out_proj(W_v·ln_1(x)) (MaskCLIP)."""
    attn: nn.MultiheadAttention = block.attn
    width = x.shape[-1]
    v = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width:], attn.in_proj_bias[2 * width:])
    x = x + block.ls_1(attn.out_proj(v))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


class DenseCLIPEncoder(nn.Module):
    """Images (B, 3, H, W) -> F_V (B, c, H/p, W/p) for an open_clip ``VisionTransformer`` with patch p."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.patch_size = visual.patch_size[0]
        self.out_channels = visual.proj.shape[1]  # c

    @property
    def depth(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def width(self) -> int:
        return self.visual.conv1.out_channels  # token width of the blocks

    def forward(self, images: torch.Tensor, levels: tuple[int, ...] = ()) -> torch.Tensor | tuple:
        """F_V (B, c, h, w); with ``levels`` (1-based block numbers below the last) also those blocks'
        patch tokens, each (B, width, h, w), for a multi-level decoder: returns (F_V, [tokens...])."""
        v = self.visual
        x = v.conv1(images)  # (B, width, h, w)
        b, width, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, hw, width)
        cls = v.class_embedding.to(x.dtype).expand(b, 1, width)
        x = torch.cat([cls, x], dim=1) + resize_pos_embed(v.positional_embedding, (h, w), v.grid_size).to(x.dtype)
        x = v.ln_pre(x)
        blocks = v.transformer.resblocks
        taken = []
        for number, block in enumerate(blocks[:-1], 1):
            x = block(x)
            if number in levels:
                taken.append(x[:, 1:].transpose(1, 2).reshape(b, width, h, w))  # (B, width, h, w)
        x = value_path(blocks[-1], x)
        x = v.ln_post(x[:, 1:]) @ v.proj  # (B, hw, c)
        f_v = x.transpose(1, 2).reshape(b, -1, h, w)  # F_V: (B, c, h, w)
        return (f_v, taken) if levels else f_v


def _clip_visual(name: str, pretrained: str | None) -> nn.Module:
    import open_clip

    if pretrained is not None:  # the whole CLIP is built to load its checkpoint; keep the image tower
        return build_clip(name, pretrained).visual
    if name == "tiny":
        from models.street.tiny import TINY_EMBED_DIM, TINY_VISION

        return open_clip.model._build_vision_tower(TINY_EMBED_DIM, TINY_VISION)
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"model.vision_model: unknown open_clip model {name!r}")
    return open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file (as the Hugging Face hub serves timm weights) or a torch file
    (tensors only: ``weights_only``)."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd.get("model", sd))


def _load_imagenet(visual: nn.Module, checkpoint: Path) -> None:
    """Load a timm ViT-B/16 ImageNet state dict into an open_clip image tower (VLP ablation, Table 3).

    The tower has timm's shape already (``_timm_shape``): timm has no pre-norm and a patch-embedding bias
    where CLIP has ``ln_pre`` and no bias. ``proj`` keeps its random init.
    """
    sd = read_state_dict(checkpoint)
    mapped = {
        "conv1.weight": sd["patch_embed.proj.weight"], "conv1.bias": sd["patch_embed.proj.bias"],
        "class_embedding": sd["cls_token"].reshape(-1), "positional_embedding": sd["pos_embed"][0],
        "ln_post.weight": sd["norm.weight"], "ln_post.bias": sd["norm.bias"],
    }
    names = {"norm1": "ln_1", "attn.qkv": "attn.in_proj", "attn.proj": "attn.out_proj", "norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for i in range(len(visual.transformer.resblocks)):
        for src, dst in names.items():
            for kind in ("weight", "bias"):
                key = f"{dst}_{kind}" if dst == "attn.in_proj" else f"{dst}.{kind}"
                mapped[f"transformer.resblocks.{i}.{key}"] = sd[f"blocks.{i}.{src}.{kind}"]
    missing = set(visual.load_state_dict(mapped, strict=False).missing_keys) - {"proj"}
    if missing:
        raise ValueError(f"{checkpoint}: no ImageNet weights for {sorted(missing)[:5]}")


def _timm_shape(visual: nn.Module) -> None:
    """The tower as a timm ViT is built: a patch embedding with a bias, no pre-norm, LayerNorm eps 1e-6."""
    conv = nn.Conv2d(3, visual.conv1.out_channels, visual.patch_size, visual.patch_size, bias=True)
    visual.conv1, visual.ln_pre = conv, nn.Identity()
    for module in visual.modules():  # timm's LayerNorms use eps 1e-6, open_clip's 1e-5
        if isinstance(module, nn.LayerNorm):
            module.eps = 1e-6


def build_vision_encoder(cfg: ModelConfig, load_weights: bool = True) -> DenseCLIPEncoder:
    """E_V from ``model.vision_model`` and ``model.vision_init`` (clip | imagenet | random). Without
    ``load_weights`` the same architecture is built, randomly initialised, for a checkpoint to fill."""
    use_clip = load_weights and cfg.vision_init == "clip" and cfg.vision_pretrained != "none"
    visual = _clip_visual(cfg.vision_model, cfg.vision_pretrained if use_clip else None)
    if cfg.vision_init == "imagenet":
        _timm_shape(visual)
        if load_weights:
            if cfg.imagenet_checkpoint is None:
                raise ValueError("model.imagenet_checkpoint: required when model.vision_init is imagenet")
            _load_imagenet(visual, cfg.imagenet_checkpoint)
    return DenseCLIPEncoder(visual)

