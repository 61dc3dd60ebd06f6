"""The frozen CLIP language encoder E_L (paper §3.2): per-token embeddings F_L.

``model`` is an open_clip name (``ViT-B-16``) with ``pretrained`` an open_clip tag, a local checkpoint file or
``none``; or ``tiny``. Only the text tower is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.device import pick_device


@dataclass
class TextEncoder:
    model: nn.Module  # an open_clip CLIP; only its text tower runs
    tokenizer: object  # open_clip tokenizer: list[str] -> LongTensor (N, context_length)
    device: torch.device

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @property
    def dim(self) -> int:
        return self.model.text_projection.shape[-1] if not isinstance(self.model.text_projection, nn.Linear) \
            else self.model.text_projection.out_features

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(N, context_length) token ids; a longer text is cut, its end token kept last."""
        return self.tokenizer(texts).to(self.device)

    def full_lengths(self, texts: list[str]) -> list[int]:
        """Token counts before cutting to the context, start and end tokens included."""
        tok = self.tokenizer
        if hasattr(tok, "encode"):  # open_clip's CLIP BPE tokenizer
            return [len(tok.encode(t)) + 2 for t in texts]
        return [len(tok.tokenizer(t)["input_ids"]) for t in texts]  # open_clip's HFTokenizer

    @torch.inference_mode()
    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every token's output, after ``ln_final`` and ``text_projection``: (N, L, c).

        The same path as open_clip's ``encode_text``, without the pooling.
        """
        m = self.model
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding.to(cast)  # (N, L, width)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
        proj = m.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj  # (N, L, c)

    def caption_embeddings(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """What the embed_text store keeps of each caption: its tokens' embeddings (N, L, c) as float16,
        the token count from start to end token, and whether it was cut to the context."""
        tokens = self.tokenize(captions)  # (N, L): cut to the context, the end token kept last
        emb = self.token_embeddings(tokens).to(torch.float16).cpu().numpy()
        n_tokens = (end_positions(tokens) + 1).cpu().numpy()
        return emb, n_tokens, [n > tokens.shape[1] for n in self.full_lengths(captions)]

    @torch.inference_mode()
    def encode(self, texts: list[str], normalize: bool = False) -> torch.Tensor:
        """Pooled embeddings, as ``encode_text``: (N, c)."""
        out = self.model.encode_text(self.tokenize(texts))
        return F.normalize(out, dim=-1) if normalize else out


def end_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the end-of-text token of each row: CLIP's eot has the largest id (open_clip's 'argmax' pool)."""
    return tokens.argmax(dim=-1)


def load_text_encoder(model: str, pretrained: str = "none", device: torch.device | None = None,
                      seed: int = 0) -> TextEncoder:
    """The frozen text tower of ``model`` with ``pretrained`` weights (open_clip tag, local file, or none)."""
    import open_clip

    from models.street.clip import build_clip

    device = device or pick_device()
    net = build_clip(model, pretrained, seed)
    net.visual = nn.Identity()  # only the text tower runs
    tokenizer = open_clip.get_tokenizer("ViT-B-16" if model == "tiny" else model)
    return TextEncoder(net.to(device).eval().requires_grad_(False), tokenizer, device)
