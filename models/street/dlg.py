"""Dense Language Guidance, DLG (paper §3.2, Eq. 2-3; DESIGN §3).

Both modalities give keys and values. One attention matrix A = K_L·K_Vᵀ/√c is normalised both ways:
over pixels, so each token gathers the pixels it describes (language-attended vision F_V^A), and over
tokens, so each pixel gathers the words that describe it (vision-attended language F_L^A). Their product
F_M = F_V^A·F_L^Aᵀ is a dense map per token: (B, nL, h, w).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DenseLanguageGuidance(nn.Module):
    def __init__(self, vision_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.key_v, self.value_v = nn.Linear(vision_dim, dim), nn.Linear(vision_dim, dim)
        self.key_l, self.value_l = nn.Linear(text_dim, dim), nn.Linear(text_dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, f_v: torch.Tensor, f_l: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """F_V (B, c_v, h, w), F_L (B, nL, c_l), mask (B, nL) True for real tokens -> F_M (B, nL, h, w)."""
        return self.attend(f_v, f_l, mask)[0]

    def attend(self, f_v: torch.Tensor, f_l: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F_M (B, nL, h, w), F_L^A as a map (B, d, h, w)): the fused map, and what each pixel gathered from the
        words (``model.dlg_pixel_text`` gives the decoder both: F_M's channels are token positions, which
        cannot say which word was at a position; F_L^A's are the words' values)."""
        b, _, h, w = f_v.shape
        pixels = f_v.flatten(2).transpose(1, 2)  # (B, hw, c_v)
        k_v, v_v = self.key_v(pixels), self.value_v(pixels)  # (B, hw, d)
        k_l, v_l = self.key_l(f_l), self.value_l(f_l)  # (B, nL, d)
        a = k_l @ k_v.transpose(1, 2) * self.scale  # A: (B, nL, hw), Eq. 2
        f_v_att = a.softmax(dim=2) @ v_v  # F_V^A: (B, nL, d), softmax over pixels, Eq. 3
        a_tokens = a.masked_fill(~mask[:, :, None], float("-inf"))
        f_l_att = a_tokens.softmax(dim=1).transpose(1, 2) @ v_l  # F_L^A: (B, hw, d), softmax over tokens
        f_m = f_v_att @ f_l_att.transpose(1, 2)  # F_M: (B, nL, hw)
        f_m = f_m * mask[:, :, None].to(f_m.dtype)  # padding tokens give zero rows
        return f_m.reshape(b, -1, h, w), f_l_att.transpose(1, 2).reshape(b, -1, h, w)
