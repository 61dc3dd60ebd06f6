"""The segmentor S = D_V([DLG(E_V(x), F_L), E_V(x)]), used for both student and teacher (paper Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.street.config import ModelConfig
from models.street.decoder import Decoder, MultiLevelDecoder
from models.street.dlg import DenseLanguageGuidance
from models.street.encoder import DenseCLIPEncoder, build_vision_encoder


@dataclass
class SegmentorOutput:
    logits: torch.Tensor  # (B, C, H, W)
    features: torch.Tensor  # F_V: (B, c, h, w)
    fused: torch.Tensor | None  # F_M padded to max_tokens: (B, nL_max, h, w); None without DLG


class Segmentor(nn.Module):
    def __init__(self, encoder: DenseCLIPEncoder, decoder: nn.Module, dlg: DenseLanguageGuidance | None,
                 max_tokens: int, levels: tuple[int, ...] = (), pixel_text: bool = False):
        super().__init__()
        self.encoder, self.decoder, self.dlg, self.pixel_text = encoder, decoder, dlg, pixel_text
        self.max_tokens, self.levels = max_tokens, tuple(levels)  # earlier blocks a multi-level decoder reads

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None, perturb: tuple[int, float] = (0, 0.0)) -> SegmentorOutput:
        """images (B, 3, H, W); text F_L (B, nL, c_l) with text_mask (B, nL), nL <= max_tokens.

        ``perturb`` (n, p): the encoder features of the last n images lose whole channels with probability p
        before DLG and the decoder (UniMatch's feature perturbation); the other images are untouched."""
        f_v, levels = self.encoder(images, self.levels) if self.levels else (self.encoder(images), None)
        if perturb[0]:
            f_v = drop_channels(f_v, *perturb)
            levels = None if levels is None else [drop_channels(f, *perturb) for f in levels]
        fused = None
        if self.dlg is not None:
            if text is None or text_mask is None:
                raise ValueError("this segmentor has DLG: pass the caption embeddings and their mask")
            f_m, f_l_att = self.dlg.attend(f_v, text.to(f_v.dtype), text_mask)
            fused = F.pad(f_m, (0, 0, 0, 0, 0, self.max_tokens - f_m.shape[1]))  # fixed channel count
            f_v_in = torch.cat([fused, f_l_att, f_v] if self.pixel_text else [fused, f_v], dim=1)
        else:
            f_v_in = f_v
        return SegmentorOutput(self.decoder(f_v_in, images.shape[-2:], levels), f_v, fused)

    def param_groups(self, lr: float, backbone_lr_mult: float, weight_decay: float) -> list[dict]:
        """The pretrained encoder may learn more slowly than the new DLG and decoder."""
        backbone = list(self.encoder.parameters())
        ids = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": backbone, "lr": lr * backbone_lr_mult, "weight_decay": weight_decay},
                {"params": head, "lr": lr, "weight_decay": weight_decay}]


def drop_channels(features: torch.Tensor, n: int, p: float) -> torch.Tensor:
    """(B, c, h, w) with channel dropout (rescaled by 1/(1-p)) on the last n images only."""
    kept, dropped = features[:-n], F.dropout2d(features[-n:], p, training=True)
    return torch.cat([kept, dropped])


def build_segmentor(cfg: ModelConfig, text_dim: int, num_classes: int, load_weights: bool = True) -> Segmentor:
    """S from ``model``; without ``load_weights`` no pretrained weights are read (a checkpoint fills it)."""
    encoder = build_vision_encoder(cfg, load_weights)
    c = encoder.out_channels
    dlg = DenseLanguageGuidance(c, text_dim, cfg.dlg_dim) if cfg.dlg else None
    pixel_text = cfg.dlg and cfg.dlg_pixel_text
    top = c + (cfg.max_tokens if cfg.dlg else 0) + (cfg.dlg_dim if pixel_text else 0)  # [F_M (padded), (F_L^A), F_V]
    if cfg.decoder == "light":
        return Segmentor(encoder, Decoder(top, cfg.decoder_channels, num_classes), dlg, cfg.max_tokens,
                         pixel_text=pixel_text)
    levels = decoder_levels(encoder.depth)
    decoder = MultiLevelDecoder(top, encoder.width, len(levels), cfg.decoder_channels, num_classes)
    return Segmentor(encoder, decoder, dlg, cfg.max_tokens, levels, pixel_text)


def decoder_levels(depth: int) -> tuple[int, ...]:
    """The blocks a multi-level decoder reads besides the last: at 1/4, 1/2 and 3/4 of the depth (3, 6, 9
    of ViT-B/16's 12, as SETR-MLA)."""
    return tuple(sorted({max(1, depth * k // 4) for k in (1, 2, 3)} - {depth}))
