"""Real weights load on the first try: tiny models saved in the formats real weights come in, loaded through
the config keys a user sets, offline, on CPU.

- a BLIP-2 directory written by ``save_pretrained`` (model, and processor with its tokenizer): ``caption.model``;
- open_clip checkpoint files (a pickled state dict, or safetensors): ``text.pretrained`` and
  ``model.vision_pretrained``;
- a timm ViT state dict (``.pth`` or ``.safetensors``, as the Hugging Face hub serves timm weights):
  ``model.imagenet_checkpoint``.

``saved_weights`` writes them; ``tests/test_cli.py`` runs the whole demo with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.street.captioner import load_captioner
from models.street.clip import build_clip
from models.street.config import ModelConfig
from models.street.encoder import build_vision_encoder
from models.street.text import load_text_encoder


def save_blip2(directory: Path) -> Path:
    captioner = load_captioner("tiny", "float32", torch.device("cpu"), seed=7)
    captioner.model.save_pretrained(directory)
    captioner.processor.save_pretrained(directory)
    return directory


def save_clip(path: Path) -> Path:
    """A tiny CLIP's state dict, as open_clip's pretrained files hold it."""
    state = build_clip("tiny", None, seed=11).state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def saved_weights(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {"caption": save_blip2(directory / "blip2"), "clip": save_clip(directory / "open_clip_model.safetensors")}


IMAGES = [np.random.default_rng(k).integers(0, 255, (40, 56, 3), dtype=np.uint8) for k in range(3)]


def test_a_blip2_directory_saved_with_save_pretrained_captions_as_the_original(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = load_captioner("tiny", "float32", torch.device("cpu"), seed=7)
    loaded = load_captioner(str(save_blip2(tmp_path / "blip2")), "float32", torch.device("cpu"))
    assert loaded.generation == {}  # a saved model generates with its own settings
    loaded.generation = original.generation  # the tiny model's are the captioner's (models.street.tiny.TINY_GENERATION)
    assert loaded(IMAGES, None, 6) == original(IMAGES, None, 6)


def test_the_q_former_stays_float32_when_the_rest_is_bfloat16(tmp_path):
    for model in ("tiny", str(save_blip2(tmp_path / "blip2"))):
        captioner = load_captioner(model, "bfloat16", torch.device("cpu"))
        net = captioner.model
        assert {p.dtype for p in net.qformer.parameters()} == {torch.float32}, model
        assert net.query_tokens.dtype == torch.float32
        assert next(net.vision_model.parameters()).dtype == torch.bfloat16
        assert next(net.language_model.parameters()).dtype == torch.bfloat16
        assert len(captioner(IMAGES, None, 4)) == 3


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_open_clip_checkpoint_files_load_into_both_towers(tmp_path, suffix):
    path = save_clip(tmp_path / f"open_clip_model{suffix}")
    reference = build_clip("tiny", None, seed=11)
    text = load_text_encoder("tiny", str(path), torch.device("cpu"), seed=0)  # another seed: the file wins
    torch.testing.assert_close(text.model.token_embedding.weight, reference.token_embedding.weight)
    tokens = text.tokenize(["a car on the road"])
    torch.testing.assert_close(text.encode(["a car on the road"]), reference.encode_text(tokens))
    encoder = build_vision_encoder(ModelConfig(vision_pretrained=str(path), vision_init="clip"))
    for name, value in reference.visual.state_dict().items():
        torch.testing.assert_close(encoder.visual.state_dict()[name], value, msg=name)


def test_a_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(Exception, match="nope.safetensors"):
        load_text_encoder("tiny", str(missing), torch.device("cpu"))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_timm_state_dict_in_either_format_initialises_the_imagenet_tower(tmp_path, suffix):
    import timm

    vit = timm.models.vision_transformer.VisionTransformer(img_size=64, patch_size=8, embed_dim=96, depth=4,
                                                           num_heads=3, num_classes=0).eval()
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(vit.state_dict(), str(path))
    else:
        torch.save(vit.state_dict(), path)
    encoder = build_vision_encoder(ModelConfig(vision_init="imagenet", imagenet_checkpoint=path))
    torch.testing.assert_close(encoder.visual.transformer.resblocks[0].mlp.c_fc.weight, vit.blocks[0].mlp.fc1.weight)
