"""Building an open_clip CLIP by name, with its weights: an open_clip tag, a local checkpoint file, or none.

``tiny`` is a small CLIP of the same classes (``models/street/tiny.py``); it loads a local checkpoint file through
``open_clip.load_checkpoint``, the function ``open_clip.create_model`` itself uses for a file, so a saved file
travels the real loading path.
"""

from __future__ import annotations

import torch


def build_clip(name: str, pretrained: str | None, seed: int = 0) -> torch.nn.Module:
    """The whole CLIP (both towers); ``pretrained`` None (or ``none``) leaves it randomly initialised."""
    import open_clip

    pretrained = None if pretrained in (None, "none") else pretrained
    if name != "tiny":
        return open_clip.create_model(name, pretrained=pretrained)
    from models.street.tiny import TINY_EMBED_DIM, TINY_TEXT, TINY_VISION

    torch.manual_seed(seed)  # the same random weights in every process
    net = open_clip.CLIP(embed_dim=TINY_EMBED_DIM, vision_cfg=TINY_VISION, text_cfg=TINY_TEXT)
    if pretrained is not None:
        open_clip.load_checkpoint(net, pretrained)
    return net
