from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIPVisionCfg

from models.ema import ema_update, make_teacher
from models.losses import DyCELoss
from models.street.config import ModelConfig
from models.street.encoder import DenseCLIPEncoder, build_vision_encoder, resize_pos_embed
from models.street.segmentor import build_segmentor


@pytest.mark.parametrize("size", [(512, 512), (96, 200)])
def test_tiny_dense_features_any_size(size):
    enc = build_vision_encoder(ModelConfig())
    with torch.no_grad():
        f_v = enc(torch.randn(1, 3, *size))
    assert f_v.shape == (1, enc.out_channels, size[0] // 8, size[1] // 8)
    assert torch.isfinite(f_v).all()


def test_pos_embed_resize_keeps_native_grid():
    pos = torch.randn(1 + 4 * 4, 8)
    assert resize_pos_embed(pos, (4, 4), (4, 4)) is pos
    assert resize_pos_embed(pos, (6, 3), (4, 4)).shape == (1 + 18, 8)


def test_dense_path_is_the_value_path():
    """With a single block, the value path keeps patches apart: changing one patch changes that patch's
    feature alone. Full attention in that block would spread the change to every patch."""
    visual = open_clip.model._build_vision_tower(
        16, CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32))
    enc = DenseCLIPEncoder(visual)
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[:, :, :8, :8] += 1.0  # the first patch only
    with torch.no_grad():
        a, b = enc(x), enc(y)
    assert not torch.allclose(a[..., 0, 0], b[..., 0, 0])
    torch.testing.assert_close(a[..., 1:, :], b[..., 1:, :])
    torch.testing.assert_close(a[..., 0, 1:], b[..., 0, 1:])


def test_random_init_reads_no_file(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a file or download was asked for")

    monkeypatch.setattr(open_clip, "create_model", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    enc = build_vision_encoder(ModelConfig(vision_model="ViT-B-16", vision_pretrained="openai", vision_init="random"))
    assert enc.out_channels == 512 and enc.patch_size == 16


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["light", "multilevel"])
def test_full_size_student_step_on_cpu(decoder):
    """ViT-B/16 at 512x512, batch 2 (the second with feature perturbation), DLG over 77 tokens of width 512:
    forward, DyCE, backward, EMA."""
    cfg = ModelConfig(vision_model="ViT-B-16", vision_pretrained="none", vision_init="random", decoder=decoder)
    torch.manual_seed(0)
    student = build_segmentor(cfg, text_dim=512, num_classes=19)
    teacher = make_teacher(student)
    images = torch.randn(2, 3, 512, 512)
    text, mask = torch.randn(2, 20, 512), torch.ones(2, 20, dtype=torch.bool)
    out = student(images, text, mask, perturb=(1, 0.5))
    assert out.features.shape == (2, 512, 32, 32) and out.fused.shape == (2, 77, 32, 32)
    assert out.logits.shape == (2, 19, 512, 512)
    loss = DyCELoss()(out.logits, torch.randint(0, 19, (2, 512, 512)))
    loss.backward()
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    before = next(teacher.parameters()).clone()
    torch.optim.AdamW(student.parameters(), lr=1e-3).step()
    ema_update(teacher, student, 0.999)
    assert not torch.equal(before, next(teacher.parameters()))
